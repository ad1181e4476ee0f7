"""Framing SIP on a stream: messages split anywhere or run together come out whole; keep-alives are
answered; a stream past the limits, or without a usable Content-Length, is given up."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callroom.sip.message import parse_message
from callroom.sip.stream import StreamError, StreamFramer

DATA = Path(__file__).parent / "data"
MESSAGES = [(DATA / name).read_bytes() for name in ("sipp_uac_invite.txt", "response_486.txt", "bye.txt")]


def test_the_captured_messages_have_content_lengths() -> None:
    for message in MESSAGES:
        assert StreamFramer().feed(message) == [message]
        parse_message(message)


@given(st.lists(st.integers(min_value=1, max_value=2000), max_size=30))
def test_split_anywhere_and_run_together(cuts: list[int]) -> None:
    stream = b"\r\n\r\n".join(MESSAGES) + b"\r\n"  # pings between them, a lone CRLF at the end
    framer, out, pos = StreamFramer(), [], 0
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        out += framer.feed(stream[pos:cut])
        pos = cut
    assert out == MESSAGES and framer.pongs_due == 2


def test_a_message_without_content_length_is_refused() -> None:
    with pytest.raises(StreamError, match="Content-Length"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n")
    with pytest.raises(StreamError, match="more than one"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\nl: 5\r\n\r\n")


def test_the_limits_of_a_datagram_hold() -> None:
    with pytest.raises(StreamError, match="no end"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 20_000)
    with pytest.raises(StreamError, match="header lines"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: 1\r\n" * 200)
    with pytest.raises(StreamError, match="bytes"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 999999\r\n\r\n")
    framer = StreamFramer()
    assert framer.feed(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\n12345") == []
    assert framer.buffered > 0  # waits for the rest of the body
