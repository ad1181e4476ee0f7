from __future__ import annotations

import pytest

from callroom.errors import IllegalTransition
from callroom.sip.dialog import make_cancel
from callroom.sip.message import Headers, SipRequest, SipUri, Via, response_to
from callroom.sip.transaction import (
    CLIENT_INVITE,
    SERVER_INVITE,
    ClientInviteState,
    Input,
    RequestReceived,
    ResponseReceived,
    ServerInviteState,
    ServerNonInviteState,
    Transaction,
    TransactionEvent,
    TransactionLayer,
    TransactionTimeout,
)  # fmt: skip

from .net import LayerPeer, Net, Wire

A = ("127.0.0.1", 5061)
B = ("127.0.0.1", 5062)


def _request(method: str, branch: str = "z9hG4bKtest1", seq: int = 1) -> SipRequest:
    h = Headers()
    h.add("Via", str(Via(A[0], A[1], "UDP", {"branch": branch, "rport": None})))
    h.add("Max-Forwards", "70")
    h.add("From", "<sip:a@127.0.0.1:5061>;tag=fa")
    h.add("To", "<sip:b@127.0.0.1:5062>")
    h.add("Call-ID", "tx-test@127.0.0.1")
    h.add("CSeq", f"{seq} {method}")
    h.add("Contact", "<sip:a@127.0.0.1:5061>")
    return SipRequest(method, SipUri("127.0.0.1", "b", 5062), h)


def _events(layer: TransactionLayer) -> list[TransactionEvent]:
    out = []
    while (ev := layer.next_event()) is not None:
        out.append(ev)
    return out


def _pair(drop: object = None) -> tuple[TransactionLayer, TransactionLayer, Net]:
    a, b = TransactionLayer(), TransactionLayer()
    net = Net({A: LayerPeer(a), B: LayerPeer(b)})
    if drop is not None:
        net.drop = drop  # type: ignore[assignment]
    return a, b, net


def test_non_invite_round_trip_and_cleanup() -> None:
    a, b, net = _pair()
    tx = a.send_request(_request("OPTIONS"), B, 0.0)
    net.flush()
    (ev,) = _events(b)
    assert isinstance(ev, RequestReceived) and ev.request.method == "OPTIONS" and ev.source == A
    assert ev.request.top_via.rport == 5061  # stamped on receipt (RFC 3581)
    assert ev.transaction_id is not None
    b.send_response(ev.transaction_id, response_to(ev.request, 200, "OK", "tb"), 0.1)
    net.flush()
    (resp,) = _events(a)
    assert isinstance(resp, ResponseReceived) and resp.response.status == 200 and resp.transaction_id == tx
    assert b.state_of(ev.transaction_id) is ServerNonInviteState.COMPLETED
    net.run(until=6.0)  # Timer K = T4 = 5 s
    assert tx not in a.transactions and ev.transaction_id in b.transactions
    net.run(until=33.0)  # Timer J = 64*T1
    assert not a.transactions and not b.transactions
    assert len(net.sent(A, "OPTIONS")) == 1  # the response stopped Timer E


def test_invite_timer_a_doubles_until_timer_b() -> None:
    a = TransactionLayer()
    net = Net({A: LayerPeer(a)})  # nobody at B
    tx = a.send_request(_request("INVITE"), B, 0.0)
    net.run(until=40.0)
    times = [w.time for w in net.sent(A, "INVITE")]
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    (ev,) = _events(a)
    assert isinstance(ev, TransactionTimeout) and ev.transaction_id == tx and ev.timer == "B"
    assert a.get_timer() is None and not a.transactions


def test_non_invite_timer_e_caps_at_t2_until_timer_f() -> None:
    a = TransactionLayer()
    net = Net({A: LayerPeer(a)})
    a.send_request(_request("BYE"), B, 0.0)
    net.run(until=40.0)
    times = [w.time for w in net.sent(A, "BYE")]
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    (ev,) = _events(a)
    assert isinstance(ev, TransactionTimeout) and ev.timer == "F"


def test_lost_invite_is_retransmitted_and_100_sent_at_once() -> None:
    lost = {"n": 0}

    def drop(w: Wire) -> bool:
        if w.first_line.startswith("INVITE") and lost["n"] == 0:
            lost["n"] += 1
            return True
        return False

    a, b, net = _pair(drop)
    a.send_request(_request("INVITE"), B, 0.0)
    net.run(until=0.6)
    (ev,) = _events(b)
    assert isinstance(ev, RequestReceived)
    trying = net.sent(B, "SIP/2.0 100")
    assert [w.time for w in trying] == [0.5]
    assert [type(e) for e in _events(a)] == [ResponseReceived]


def test_invite_retransmission_gets_last_provisional_again() -> None:
    a, b, net = _pair(lambda w: w.first_line.startswith("SIP/2.0 1"))  # provisionals lost
    a.send_request(_request("INVITE"), B, 0.0)
    net.run(until=2.0)
    (ev,) = _events(b)
    assert isinstance(ev, RequestReceived) and ev.transaction_id is not None
    assert len(net.sent(A, "INVITE")) == 3 and len(net.sent(B, "SIP/2.0 100")) == 3
    assert b.state_of(ev.transaction_id) is ServerInviteState.PROCEEDING


def test_non_2xx_final_ack_lost_then_timer_g() -> None:
    acks = {"n": 0}

    def drop(w: Wire) -> bool:
        if w.first_line.startswith("ACK"):
            acks["n"] += 1
            return acks["n"] == 1  # the first ACK is lost
        return False

    a, b, net = _pair(drop)
    tx = a.send_request(_request("INVITE"), B, 0.0)
    net.flush()
    (ev,) = _events(b)
    assert isinstance(ev, RequestReceived) and ev.transaction_id is not None
    b.send_response(ev.transaction_id, response_to(ev.request, 486, "Busy Here", "tb"), 0.0)
    net.flush()
    assert b.state_of(ev.transaction_id) is ServerInviteState.COMPLETED
    net.run(until=0.6)  # Timer G re-sends the 486, the client re-sends its ACK
    assert b.state_of(ev.transaction_id) is ServerInviteState.CONFIRMED
    assert len(net.sent(B, "SIP/2.0 486")) == 2 and len(net.sent(A, "ACK")) == 2
    ack = net.sent(A, "ACK")[0].data.decode()
    assert "To: <sip:b@127.0.0.1:5062>;tag=tb" in ack and "CSeq: 1 ACK" in ack and "z9hG4bKtest1" in ack
    finals = [e for e in _events(a) if isinstance(e, ResponseReceived) and e.response.status == 486]
    assert len(finals) == 1  # the retransmitted 486 is absorbed by the transaction
    net.run(until=6.0)  # Timer I
    assert ev.transaction_id not in b.transactions
    assert a.state_of(tx) is ClientInviteState.COMPLETED
    net.run(until=33.0)  # Timer D
    assert a.state_of(tx) is None


def test_no_ack_timer_h() -> None:
    a, b, net = _pair(lambda w: w.first_line.startswith("ACK"))
    a.send_request(_request("INVITE"), B, 0.0)
    net.flush()
    (ev,) = _events(b)
    assert ev.transaction_id is not None and isinstance(ev, RequestReceived)
    b.send_response(ev.transaction_id, response_to(ev.request, 503, "Service Unavailable", "tb"), 0.0)
    net.run(until=40.0)
    times = [w.time for w in net.sent(B, "SIP/2.0 503")]
    assert times[:6] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]  # Timer G doubles up to T2
    (timeout,) = _events(b)
    assert isinstance(timeout, TransactionTimeout) and timeout.timer == "H"


def test_2xx_goes_to_accepted_and_retransmissions_reach_the_tu() -> None:
    a, b, net = _pair()
    tx = a.send_request(_request("INVITE"), B, 0.0)
    net.flush()
    (ev,) = _events(b)
    assert isinstance(ev, RequestReceived) and ev.transaction_id is not None
    ok = response_to(ev.request, 200, "OK", "tb")
    b.send_response(ev.transaction_id, ok, 0.0)
    b.send_response(ev.transaction_id, ok, 0.5)  # the TU retransmits its 2xx
    net.flush()
    assert b.state_of(ev.transaction_id) is ServerInviteState.ACCEPTED
    assert a.state_of(tx) is ClientInviteState.ACCEPTED
    oks = [e for e in _events(a) if isinstance(e, ResponseReceived) and e.response.status == 200]
    assert len(oks) == 2  # both go to the TU, which ACKs each
    net.run(until=33.0)  # Timers L and M
    assert not a.transactions and not b.transactions


def test_cancel_matches_invite_server_transaction() -> None:
    a, b, net = _pair()
    invite = _request("INVITE")
    a.send_request(invite, B, 0.0)
    net.flush()
    (inv_ev,) = _events(b)
    a.send_request(make_cancel(invite), B, 0.2)
    net.flush()
    (cancel_ev,) = _events(b)
    assert isinstance(cancel_ev, RequestReceived) and cancel_ev.request.method == "CANCEL"
    assert isinstance(inv_ev, RequestReceived) and cancel_ev.cancels == inv_ev.transaction_id


def test_unmatched_cancel_gets_481() -> None:
    a, b, net = _pair()
    a.send_request(make_cancel(_request("INVITE", branch="z9hG4bKnothing")), B, 0.0)
    net.flush()
    assert _events(b) == []
    (ev,) = _events(a)
    assert isinstance(ev, ResponseReceived) and ev.response.status == 481


def test_stray_responses() -> None:
    a, b, net = _pair()
    req = _request("INVITE", branch="z9hG4bKunknown")
    b.send_stateless(response_to(req, 180, "Ringing", "tb"), A)
    b.send_stateless(response_to(req, 200, "OK", "tb"), A)
    net.flush()
    (ev,) = _events(a)  # the stray 1xx is dropped, the stray 2xx goes to the TU (to re-send an ACK)
    assert isinstance(ev, ResponseReceived) and ev.transaction_id is None and ev.response.status == 200


def test_tu_misuse_raises_illegal_transition() -> None:
    a, b, net = _pair()
    a.send_request(_request("OPTIONS"), B, 0.0)
    net.flush()
    (ev,) = _events(b)
    assert isinstance(ev, RequestReceived) and ev.transaction_id is not None
    b.send_response(ev.transaction_id, response_to(ev.request, 200, "OK", "tb"), 0.0)
    with pytest.raises(IllegalTransition, match="non-invite server"):
        b.send_response(ev.transaction_id, response_to(ev.request, 180, "Ringing", "tb"), 0.0)
    with pytest.raises(IllegalTransition, match="server transaction"):
        b.send_response("s|nope", response_to(ev.request, 200, "OK"), 0.0)
    with pytest.raises(IllegalTransition):
        a.send_request(_request("ACK"), B, 0.0)


def test_tables_are_explicit() -> None:
    tx = Transaction("t", "invite client", CLIENT_INVITE, ClientInviteState.COMPLETED, _request("INVITE"), B)
    with pytest.raises(IllegalTransition, match="COMPLETED"):
        tx.fire(Input.RECV_2XX)
    for table in (CLIENT_INVITE, SERVER_INVITE):
        for state, moves in table.items():
            assert all(isinstance(i, Input) for i in moves)
            assert state.name == "TERMINATED" or moves
