"""A TLS trunk to a second callroom node playing the provider: its certificate checked against a private CA,
our INVITE challenged for digest credentials on the TLS connection, and audio across both nodes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callroom.model.messages import SipConfig
from tests.media.audio import tone_level
from tests.support.node import NodeThread, free_port
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import Tenant
from tests.trunks.provider import PASSWORD, USERNAME
from tests.trunks.tenants import add_trunk, api, make_tenant

pytestmark = pytest.mark.sip

NUMBER = "15557654390"  # the provider's application answers this number (its sip_subdomain)


@pytest.fixture(scope="module")
def provider(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    """The provider: SIP over TLS with its certificate, digest credentials for its customers."""
    data_dir = tmp_path_factory.mktemp("provider")
    sip = SipConfig(port=0, tls_port=free_port(), tls_cert=str(certs / "node.pem"), tls_key=str(certs / "node.key"),
                    credentials=((USERNAME, PASSWORD),))
    n = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir, sip=sip)
    yield n
    n.stop()


@pytest.fixture(scope="module")
def customer_node(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    """Our node: it trusts the private CA for its trunks."""
    data_dir = tmp_path_factory.mktemp("customer")
    n = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir,
                   sip=SipConfig(port=0, tls_ca=str(certs / "ca.pem")))
    yield n
    n.stop()


def _tls_port(provider: NodeThread) -> int:
    assert provider.node.config.sip is not None and provider.node.config.sip.tls_port is not None
    return provider.node.config.sip.tls_port


def test_a_call_over_a_tls_trunk(provider: NodeThread, customer_node: NodeThread,
                                 receiver: WebhookReceiver) -> None:  # fmt: skip
    far = make_tenant(provider, receiver, inbound={"sip_subdomain": NUMBER})
    us = make_tenant(customer_node, receiver)
    add_trunk(us, _tls_port(provider), host="127.0.0.1", transport="tls", number_format="e164")
    resp = us.client.calls.dial(connection_id=us.connection_id, from_="+15550001111", to="+" + NUMBER)
    assert resp.data is not None
    cid = resp.data.call_control_id
    initiated = far.receiver.wait_for(lambda r: r.path == far.path and r.event_type == "call.initiated", timeout=15)
    far_cid = initiated[0].payload["call_control_id"]
    assert initiated[0].payload["from"].startswith("sip:15550001111@")  # the caller ID crossed (e164 format)
    far.client.calls.actions.answer(far_cid)
    us.event("call.answered", cid, timeout=15)
    tone = far.dial("tone", "answer_after=0;tone=900")
    far.client.calls.actions.bridge(far_cid, call_control_id_to_bridge_with=tone)
    listener = us.dial("listener", "answer_after=0")
    us.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=listener)
    time.sleep(1.2)  # the provider's tone crosses the trunk
    assert tone_level(us.heard(listener, 0.5), 900) > 1000
    us.client.calls.actions.hangup(cid)
    us.event("call.hangup", cid)
    assert far.event("call.hangup", far_cid).payload["hangup_source"] == "caller"


def test_a_certificate_we_do_not_trust_stops_the_call(provider: NodeThread, tenant: Tenant) -> None:
    """The session's node trusts only the system's CAs: the provider's certificate does not verify."""
    trunk = add_trunk(tenant, _tls_port(provider), host="127.0.0.1", transport="tls")
    try:
        resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111", to="+" + NUMBER)
        assert resp.data is not None
        hangup = tenant.event("call.hangup", resp.data.call_control_id, timeout=15)
        assert hangup.payload["sip_hangup_cause"] == "503"
    finally:  # the session's node goes on without it
        assert api(tenant, "DELETE", f"/trunks/{trunk['id']}").status_code == 200
