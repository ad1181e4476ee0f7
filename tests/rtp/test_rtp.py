from __future__ import annotations

from pathlib import Path

import pytest

from callroom.errors import RtpParseError
from callroom.rtp import g711
from callroom.rtp.packet import RtpPacket, SequenceExtender, is_rtcp, seq_diff, seq_gt, seq_lt, ts_diff
from callroom.rtp.rtcp import (
    RtcpOther,
    RtcpReceiverReport,
    RtcpReportBlock,
    RtcpSenderReport,
    RtpReceiveStats,
    ntp_middle32,
    ntp_timestamp,
    ntp_to_seconds,
    parse_compound,
    round_trip_seconds,
)

DATA = Path(__file__).parent / "data"


def load(name: str) -> bytes:
    text = (DATA / name).read_text()
    return bytes.fromhex("".join(line for line in text.splitlines() if not line.startswith("#")))


RTP_FILES = sorted(p.name for p in DATA.glob("rtp_*.hex"))
RTCP_FILES = sorted(p.name for p in DATA.glob("rtcp_*.hex"))


def test_data_files_present() -> None:
    assert len(RTP_FILES) >= 4 and len(RTCP_FILES) >= 2


@pytest.mark.parametrize("name", RTP_FILES)
def test_rtp_round_trip(name: str) -> None:
    data = load(name)
    assert not is_rtcp(data)
    assert bytes(RtpPacket.parse(data)) == data


@pytest.mark.parametrize("name", RTCP_FILES)
def test_rtcp_round_trip(name: str) -> None:
    data = load(name)
    assert is_rtcp(data)
    assert b"".join(bytes(p) for p in parse_compound(data)) == data


def test_pcmu_fields() -> None:
    p = RtpPacket.parse(load("rtp_pcmu_dmw.hex"))
    assert (p.payload_type, p.sequence_number, p.timestamp, p.ssrc) == (0, 0x1234, 123456, 0x1A2B3C4D)
    assert not p.marker and p.csrc == [] and p.extension_profile is None and p.padding_size == 0
    assert len(p.payload) == 160
    # the digital milliwatt: a 1 kHz sine at 0 dBm0, 8 samples per period, symmetric values
    samples = g711.ulaw_decode(p.payload)
    assert [int(v) for v in samples[:8]] == [-8828, -20860, -20860, -8828, 8828, 20860, 20860, 8828]
    assert (samples[8:] == samples[:-8]).all()


def test_marker_and_wrap_fields() -> None:
    p = RtpPacket.parse(load("rtp_pcma_marker.hex"))
    assert p.marker and p.payload_type == 8 and p.sequence_number == 0xFFFF
    assert p.timestamp == 0xFFFFFE00 and p.ssrc == 0xDEADBEEF


def test_csrc_extension_padding_fields() -> None:
    p = RtpPacket.parse(load("rtp_csrc_ext_padding.hex"))
    assert p.csrc == [0xAAAAAAAA, 0xBBBBBBBB]
    assert p.extension_profile == 0xBEDE and p.extension == bytes.fromhex("10aa0000")
    assert p.padding_size == 4 and len(p.payload) == 160


def test_build_from_fields() -> None:
    p = RtpPacket(payload_type=101, sequence_number=7, timestamp=16000, ssrc=0x11223344,
                  payload=bytes.fromhex("058a0320"))
    assert bytes(p) == load("rtp_telephone_event_end.hex")
    with pytest.raises(ValueError):
        bytes(RtpPacket(csrc=list(range(16))))
    with pytest.raises(ValueError):
        bytes(RtpPacket(extension_profile=0xBEDE, extension=b"\x01"))


HDR = bytes.fromhex("80000001" "00000000" "00000001")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (HDR[:11], "too short"),
        (bytes([0x40]) + HDR[1:], "bad RTP version 1"),
        (bytes([0x00]) + HDR[1:], "bad RTP version 0"),
        (bytes([0xA0]) + HDR[1:] + b"\x00\x00", "padding count is 0"),
        (bytes([0xA0]) + HDR[1:] + b"\x01\x05", "count 5 exceeds"),
        (bytes([0x90]) + HDR[1:] + b"\xbe\xde", "no room for its header"),
        (bytes([0x90]) + HDR[1:] + bytes.fromhex("bede0002") + bytes(4), "2 words need 8 bytes"),
        (bytes([0x83]) + HDR[1:] + bytes(8), "3 CSRCs need 12 bytes"),
    ],
)
def test_rtp_malformed(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError, match=message):
        RtpPacket.parse(data)


def test_padding_covering_whole_payload_is_allowed() -> None:
    data = bytes([0xA0]) + HDR[1:] + b"\x00\x00\x00\x04"
    p = RtpPacket.parse(data)
    assert p.payload == b"" and p.padding_size == 4 and bytes(p) == data


def test_seq_helpers() -> None:
    assert seq_diff(1, 65535) == 2 and seq_diff(65535, 1) == -2
    assert seq_lt(65535, 0) and seq_gt(0, 65535) and not seq_lt(5, 5)
    assert seq_diff(32767, 0) == 32767 and seq_diff(32768, 0) == -32768
    assert ts_diff(10, 0xFFFFFFF0) == 26 and ts_diff(0xFFFFFFF0, 10) == -26


def test_sequence_extender_across_wrap_and_reorder() -> None:
    ext = SequenceExtender()
    got = [ext.extend(s) for s in (65533, 65534, 0, 65535, 1, 2, 65532)]
    assert got == [65533, 65534, 65536, 65535, 65537, 65538, 65532]
    assert ext.highest == 65538
    # a second wrap
    for s in range(3, 65536, 1000):
        ext.extend(s)
    assert ext.extend(5) == 2 * 65536 + 5


# -- RTCP ---------------------------------------------------------------------------------------------


def test_sr_fields() -> None:
    sr, sdes = parse_compound(load("rtcp_sr_sdes.hex"))
    assert isinstance(sr, RtcpSenderReport) and isinstance(sdes, RtcpOther)
    assert sr.ssrc == 0x1A2B3C4D and sr.rtp_timestamp == 123456
    assert sr.packet_count == 50 and sr.octet_count == 8000
    assert ntp_middle32(sr.ntp_timestamp) == 0xB5C08000
    (block,) = sr.reports
    assert block == RtcpReportBlock(0xDEADBEEF, 0x19, 3, 0x11234, 0x12, 0xB5C08000, 0x10000)
    assert sdes.packet_type == 202 and sdes.count == 1 and b"alice@host" in sdes.body


def test_rr_negative_loss_and_bye_padding() -> None:
    rr, bye = parse_compound(load("rtcp_rr_bye_padded.hex"))
    assert isinstance(rr, RtcpReceiverReport) and isinstance(bye, RtcpOther)
    assert rr.reports[0].packets_lost == -1 and rr.reports[0].highest_sequence == 0xFFFF
    assert bye.packet_type == 203 and bye.padding_size == 4 and bye.body == bytes.fromhex("11223344")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes.fromhex("81c9"), "trailing"),
        (bytes.fromhex("81c90001" "11223344"), "too short for its SSRC and 1 report"),
        (bytes.fromhex("41c90001" "11223344"), "bad RTCP version"),
        (bytes.fromhex("80c90009" "11223344"), "overruns"),
        (bytes.fromhex("a0cb0001" "00000000"), "padding"),
        (b"", "empty"),
    ],
)
def test_rtcp_malformed(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError, match=message):
        parse_compound(data)


def test_ntp_helpers() -> None:
    t = 1_700_000_000.25
    ntp = ntp_timestamp(t)
    assert ntp >> 32 == 1_700_000_000 + 2_208_988_800 and ntp & 0xFFFFFFFF == 1 << 30
    assert abs(ntp_to_seconds(ntp) - t) < 1e-6


def _pkt(seq: int, ts: int, ssrc: int = 1) -> RtpPacket:
    return RtpPacket(sequence_number=seq & 0xFFFF, timestamp=ts & 0xFFFFFFFF, ssrc=ssrc, payload=b"x")


def test_receive_stats_loss_and_fraction() -> None:
    stats = RtpReceiveStats()
    # 100 packets starting just below the wrap, 10 lost (every 10th), perfect timing -> zero jitter
    for i in range(100):
        if i % 10 == 5:
            continue
        stats.update(_pkt(65500 + i, 1000 + 160 * i), arrival=50_000 + 160 * i)
    block = stats.report_block()
    assert block.packets_lost == 10
    assert block.fraction_lost == (10 << 8) // 100  # 25
    assert block.highest_sequence == 65500 + 99  # extended: 1 cycle + 63
    assert block.jitter == 0
    # next interval: 50 packets, none lost, one duplicate -> fraction 0, cumulative shrinks by one
    for i in range(100, 150):
        stats.update(_pkt(65500 + i, 1000 + 160 * i), arrival=50_000 + 160 * i)
    stats.update(_pkt(65500 + 149, 1000 + 160 * 149), arrival=50_000 + 160 * 150)
    block = stats.report_block()
    assert block.fraction_lost == 0 and block.packets_lost == 9


def test_receive_stats_jitter_converges() -> None:
    stats = RtpReceiveStats()
    # arrivals alternate early/late by 40 timestamp units: |D| = 80 every packet -> J -> 80
    for i in range(400):
        stats.update(_pkt(i, 160 * i), arrival=10_000 + 160 * i + (40 if i % 2 else -40))
    assert 78 <= stats.report_block().jitter <= 80


def test_receive_stats_restart_needs_two_sequential_packets() -> None:
    stats = RtpReceiveStats()
    for i in range(10):
        stats.update(_pkt(i, 160 * i), arrival=160 * i)
    assert not stats.update(_pkt(40000, 0), arrival=2000)  # wild jump: not counted yet
    assert stats.received == 10
    assert stats.update(_pkt(40001, 160), arrival=2160)  # confirmed: the source restarted
    assert stats.base_seq == 40001 and stats.expected == 1 and stats.cumulative_lost == 0


def test_report_block_lsr_dlsr_and_rtt() -> None:
    stats = RtpReceiveStats()
    stats.update(_pkt(1, 0), arrival=0)
    sr = RtcpSenderReport(ssrc=1, ntp_timestamp=ntp_timestamp(1000.0))
    stats.record_sender_report(sr, arrival_unix_seconds=1000.1)
    block = stats.report_block(now_unix_seconds=1000.6)
    assert block.lsr == ntp_middle32(sr.ntp_timestamp)
    assert abs(block.dlsr / 65536 - 0.5) < 1e-4
    # the sender receives the block at 1000.7: RTT = 0.7 - 0.5 = 0.2 s (0.1 each way)
    rtt = round_trip_seconds(block, 1000.7)
    assert rtt is not None and abs(rtt - 0.2) < 1e-3
    assert round_trip_seconds(RtcpReportBlock(ssrc=1), 5.0) is None
