"""SRTP/SRTCP through libsrtp: what one side protects the other unprotects, and nothing else gets through."""

from __future__ import annotations

import pytest

from callroom.rtp.packet import RtpPacket
from callroom.rtp.rtcp import RtcpReceiverReport
from callroom.rtp.srtp import PROFILES, SrtpContext
from callroom.sip.sdes import SUITES, new_key


def _pair(suite: str) -> tuple[SrtpContext, SrtpContext]:
    a_key, b_key = new_key(), new_key()
    return SrtpContext(suite, a_key, b_key), SrtpContext(suite, b_key, a_key)


def _rtp(seq: int) -> bytes:
    return bytes(RtpPacket(payload_type=0, sequence_number=seq, timestamp=160 * seq, ssrc=0x1234,
                           payload=bytes(range(160))))  # fmt: skip


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_protected_packets_come_back_whole(suite: str) -> None:
    a, b = _pair(suite)
    for seq in range(1, 50):
        plain = _rtp(seq)
        wire = a.protect(plain)
        assert len(wire) == len(plain) + SUITES[suite]  # the authentication tag
        assert wire[:12] == plain[:12] and wire[12:172] != plain[12:]  # header in clear, payload encrypted
        assert b.unprotect(wire) == plain
    report = bytes(RtcpReceiverReport(ssrc=0x1234, reports=[]))
    wire = b.protect_rtcp(report)
    assert wire != report and a.unprotect_rtcp(wire) == report
    assert set(PROFILES) == set(SUITES)


def test_tampered_replayed_and_plain_packets_are_refused() -> None:
    a, b = _pair("AES_CM_128_HMAC_SHA1_80")
    wire = a.protect(_rtp(7))
    assert b.unprotect(wire) is not None
    assert b.unprotect(wire) is None  # a replay
    flipped = bytearray(a.protect(_rtp(8)))
    flipped[40] ^= 1
    assert b.unprotect(bytes(flipped)) is None
    assert b.unprotect(_rtp(9)) is None  # plain RTP
    assert a.unprotect(a.protect(_rtp(10))) is None  # our own key is not theirs
    assert b.unprotect_rtcp(b"\x80\xc9\x00\x01\x00\x00\x12\x34") is None
