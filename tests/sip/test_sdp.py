from __future__ import annotations

from pathlib import Path

import pytest

from callroom.errors import SdpParseError
from callroom.sip.message import parse_message
from callroom.sip.sdp import (
    PCMA,
    PCMU,
    Codec,
    Direction,
    NoCommonCodec,
    SessionDescription,
    accept_answer,
    make_offer,
    negotiate_answer,
)  # fmt: skip

DATA = Path(__file__).parent / "data"


def _sdp(name: str) -> SessionDescription:
    return SessionDescription.parse(parse_message((DATA / name).read_bytes()).body)


@pytest.mark.parametrize("name", ["baresip_invite.txt", "sipp_uac_invite.txt", "reinvite_sendonly.txt",
                                  "compact_folded.txt", "sipp_uas_200.txt"])  # fmt: skip
def test_round_trip(name: str) -> None:
    sdp = _sdp(name)
    assert SessionDescription.parse(bytes(sdp)) == sdp
    assert bytes(SessionDescription.parse(bytes(sdp))) == bytes(sdp)


def test_baresip_offer_fields() -> None:
    sdp = _sdp("baresip_invite.txt")
    audio = sdp.first_audio()
    assert audio is not None
    assert [c.name for c in audio.codecs()] == ["PCMU", "PCMA", "telephone-event"]
    assert audio.fmtp(101) == "0-15"
    assert audio.ptime == 20
    assert sdp.rtp_addr(audio) == ("192.168.1.20", 10010)
    assert sdp.media_direction(audio) is Direction.SENDRECV
    assert ("b", "AS:64") in audio.extra
    assert bytes(sdp).startswith(b"v=0\r\no=- 1947238106 2939436472 IN IP4 192.168.1.20\r\n")


def test_answer_baresip_offer() -> None:
    offer = _sdp("baresip_invite.txt")
    result = negotiate_answer(offer, "10.1.1.1", 30000, supported=("PCMA", "PCMU"))
    answer, codec, te_pt, remote, direction = result
    assert codec == PCMU  # the offerer's preference wins among what we support
    assert te_pt == 101
    assert remote == ("192.168.1.20", 10010)
    assert direction is Direction.SENDRECV
    text = bytes(answer).decode()
    assert "m=audio 30000 RTP/AVP 0 101\r\n" in text
    assert "a=fmtp:101 0-16\r\n" in text and "a=ptime:20\r\n" in text and "c=IN IP4 10.1.1.1\r\n" in text
    assert accept_answer(offer, answer).codec == PCMU


def test_static_payload_without_rtpmap_and_media_level_connection() -> None:
    offer = _sdp("compact_folded.txt")  # m=audio 4000 RTP/AVP 8 0, c= only at media level, recvonly
    result = negotiate_answer(offer, "10.1.1.1", 30000)
    assert result.codec == PCMA
    assert result.telephone_event_pt is None
    assert result.remote_rtp_addr == ("10.0.0.5", 4000)
    assert result.direction is Direction.SENDONLY


@pytest.mark.parametrize(
    ("offered", "local", "expected"),
    [
        (Direction.SENDONLY, Direction.SENDRECV, Direction.RECVONLY),
        (Direction.RECVONLY, Direction.SENDRECV, Direction.SENDONLY),
        (Direction.INACTIVE, Direction.SENDRECV, Direction.INACTIVE),
        (Direction.SENDRECV, Direction.SENDONLY, Direction.SENDONLY),
        (Direction.SENDONLY, Direction.SENDONLY, Direction.INACTIVE),
    ],
)
def test_directions(offered: Direction, local: Direction, expected: Direction) -> None:
    offer = make_offer("10.0.0.1", 4000, direction=offered)
    result = negotiate_answer(offer, "10.0.0.2", 5000, local_direction=local)
    assert result.direction is expected
    assert f"a={expected.value}" in bytes(result.answer).decode()
    assert accept_answer(offer, result.answer).direction is expected.answer()


def test_session_level_direction_applies() -> None:
    text = _raw("a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n")
    assert negotiate_answer(SessionDescription.parse(text), "1.1.1.1", 2).direction is Direction.RECVONLY


def _raw(tail: str, conn: str = "c=IN IP4 10.0.0.9\r\n") -> bytes:
    return f"v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\n{conn}t=0 0\r\n{tail}".encode()


def test_rejected_streams_get_port_zero() -> None:
    offer = SessionDescription.parse(_raw(
        "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
        "m=audio 0 RTP/AVP 0\r\n"
        "m=audio 6000 RTP/AVP 18 8\r\n"
    ))  # fmt: skip
    result = negotiate_answer(offer, "10.1.1.1", 30000)
    assert [m.port for m in result.answer.media] == [0, 0, 30000]
    assert result.codec == PCMA and result.remote_rtp_addr == ("10.0.0.9", 6000)
    assert SessionDescription.parse(bytes(result.answer)) == result.answer


def test_no_common_codec() -> None:
    offer = SessionDescription.parse(_raw("m=audio 6000 RTP/AVP 18 9\r\n"))
    with pytest.raises(NoCommonCodec, match="no audio codec in common"):
        negotiate_answer(offer, "10.1.1.1", 30000)
    with pytest.raises(NoCommonCodec):
        negotiate_answer(SessionDescription.parse(_raw("m=audio 0 RTP/AVP 0\r\n")), "10.1.1.1", 30000)


def test_make_offer() -> None:
    offer = make_offer("127.0.0.1", 40000, codecs=("PCMA",), session_version=3, direction=Direction.SENDONLY)
    text = bytes(offer).decode()
    assert "o=callroom 0 3 IN IP4 127.0.0.1\r\n" in text
    assert "m=audio 40000 RTP/AVP 8 101\r\n" in text and "a=sendonly\r\n" in text
    audio = offer.first_audio()
    assert audio is not None and audio.codecs()[0] == Codec("PCMA", 8)
    assert b"IN IP6 ::1" in bytes(make_offer("::1", 4000))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "must start with v=0"),
        (b"v=1\r\n", "must start with v=0"),
        (_raw("m=audio 4000 RTP/AVP 0\r\n").replace(b"s=-\r\n", b""), "missing s="),
        (_raw("m=audio 4000 RTP/AVP 0\r\n").replace(b"t=0 0\r\n", b""), "missing t="),
        (_raw("m=audio 4000 RTP/AVP 0\r\n").replace(b"o=- 1 1 IN IP4 10.0.0.9\r\n", b""), "missing o="),
        (_raw("", conn="c=IN IP4 bad_addr!\r\n"), "bad connection address"),
        (_raw("", conn="c=IN IP6 10.0.0.1\r\n"), "does not match IP6"),
        (_raw("", conn="c=IN\r\n"), "bad c= line"),
        (_raw("m=audio 70000 RTP/AVP 0\r\n"), "bad port"),
        (_raw("m=audio 4000 RTP/AVP x\r\n"), "bad RTP payload type"),
        (_raw("m=audio 4000\r\n"), "bad m= line"),
        (_raw("m=audio 4000 RTP/AVP 0\r\na=rtpmap:zero PCMU\r\n"), "bad rtpmap"),
        (_raw("m=audio 4000 RTP/AVP 0\r\na=ptime:abc\r\n"), "bad ptime"),
        (_raw("m=audio 4000 RTP/AVP 0\r\ns=again\r\n"), "not allowed in a media section"),
        (_raw("m=audio 4000 RTP/AVP 0\r\n", conn=""), "no c= line"),
        (_raw("junk\r\n"), "bad SDP line"),
        (b"v=0\r\no=x\xff\r\n", "not valid UTF-8"),
        (_raw("v=0\r\n"), "repeated v="),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(SdpParseError, match=message):
        SessionDescription.parse(data)


def test_accept_answer_checks() -> None:
    offer = make_offer("10.0.0.1", 4000, codecs=("PCMU",))
    with pytest.raises(SdpParseError, match="different number of m= lines"):
        accept_answer(offer, SessionDescription.parse(_raw("")))
    bad = SessionDescription.parse(_raw("m=audio 5000 RTP/AVP 8\r\n"))
    with pytest.raises(NoCommonCodec, match="no codec that was offered"):
        accept_answer(offer, bad)
