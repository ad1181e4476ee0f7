from __future__ import annotations

from pathlib import Path

import pytest

from callroom.errors import IllegalTransition, ProtocolError
from callroom.sip.dialog import Dialog, DialogInput, DialogState, Retransmit2xx, make_cancel
from callroom.sip.message import SipRequest, Via, parse_message, response_to

DATA = Path(__file__).parent / "data"
VIA = Via("192.168.1.10", 5060, "UDP", {"branch": "z9hG4bKnew"})


def _invite() -> SipRequest:
    req = SipRequest.parse((DATA / "baresip_invite.txt").read_bytes())
    req.headers.add("Record-Route", "<sip:p1.example.com;lr>")
    req.headers.add("Record-Route", "<sip:p2.example.com;lr>")
    return req


def test_uas_dialog_and_in_dialog_requests() -> None:
    invite = _invite()
    d = Dialog.from_uas(invite, "as1c0ffee", invite.uri)
    assert d.id.remote_tag == "4a1b5c2d8e9f0a11" and d.state is DialogState.EARLY
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert d.next_hop() == ("p1.example.com", 5060)
    d.fire(DialogInput.CONFIRM)
    bye = parse_message(bytes(d.create_request("BYE", VIA)))
    assert isinstance(bye, SipRequest)
    assert str(bye.uri) == "sip:alice-0x55d5@192.168.1.20:5062;transport=udp"  # remote target
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.from_.tag == "as1c0ffee" and bye.to.tag == "4a1b5c2d8e9f0a11" and bye.cseq.seq == 1
    reinvite = d.create_request("INVITE", VIA, b"v=0\r\n", "application/sdp")
    assert reinvite.cseq.seq == 2 and reinvite.headers.get("Contact") is not None


def test_uac_dialog_reverses_record_route_and_strict_routing() -> None:
    invite = SipRequest.parse((DATA / "sipp_uac_invite.txt").read_bytes())
    ok = response_to(invite, 200, "OK", "remote1", extra=[
        ("Contact", "<sip:b@10.0.0.2:5070>"), ("Record-Route", "<sip:strict.example.com>"),
        ("Record-Route", "<sip:edge.example.com;lr>"),
    ])  # fmt: skip
    d = Dialog.from_uac(invite, ok)
    assert d.state is DialogState.CONFIRMED and d.remote_tag == "remote1"
    assert [r.uri.host for r in d.route_set] == ["edge.example.com", "strict.example.com"]
    d.route_set.reverse()  # make the first hop a strict router
    bye = d.create_request("BYE", VIA)
    assert str(bye.uri) == "sip:strict.example.com"
    assert bye.headers.get_all("Route")[-1] == "<sip:b@10.0.0.2:5070>"
    ack = d.create_ack(VIA)
    assert ack.cseq.seq == 1 and ack.cseq.method == "ACK"


def test_early_dialog_from_18x_and_missing_tag() -> None:
    invite = SipRequest.parse((DATA / "sipp_uac_invite.txt").read_bytes())
    early = Dialog.from_uac(invite, response_to(invite, 180, "Ringing", "r"))
    assert early.state is DialogState.EARLY
    with pytest.raises(ProtocolError, match="tags"):
        Dialog.from_uac(invite, response_to(invite, 180, "Ringing"))


def test_remote_cseq_must_grow() -> None:
    invite = _invite()
    d = Dialog.from_uas(invite, "t", invite.uri)
    bye = SipRequest.parse((DATA / "bye.txt").read_bytes())
    assert d.receive_request(bye)
    assert not d.receive_request(bye)


def test_transition_table() -> None:
    invite = _invite()
    d = Dialog.from_uas(invite, "t", invite.uri)
    d.fire(DialogInput.CONFIRM)
    with pytest.raises(IllegalTransition, match="dialog"):
        d.fire(DialogInput.FAIL)
    d.fire(DialogInput.BYE)
    with pytest.raises(IllegalTransition):
        d.create_request("BYE", VIA)


def test_make_cancel() -> None:
    invite = _invite()
    cancel = make_cancel(invite)
    assert cancel.uri == invite.uri and cancel.branch == invite.branch
    assert cancel.cseq.seq == invite.cseq.seq and cancel.cseq.method == "CANCEL"
    assert parse_message(bytes(cancel)) == cancel


def test_2xx_retransmission_schedule() -> None:
    invite = _invite()
    rt = Retransmit2xx.start(response_to(invite, 200, "OK", "t"), ("192.168.1.20", 5062), 0.0)
    times = []
    while rt.advance(rt.next_at):
        times.append(rt.next_at)
    assert times[:5] == [1.5, 3.5, 7.5, 11.5, 15.5] and times[-1] <= 36.0
