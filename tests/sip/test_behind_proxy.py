"""The node's SIP endpoint behind a record-routing proxy (Kamailio in front of the nodes), sans I/O: the
proxy's datagrams are written here as Kamailio writes them (its Via on top of the caller's, its
Record-Route, its Route on the caller's in-dialog requests). Responses go back to the proxy with both Vias;
the node's own in-dialog requests go to the proxy with the route set as Route headers, the caller's
Contact as Request-URI (RFC 3261 12.2.1.1); and a route set the node cannot send to directly (a name) falls
back to the proxy's address, where the INVITE came from. The real thing: tests/cluster."""

from __future__ import annotations

import random

import pytest

from callroom.sip.call import CallEnded, IncomingCall
from callroom.sip.message import SipRequest, SipResponse, parse_message
from callroom.sip.sdp import make_offer
from callroom.sip.ua import SipEndpoint

NODE = ("127.0.0.1", 5071)
PROXY = ("127.0.0.1", 5060)
CALLER = "127.0.0.1:40123"
CALLER_VIA = f"SIP/2.0/UDP {CALLER};branch=z9hG4bK-caller-1;rport=40123"
PROXY_VIA = "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy.1"


def _invite(record_route: str = "<sip:127.0.0.1:5060;lr>") -> bytes:
    body = bytes(make_offer("127.0.0.1", 40000))
    head = (f"INVITE sip:app-1@127.0.0.1:5060 SIP/2.0\r\nRecord-Route: {record_route}\r\n"
            f"Via: {PROXY_VIA}\r\nVia: {CALLER_VIA}\r\nMax-Forwards: 69\r\n"
            f"From: <sip:caller@{CALLER}>;tag=caller-tag\r\nTo: <sip:app-1@127.0.0.1:5060>\r\nCall-ID: via-proxy-1\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:caller@{CALLER}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _answered(record_route: str = "<sip:127.0.0.1:5060;lr>") -> tuple[SipEndpoint, str, SipResponse]:
    node = SipEndpoint(NODE, rng=random.Random(7))
    node.receive_datagram(_invite(record_route), PROXY, 0.0)
    (incoming,) = [ev for ev in iter(node.next_event, None)]
    assert isinstance(incoming, IncomingCall) and incoming.request_uri.user == "app-1"
    assert incoming.source_addr == PROXY
    node.answer(incoming.call_id, make_offer("127.0.0.1", 41000), 0.0)
    sent = node.datagrams_to_send(0.0)
    assert {addr for _, addr in sent} == {PROXY}  # the 100 and the 200 go back through the proxy
    ok = parse_message(sent[-1][0])
    assert isinstance(ok, SipResponse) and ok.status == 200
    return node, incoming.call_id, ok


def test_responses_keep_both_vias_and_the_record_route() -> None:
    _, _, ok = _answered()
    vias = ok.headers.get_all("Via")
    assert len(vias) == 2 and vias[0].startswith("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy.1")
    assert vias[1] == CALLER_VIA  # the caller's, untouched: the proxy takes its own off and relays the rest
    assert ok.headers.get_all("Record-Route") == ["<sip:127.0.0.1:5060;lr>"]


def test_the_callers_ack_and_bye_through_the_proxy_end_the_call() -> None:
    node, call_id, ok = _answered()
    tag = ok.to.tag
    for method, seq in (("ACK", 1), ("BYE", 2)):
        # The proxy took its Route off (loose_route) and put its Via on top of the caller's.
        msg = (f"{method} sip:callroom@127.0.0.1:5071 SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy.{seq + 1}\r\n"
               f"Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-caller-{seq + 1};rport=40123\r\nMax-Forwards: 69\r\n"
               f"From: <sip:caller@{CALLER}>;tag=caller-tag\r\nTo: <sip:app-1@127.0.0.1:5060>;tag={tag}\r\n"
               f"Call-ID: {call_id}\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n")
        node.receive_datagram(msg.encode(), PROXY, 0.1 * seq)
    ((data, addr),) = node.datagrams_to_send(0.2)
    done = parse_message(data)
    assert addr == PROXY and isinstance(done, SipResponse) and done.status == 200 and done.cseq.method == "BYE"
    assert len(done.headers.get_all("Via")) == 2
    assert any(isinstance(ev, CallEnded) and ev.by == "remote" for ev in iter(node.next_event, None))


@pytest.mark.parametrize(("record_route", "route"), [
    ("<sip:127.0.0.1:5060;lr>", "<sip:127.0.0.1:5060;lr>"),
    # Kamailio on two sockets (LISTEN_NODES) record-routes twice; the first is the one facing the node.
    ("<sip:127.0.0.1:5060;r2=on;lr>, <sip:192.0.2.10:5060;r2=on;lr>", None),
])  # fmt: skip
def test_the_nodes_bye_follows_the_route_set_to_the_proxy(record_route: str, route: str | None) -> None:
    node, call_id, _ = _answered(record_route)
    node.hangup(call_id, 0.5)
    ((data, addr),) = node.datagrams_to_send(0.5)
    bye = parse_message(data)
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert addr == PROXY  # the route set's first hop, not the caller's Contact
    assert str(bye.uri) == f"sip:caller@{CALLER}"  # the remote target, for the proxy to relay to
    expected = [route] if route else [r.strip() for r in record_route.split(",")]
    assert bye.headers.get_all("Route") == expected


def test_a_route_set_named_by_host_falls_back_to_where_the_invite_came_from() -> None:
    node, call_id, _ = _answered("<sip:edge.example.invalid;lr>")
    node.hangup(call_id, 0.5)
    ((data, addr),) = node.datagrams_to_send(0.5)
    bye = parse_message(data)
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert addr == PROXY  # no lookup of the name: the proxy's address, where the INVITE came from
    assert bye.headers.get_all("Route") == ["<sip:edge.example.invalid;lr>"]
