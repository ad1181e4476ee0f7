from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callroom.errors import SipParseError
from callroom.sip.message import (
    CSeq,
    NameAddr,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    parse_message,
    response_to,
    salvage_request,
    split_commas,
)  # fmt: skip

DATA = Path(__file__).parent / "data"
SAMPLES = sorted(p for p in DATA.glob("*.txt"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_parse_and_round_trip(path: Path) -> None:
    msg = parse_message(path.read_bytes())
    again = parse_message(bytes(msg))
    assert again == msg
    assert bytes(again) == bytes(msg)
    assert msg.top_via.branch is not None and msg.top_via.branch.startswith("z9hG4bK")
    assert msg.from_.tag is not None


def test_baresip_invite_fields() -> None:
    req = SipRequest.parse((DATA / "baresip_invite.txt").read_bytes())
    assert req.method == "INVITE"
    assert req.uri == SipUri(host="192.168.1.10", user="room", port=5060)
    assert req.cseq == CSeq(44123, "INVITE")
    assert req.from_.display_name == "Alice Example"
    assert req.from_.tag == "4a1b5c2d8e9f0a11"
    assert req.to.tag is None
    via = req.top_via
    assert (via.host, via.port, via.transport, via.rport) == ("192.168.1.20", 5062, "UDP", None)
    assert "rport" in via.params
    assert req.contacts[0].uri.params == {"transport": "udp"}
    assert req.headers.get_all("Allow")[:3] == ["INVITE", "ACK", "BYE"]
    assert req.content_type == "application/sdp"
    assert req.body.startswith(b"v=0\r\n") and len(req.body) == 344
    assert "Content-Length" not in req.headers  # derived from the body when formatting
    assert b"\r\nContent-Length: 344\r\n" in bytes(req)


def test_compact_folded_and_lists() -> None:
    req = SipRequest.parse((DATA / "compact_folded.txt").read_bytes())
    assert req.call_id == "compact-1@10.0.0.5"
    assert req.cseq == CSeq(7, "INVITE")
    assert [v.host for v in req.vias] == ["10.0.0.5", "10.0.0.4"]
    assert req.vias[1].received == "10.0.0.4"
    assert req.from_.display_name == "Smith, John"
    assert req.to.uri.user == "+15551234567" and req.to.tag is None
    assert [c.uri.host for c in req.contacts] == ["10.0.0.5", "10.0.0.6"]
    assert req.contacts[0].params == {"expires": "60"}
    assert req.contacts[1].display_name == "Desk, 2"
    assert req.headers.get("subject") == "folded subject line"
    assert req.headers.get_all("Supported") == ["100rel", "timer"]
    assert req.uri.user == "+15551234567;phone-context=example.com"
    assert req.uri.params == {"user": "phone"}
    assert b"\r\nVia: SIP/2.0/UDP 10.0.0.4:5070" in bytes(req)


def test_responses() -> None:
    resp = SipResponse.parse((DATA / "response_486.txt").read_bytes())
    assert (resp.status, resp.reason, resp.to.tag) == (486, "Busy Here", "as1c0ffee")
    assert resp.top_via.response_addr() == ("192.168.1.20", 5062)
    with pytest.raises(SipParseError, match="expected a request"):
        SipRequest.parse(bytes(resp))
    with pytest.raises(SipParseError, match="expected a response"):
        SipResponse.parse((DATA / "cancel.txt").read_bytes())


def test_ipv6_uri_and_via() -> None:
    req = SipRequest.parse((DATA / "options.txt").read_bytes())
    assert req.top_via.host == "2001:db8::20"
    assert str(req.top_via).startswith("SIP/2.0/UDP [2001:db8::20]:5062")
    assert req.from_.uri == SipUri(host="2001:db8::20", user="monitor", port=5062)
    uri = SipUri.parse("sips:bob:secret@[::1]:5061;transport=tls;lr?subject=hi&priority=urgent")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == ("sips", "bob", "secret", "::1", 5061)
    assert uri.params == {"transport": "tls", "lr": None}
    assert uri.headers == {"subject": "hi", "priority": "urgent"}
    assert SipUri.parse(str(uri)) == uri


@pytest.mark.parametrize(
    ("text", "display", "tag"),
    [
        ('"A \\"quoted\\" name" <sip:a@h>;tag=1', 'A "quoted" name', "1"),
        ("Bob <sip:bob@h>;tag=x;foo", "Bob", "x"),
        ("sip:bob@h;tag=7", None, "7"),
        ("<sip:bob@h;lr>", None, None),
    ],
)
def test_name_addr(text: str, display: str | None, tag: str | None) -> None:
    na = NameAddr.parse(text)
    assert (na.display_name, na.tag) == (display, tag)
    assert NameAddr.parse(str(na)) == na


def test_addr_spec_params_belong_to_header() -> None:
    na = NameAddr.parse("sip:bob@h;tag=7")
    assert na.uri.params == {} and na.params == {"tag": "7"}


def test_split_commas() -> None:
    assert split_commas('"a, b" <sip:x@y>, <sip:z@w;p=1,2>, c') == ['"a, b" <sip:x@y>', "<sip:z@w;p=1,2>", "c"]
    with pytest.raises(SipParseError, match="unterminated quoted"):
        split_commas('"abc')


def test_content_length_honoured() -> None:
    raw = (DATA / "sipp_uac_invite.txt").read_bytes()
    req = SipRequest.parse(raw + b"trailing junk")
    assert req.body == SipRequest.parse(raw).body
    with pytest.raises(SipParseError, match="Content-Length 129 exceeds the 100 body bytes"):
        SipRequest.parse(raw[: len(raw) - 29])


def test_missing_content_length_takes_rest() -> None:
    raw = (DATA / "sipp_uac_invite.txt").read_bytes().replace(b"Content-Length:   129\r\n", b"")
    assert SipRequest.parse(raw).body.startswith(b"v=0")


def test_bare_lf_and_leading_crlf_tolerated() -> None:
    raw = (DATA / "bye.txt").read_bytes()
    assert parse_message(b"\r\n\r\n" + raw.replace(b"\r\n", b"\n")) == parse_message(raw)


MALFORMED = [
    (b"", "empty message"),
    (b"\r\n\r\n", "empty message"),
    (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", "no empty line"),
    (b"INVITE sip:a@b SIP/3.0\r\n\r\n", "unsupported SIP version"),
    (b"INVITE  sip:a@b SIP/2.0\r\n\r\n", "bad request line"),
    (b"IN(VITE sip:a@b SIP/2.0\r\n\r\n", "bad method"),
    (b"INVITE http://a SIP/2.0\r\n\r\n", "unsupported URI scheme"),
    (b"INVITE sip:a@b:99999 SIP/2.0\r\n\r\n", "bad port"),
    (b"INVITE sip:a@[::zz] SIP/2.0\r\n\r\n", "bad IPv6"),
    (b"INVITE sip:a@b_c SIP/2.0\r\n\r\n", "bad host"),
    (b"SIP/2.0 2000 OK\r\n\r\n", "bad status line"),
    (b"SIP/2.0 099 Low\r\n\r\n", "out of range"),
    (b"OPTIONS sip:a@b SIP/2.0\r\n folded first\r\n\r\n", "continuation line before any header"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nNoColonHere\r\n\r\n", "bad header line"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab", "conflicting Content-Length"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\xff\r\n\r\n", "not valid UTF-8"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n", "missing Via"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(SipParseError, match=message):
        parse_message(data)


def _with(header: str, value: str) -> bytes:
    raw = (DATA / "bye.txt").read_bytes().decode()
    lines = [ln for ln in raw.split("\r\n") if not ln.lower().startswith(header.lower() + ":")]
    lines.insert(1, f"{header}: {value}")
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("CSeq", "x BYE", "bad CSeq"),
        ("CSeq", "1 INVITE", "does not match request method"),
        ("CSeq", "99999999999 BYE", "bad CSeq|out of range"),
        ("Via", "SIP/2.0 host", "bad Via"),
        ("Via", "SIP/2.0/UDP h;rport=abc", "bad rport"),
        ("From", '"unterminated <sip:a@b>', "unterminated|missing angle"),
        ("From", "<sip:a@b", "missing angle brackets"),
        ("To", "<sip:a@b> junk", "junk after URI"),
        ("Call-ID", "has space", "bad Call-ID"),
        ("Max-Forwards", "many", "bad Max-Forwards"),
        ("Contact", "<sip:a@b>;=x", "bad parameter"),
    ],
)
def test_malformed_headers(header: str, value: str, message: str) -> None:
    with pytest.raises(SipParseError, match=message):
        parse_message(_with(header, value))


def test_salvage_allows_400() -> None:
    bad = _with("Max-Forwards", "many")
    req = salvage_request(bad)
    assert req is not None and req.method == "BYE"
    resp = response_to(req, 400, "Bad Request")
    assert parse_message(bytes(resp)) == resp
    assert salvage_request(b"garbage\r\n\r\n") is None
    assert salvage_request(_with("Via", "nonsense")) is None


def test_response_to_adds_tag_once() -> None:
    req = SipRequest.parse((DATA / "baresip_invite.txt").read_bytes())
    assert response_to(req, 100, "Trying", "t1").to.tag is None
    assert response_to(req, 180, "Ringing", "t1").to.tag == "t1"
    resp = response_to(req, 200, "OK", "t1")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.cseq == req.cseq


def test_via_parse_format() -> None:
    via = Via.parse("SIP / 2.0 / udp 1.2.3.4;branch=z9hG4bKx;rport=5070;received=5.6.7.8")
    assert (via.transport, via.rport, via.received, via.response_addr()) == ("UDP", 5070, "5.6.7.8", ("5.6.7.8", 5070))
    assert Via.parse(str(via)) == via


_VALID = [p.read_bytes() for p in SAMPLES]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255), st.sampled_from(["set", "del", "ins"])),
             min_size=1, max_size=6),
)  # fmt: skip
def test_fuzz_mutated_messages(base: bytes, edits: list[tuple[int, int, str]]) -> None:
    data = bytearray(base)
    for pos, byte, op in edits:
        i = pos % (len(data) + 1)
        if op == "ins" or i == len(data):
            data[i:i] = bytes([byte])
        elif op == "set":
            data[i] = byte
        else:
            del data[i]
    try:
        msg = parse_message(bytes(data))
    except SipParseError:
        return
    assert parse_message(bytes(msg)) == msg


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_header_values(text: str) -> None:
    for parser in (SipUri.parse, NameAddr.parse, Via.parse, CSeq.parse):
        with contextlib.suppress(SipParseError):
            parser(text)


def test_empty_supported_header_is_accepted() -> None:
    """baresip 1.0 sends ``Supported:`` with no value; RFC 3261 allows an empty list there."""
    from callroom.sip.message import parse_message

    msg = parse_message(
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:x@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nSupported:\r\nAllow:\r\nContent-Length: 0\r\n\r\n"
    )
    assert msg.headers.get("Supported") == ""
