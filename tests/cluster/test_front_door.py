"""The shipped Kamailio configuration in front of one node (the suite's own, on SQLite): a caller's call is
relayed with its Request-URI kept, the node answers through the proxy and the call's in-dialog requests
from either side follow the Record-Route set; a silent destination and one answering 503 are passed over."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.support import (
    CALLER_CANCELS,
    CALLER_HANGS_UP,
    NODE_HANGS_UP,
    REFUSES_503,
    FrontDoor,
    Sipp,
    call_invite,
    exchange,
    front_door,
)
from tests.support.node import NodeThread
from tests.support.tenant import Tenant

pytestmark = [pytest.mark.cluster, pytest.mark.sip]


@pytest.fixture(scope="module")
def proxy(node: NodeThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    with front_door(tmp_path_factory.mktemp("kamailio"), [f"sip:127.0.0.1:{node.sip_port} 0 0"]) as fd:
        yield fd


def incoming(tenant: Tenant) -> str:
    initiated = tenant.receiver.wait_for(
        lambda r: r.path == tenant.path and r.event_type == "call.initiated", timeout=15)[0]
    assert initiated.payload["direction"] == "incoming"
    # The node routed the call by the Request-URI's user, which the proxy kept.
    assert initiated.payload["to"].startswith(f"sip:{tenant.connection_id}@")
    cid: str = initiated.payload["call_control_id"]
    return cid


def header(message: str, name: str) -> list[str]:
    return re.findall(rf"^{name}:\s*(.*)$", message, flags=re.MULTILINE | re.IGNORECASE)


def test_a_call_through_the_proxy_ended_by_the_caller(tenant: Tenant, proxy: FrontDoor, tmp_path: Path) -> None:
    caller = call_invite(CALLER_HANGS_UP, tenant.connection_id, proxy.address, tmp_path)
    cid = incoming(tenant)
    tenant.client.calls.actions.answer(cid)
    tenant.event("call.answered", cid)
    code, output = caller.wait()
    assert code == 0, output
    assert tenant.event("call.hangup", cid).payload["hangup_source"] == "caller"

    messages = caller.messages()
    ok = next(m for m in messages if m.startswith("SIP/2.0 200") and "INVITE" in header(m, "CSeq")[0])
    assert header(ok, "Record-Route") == [f"<sip:{proxy.address};lr>"]  # the node copied the proxy's route
    assert header(ok, "Contact") == [f"<sip:callroom@127.0.0.1:{tenant.node.sip_port}>"]
    bye = next(m for m in messages if m.startswith("BYE "))
    assert bye.startswith(f"BYE sip:callroom@127.0.0.1:{tenant.node.sip_port} ")
    assert header(bye, "Route") == [f"<sip:{proxy.address};lr>"]  # ... so SIPp's BYE went through it


def test_a_call_through_the_proxy_ended_by_the_node(tenant: Tenant, proxy: FrontDoor, tmp_path: Path) -> None:
    caller = call_invite(NODE_HANGS_UP, tenant.connection_id, proxy.address, tmp_path)
    cid = incoming(tenant)
    tenant.client.calls.actions.answer(cid)
    tenant.event("call.answered", cid)
    tenant.client.calls.actions.hangup(cid)
    code, output = caller.wait()
    assert code == 0, output
    tenant.event("call.hangup", cid)

    bye = next(m for m in caller.messages() if m.startswith("BYE "))
    vias = header(bye, "Via")
    # The node sent its BYE to the route set's first hop, the proxy, which relayed it to SIPp's Contact.
    assert len(vias) == 2, bye
    assert vias[0].startswith(f"SIP/2.0/UDP {proxy.address};")
    assert vias[1].startswith(f"SIP/2.0/UDP 127.0.0.1:{tenant.node.sip_port};")


def test_a_call_cancelled_through_the_proxy(tenant: Tenant, proxy: FrontDoor, tmp_path: Path) -> None:
    caller = call_invite(CALLER_CANCELS, tenant.connection_id, proxy.address, tmp_path)
    cid = incoming(tenant)
    code, output = caller.wait()
    assert code == 0, output
    hangup = tenant.event("call.hangup", cid)
    assert hangup.payload["hangup_source"] == "caller", hangup.payload
    assert "call.answered" not in tenant.events(cid)


def _silent_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def test_failover_past_a_silent_node_and_a_503(tenant: Tenant, tmp_path: Path) -> None:
    refusing = Sipp("refusing", REFUSES_503, [], tmp_path / "refusing", timeout="60s")
    silent = _silent_udp_port()
    try:
        # By priority (algorithm 8): first the silent node, then the one answering 503, then the real one.
        # Probes every 60 s: it is the INVITE that finds the silent node out here, not a probe.
        destinations = [f"sip:127.0.0.1:{silent} 0 20", f"sip:127.0.0.1:{refusing.port} 0 10",
                        f"sip:127.0.0.1:{tenant.node.sip_port} 0 5"]
        with front_door(tmp_path / "kamailio", destinations, DS_ALGORITHM='"8"', PING_INTERVAL="60") as fd:
            caller = call_invite(CALLER_HANGS_UP, tenant.connection_id, fd.address, tmp_path / "caller")
            cid = incoming(tenant)
            tenant.client.calls.actions.answer(cid)
            code, output = caller.wait()
            assert code == 0, output
            tenant.event("call.hangup", cid)

            log = fd.log_text()
            assert f"node sip:127.0.0.1:{silent} did not answer INVITE; marking it inactive" in log, log
            assert f"node sip:127.0.0.1:{refusing.port} answered 503" in log, log
            assert f"fails over to sip:127.0.0.1:{tenant.node.sip_port}" in log, log
            states = fd.states()
            assert states[f"sip:127.0.0.1:{silent}"].startswith("I"), states  # taken out until a probe answers
            assert states[f"sip:127.0.0.1:{tenant.node.sip_port}"].startswith("A"), states
        refused = [m for m in refusing.messages() if m.startswith(("INVITE ", "SIP/2.0 503"))]
        assert [m.split("\n", 1)[0].split(" ")[0] for m in refused] == ["INVITE", "SIP/2.0"], refused
        # The proxy kept the Request-URI: the node behind it routes by its user.
        assert refused[0].startswith(f"INVITE sip:{tenant.connection_id}@{fd.address} ")
    finally:
        refusing.stop()


_INVITE = """INVITE sip:{user}@127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:LPORT;branch=z9hG4bK{call_id};rport
From: <sip:raw@127.0.0.1:LPORT>;tag=raw
To: <sip:{user}@127.0.0.1:{port}>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:raw@127.0.0.1:LPORT>
Max-Forwards: 70
Content-Length: 0

"""


def test_no_live_node_and_every_node_refusing(tmp_path: Path) -> None:
    with front_door(tmp_path / "none", ["sip:127.0.0.1:9 1 0"]) as fd:  # flag 1: inactive from the start
        (reply,) = exchange(fd.port, _INVITE.format(user="app", port=fd.port, call_id="none-live"))
        assert reply.startswith("SIP/2.0 503 ") and "\r\nRetry-After: 5\r\n" in reply, reply
    refusing = Sipp("refusing", REFUSES_503, [], tmp_path / "refusing", timeout="60s")
    try:
        with front_door(tmp_path / "all", [f"sip:127.0.0.1:{refusing.port} 0 0"], PING_INTERVAL="60") as fd:
            replies = exchange(fd.port, _INVITE.format(user="app", port=fd.port, call_id="all-refuse"))
            # A 503 is not passed upstream as it is (RFC 3261 16.7): the caller would take it for the proxy's.
            assert replies[-1].startswith("SIP/2.0 500 "), replies
    finally:
        refusing.stop()


def test_in_dialog_requests_from_outside_are_relayed_only_to_nodes(proxy: FrontDoor, node: NodeThread) -> None:
    bye = ("BYE sip:someone@127.0.0.1:{target} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:LPORT;branch=z9hG4bK{n};rport\n"
           "Route: <sip:{proxy};lr>\nFrom: <sip:raw@127.0.0.1>;tag=raw\nTo: <sip:app@127.0.0.1>;tag=t\n"
           "Call-ID: relay-{n}\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n")
    (refused,) = exchange(proxy.port, bye.format(target=19, n=1, proxy=proxy.address))
    assert refused.startswith("SIP/2.0 403 "), refused  # not an open relay for whoever knows its address
    (to_node,) = exchange(proxy.port, bye.format(target=node.sip_port, n=2, proxy=proxy.address))
    assert to_node.startswith("SIP/2.0 481 "), to_node  # relayed: the node knows no such call
