"""Offers refused as a PBX refuses them, with 488 Not Acceptable Here, SIPp calling over UDP: SRTP from a phone
(no trunk, so no SRTP), SRTP keys from a trunk's address outside TLS, plain RTP where the trunk requires SRTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callroom.model.messages import SipConfig
from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver
from tests.trunks.provider import PROVIDER_IP, Sipp, refused_offer_scenario
from tests.trunks.tenants import add_trunk, make_tenant, own_number

pytestmark = pytest.mark.sip

NUMBER = "+15550009931"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    data_dir = tmp_path_factory.mktemp("srtp-refusals")
    n = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir, sip=SipConfig(port=0, allow=("127.0.0.1/32",)))
    yield n
    n.stop()


@pytest.mark.parametrize(("who", "proto", "crypto"), [
    ("phone", "RTP/SAVP", True),  # a phone's call is never SRTP: RTP/SAVP is not acceptable
    ("trunk", "RTP/SAVP", True),  # the SRTP trunk's address, but over UDP: keys in the clear
    ("trunk", "RTP/AVP", False),  # plain RTP (over UDP) where the trunk requires SRTP
    ("trunk", None, False),  # no offer (ours would go in the 200), over UDP where the trunk requires SRTP
])  # fmt: skip
def test_offers_refused_with_488(who: str, proto: str | None, crypto: bool, node: NodeThread, receiver: WebhookReceiver,
                                 tmp_path: Path) -> None:  # fmt: skip
    tenant = make_tenant(node, receiver)
    if who == "trunk":
        add_trunk(tenant, 5061, name=f"srtp-{(proto or 'none').lower().replace('/', '-')}", transport="tls",
                  srtp="required",
                  numbers=[NUMBER] if proto == "RTP/SAVP" else [])
        if proto == "RTP/SAVP":
            own_number(tenant, NUMBER)
    to = tenant.connection_id if who == "phone" else NUMBER[1:]
    scenario = tmp_path / "caller.xml"
    scenario.write_text(refused_offer_scenario(proto, crypto, to))
    caller = Sipp(["-sf", str(scenario), "-m", "1", "-s", to, f"127.0.0.1:{node.sip_port}"], tmp_path,
                  ip="127.0.0.1" if who == "phone" else PROVIDER_IP)
    code, output = caller.wait()
    assert code == 0, output
    assert tenant.events() == []  # the application never saw a call it could not take
