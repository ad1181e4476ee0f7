"""SRTP on a TLS trunk: a second callroom node plays a provider that requires SRTP (SDES keys) on the trunk
its customers call from. Audio crosses encrypted (a tap on loopback sees no plain PCMU), a customer that
offers plain RTP is refused with 488 as a PBX refuses it, and ``srtp`` on a trunk without TLS is a 422."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from callroom.model.messages import SipConfig
from callroom.rtp import g711
from tests.media.audio import tone_level
from tests.support.node import NodeThread, free_port
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import Tenant
from tests.trunks.tenants import add_trunk, api, make_tenant, own_number
from tests.trunks.wire_tap import WireTap

pytestmark = pytest.mark.sip

NUMBER = "+15557654391"  # the provider's number, answered by its application
CUSTOMER_RTP = (45000, 45200)
PROVIDER_RTP = (46000, 46200)
SRTP_80 = 12 + 160 + 10  # a 20 ms G.711 packet with an 80-bit authentication tag


@pytest.fixture(scope="module")
def provider(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    """The provider: SIP over TLS with its certificate; its media in ``PROVIDER_RTP``."""
    data_dir = tmp_path_factory.mktemp("srtp-provider")
    sip = SipConfig(port=0, tls_port=free_port(), tls_cert=str(certs / "node.pem"), tls_key=str(certs / "node.key"),
                    rtp_ports=PROVIDER_RTP)
    n = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir, sip=sip)
    yield n
    n.stop()


@pytest.fixture(scope="module")
def customer_node(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    """Our node: it trusts the private CA for its trunks; its media in ``CUSTOMER_RTP``."""
    data_dir = tmp_path_factory.mktemp("srtp-customer")
    n = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir,
                   sip=SipConfig(port=0, tls_ca=str(certs / "ca.pem"), rtp_ports=CUSTOMER_RTP))
    yield n
    n.stop()


@pytest.fixture(scope="module")
def far(provider: NodeThread, receiver: WebhookReceiver) -> Tenant:
    """The provider's side: a trunk towards its customers (at 127.0.0.1, over TLS) that requires SRTP, and the
    number it delivers to its application."""
    tenant = make_tenant(provider, receiver)
    add_trunk(tenant, 5061, name="customers", host="127.0.0.1", transport="tls", srtp="required",
              numbers=[NUMBER])
    own_number(tenant, NUMBER)
    return tenant


def _tls_port(node: NodeThread) -> int:
    assert node.node.config.sip is not None and node.node.config.sip.tls_port is not None
    return node.node.config.sip.tls_port


def _initiated(far: Tenant) -> list[str]:
    return [r.payload["call_control_id"] for r in far.receiver.delivered()
            if r.path == far.path and r.body and r.event_type == "call.initiated"]  # fmt: skip


def _incoming(far: Tenant, before: list[str]) -> str:
    """The provider's next incoming call (one not in ``before``), to the number it owns."""
    initiated = far.receiver.wait_for(lambda r: r.path == far.path and r.event_type == "call.initiated"
                                      and r.payload["call_control_id"] not in before, timeout=15)[0]  # fmt: skip
    assert initiated.payload["to"] == NUMBER and initiated.payload["direction"] == "incoming"
    cid: str = initiated.payload["call_control_id"]
    return cid


@pytest.mark.parametrize("ours", ["required", "optional"])
def test_audio_crosses_the_trunk_as_srtp(ours: str, provider: NodeThread, customer_node: NodeThread,
                                         far: Tenant, receiver: WebhookReceiver) -> None:  # fmt: skip
    """``required`` offers RTP/SAVP, ``optional`` RTP/AVP with crypto lines: the provider takes either as
    SRTP. Tones go both ways; what crosses loopback between the two nodes' RTP ports is SRTP."""
    us = make_tenant(customer_node, receiver)
    add_trunk(us, _tls_port(provider), host="127.0.0.1", transport="tls", number_format="e164", srtp=ours)
    before = _initiated(far)
    resp = us.client.calls.dial(connection_id=us.connection_id, from_="+15550001111", to=NUMBER)
    assert resp.data is not None
    cid = resp.data.call_control_id
    far_cid = _incoming(far, before)
    far.client.calls.actions.answer(far_cid)
    us.event("call.answered", cid, timeout=15)
    far_tone = far.dial("tone", "answer_after=0;tone=900")
    far.client.calls.actions.bridge(far_cid, call_control_id_to_bridge_with=far_tone)
    talker = us.dial("talker", "answer_after=0;tone=600")
    us.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=talker)
    with WireTap(CUSTOMER_RTP, PROVIDER_RTP) as out, WireTap(PROVIDER_RTP, CUSTOMER_RTP) as back:
        time.sleep(1.5)
    assert tone_level(us.heard(talker, 0.5), 900) > 1000, "the provider's tone should cross the trunk"
    assert tone_level(far.heard(far_tone, 0.5), 600) > 1000, "and ours the other way"
    for tap in (out, back):
        rtp = [p for p in tap.payloads if len(p) >= 12 and p[0] >> 6 == 2 and not 192 <= p[1] <= 223]
        assert len(rtp) >= 40, f"{len(rtp)} RTP packets seen"
        assert {len(p) for p in rtp} == {SRTP_80}, "every packet carries an 80-bit SRTP tag"
        for p in rtp[-20:]:  # not the G.711 of a steady tone: decoded as PCMU, it is noise with no tone in it
            samples = g711.ULAW_DECODE[np.frombuffer(p[12:172], dtype=np.uint8)]
            rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
            for freq in (600, 900):  # a sine's level is sqrt(2) * rms; noise spreads over every frequency
                assert tone_level(samples, freq) < 0.5 * np.sqrt(2) * rms
    us.client.calls.actions.hangup(cid)
    us.event("call.hangup", cid)
    assert far.event("call.hangup", far_cid).payload["hangup_source"] == "caller"


def test_plain_rtp_is_refused_where_srtp_is_required(provider: NodeThread, customer_node: NodeThread,
                                                     far: Tenant, receiver: WebhookReceiver) -> None:  # fmt: skip
    """The customer's trunk offers plain RTP over TLS: the provider answers 488 Not Acceptable Here, and the
    call ends with that cause; the provider's application never sees it."""
    us = make_tenant(customer_node, receiver)
    add_trunk(us, _tls_port(provider), host="127.0.0.1", transport="tls", number_format="e164")
    before = _initiated(far)
    resp = us.client.calls.dial(connection_id=us.connection_id, from_="+15550001111", to=NUMBER)
    assert resp.data is not None
    hangup = us.event("call.hangup", resp.data.call_control_id, timeout=15)
    assert hangup.payload["sip_hangup_cause"] == "488"
    assert hangup.payload["hangup_cause"] == "call_rejected"
    time.sleep(0.5)
    assert _initiated(far) == before


def test_srtp_needs_a_tls_trunk(tenant: Tenant) -> None:
    for transport in ("udp", "tcp"):
        resp = api(tenant, "POST", "/trunks", {"name": f"plain-{transport}", "host": "gw.example.net",
                                               "transport": transport, "srtp": "required"})
        assert resp.status_code == 422, resp.text
        error = resp.json()["errors"][0]
        assert error["source"]["pointer"] == "/srtp" and "srtp needs transport tls" in error["detail"]
    resp = api(tenant, "POST", "/trunks", {"name": "odd", "host": "gw.example.net", "transport": "tls",
                                           "srtp": "sometimes"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["source"]["pointer"] == "/srtp", resp.text
    resp = api(tenant, "POST", "/trunks", {"name": "secure", "host": "gw.example.net", "transport": "tls",
                                           "srtp": "optional"})
    assert resp.status_code == 200 and resp.json()["data"]["srtp"] == "optional", resp.text
    trunk_id = resp.json()["data"]["id"]
    resp = api(tenant, "PATCH", f"/trunks/{trunk_id}", {"transport": "udp"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["source"]["pointer"] == "/srtp", resp.text
    assert api(tenant, "DELETE", f"/trunks/{trunk_id}").status_code == 200
