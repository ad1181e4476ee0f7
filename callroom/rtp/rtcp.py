"""RTCP sender and receiver reports (RFC 3550 §6.4) and the receive statistics behind them.

``RtpReceiveStats`` follows RFC 3550 appendix A.1 (sequence validation), A.3 (expected and lost
packets) and A.8 (interarrival jitter). It is fed ``(packet, arrival)`` where ``arrival`` is the local
receive time already expressed in RTP timestamp units; wall-clock seconds, where needed for LSR/DLSR,
are passed in as well. Nothing here reads a clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from callroom.errors import RtpParseError
from callroom.rtp.packet import RtpPacket

__all__ = [
    "NTP_EPOCH_OFFSET",
    "RTCP_RR",
    "RTCP_SR",
    "RtcpOther",
    "RtcpPacket",
    "RtcpReceiverReport",
    "RtcpReportBlock",
    "RtcpSenderReport",
    "RtpReceiveStats",
    "ntp_middle32",
    "ntp_timestamp",
    "ntp_to_seconds",
    "parse_compound",
    "round_trip_seconds",
]

RTCP_SR: Final = 200
RTCP_RR: Final = 201
NTP_EPOCH_OFFSET: Final = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

_HEADER: Final = struct.Struct("!BBH")
_SR_INFO: Final = struct.Struct("!IIIIII")  # ssrc, ntp msw, ntp lsw, rtp ts, packets, octets
_BLOCK: Final = struct.Struct("!IIIIII")  # ssrc, fraction<<24|lost, ext seq, jitter, lsr, dlsr
_BLOCK_SIZE: Final = 24


def ntp_timestamp(unix_seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for a Unix time."""
    return round((unix_seconds + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_to_seconds(ntp: int) -> float:
    return ntp / (1 << 32) - NTP_EPOCH_OFFSET


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits used by LSR (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(slots=True)
class RtcpReportBlock:
    ssrc: int
    fraction_lost: int = 0  # fixed point, lost/expected * 256 since the previous report
    packets_lost: int = 0  # cumulative, signed 24 bits (duplicates can make it negative)
    highest_sequence: int = 0  # extended highest sequence number received
    jitter: int = 0  # interarrival jitter, timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    dlsr: int = 0  # delay since that SR, 1/65536 s

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> RtcpReportBlock:
        ssrc, lost_word, ext, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, ext, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)) & 0xFFFFFF
        return _BLOCK.pack(self.ssrc, (self.fraction_lost & 0xFF) << 24 | lost, self.highest_sequence,
                           self.jitter, self.lsr, self.dlsr)


def _header(packet_type: int, count: int, body_len: int, padding_size: int) -> bytes:
    total = 4 + body_len + padding_size
    if total % 4:
        raise ValueError(f"RTCP packet length {total} is not a multiple of 4")
    if not 0 <= count <= 31:
        raise ValueError("at most 31 report blocks or items fit in one RTCP packet")
    b0 = 0x80 | (0x20 if padding_size else 0) | count
    return _HEADER.pack(b0, packet_type, total // 4 - 1)


def _padding(size: int) -> bytes:
    return bytes(size - 1) + bytes([size]) if size else b""


@dataclass(slots=True)
class RtcpSenderReport:
    ssrc: int
    ntp_timestamp: int = 0
    rtp_timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0
    reports: list[RtcpReportBlock] = field(default_factory=list)
    extension: bytes = b""  # profile-specific extension after the report blocks
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtcpSenderReport:
        count, body, padding = _split(data, RTCP_SR)
        if len(body) < _SR_INFO.size + count * _BLOCK_SIZE:
            raise RtpParseError(f"RTCP SR too short for its sender info and {count} report blocks")
        ssrc, msw, lsw, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        pos = _SR_INFO.size
        reports = [RtcpReportBlock.parse(body, pos + i * _BLOCK_SIZE) for i in range(count)]
        pos += count * _BLOCK_SIZE
        return cls(ssrc, msw << 32 | lsw, rtp_ts, packets, octets, reports, bytes(body[pos:]), padding)

    def __bytes__(self) -> bytes:
        body = b"".join(
            [_SR_INFO.pack(self.ssrc, self.ntp_timestamp >> 32, self.ntp_timestamp & 0xFFFFFFFF,
                           self.rtp_timestamp, self.packet_count, self.octet_count)]
            + [bytes(r) for r in self.reports]
            + [self.extension]
        )
        return _header(RTCP_SR, len(self.reports), len(body), self.padding_size) + body + _padding(
            self.padding_size)


@dataclass(slots=True)
class RtcpReceiverReport:
    ssrc: int
    reports: list[RtcpReportBlock] = field(default_factory=list)
    extension: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtcpReceiverReport:
        count, body, padding = _split(data, RTCP_RR)
        if len(body) < 4 + count * _BLOCK_SIZE:
            raise RtpParseError(f"RTCP RR too short for its SSRC and {count} report blocks")
        (ssrc,) = struct.unpack_from("!I", body)
        reports = [RtcpReportBlock.parse(body, 4 + i * _BLOCK_SIZE) for i in range(count)]
        return cls(ssrc, reports, bytes(body[4 + count * _BLOCK_SIZE :]), padding)

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(bytes(r) for r in self.reports) + self.extension
        return _header(RTCP_RR, len(self.reports), len(body), self.padding_size) + body + _padding(
            self.padding_size)


@dataclass(slots=True)
class RtcpOther:
    """Any other RTCP packet (SDES, BYE, APP, feedback), kept opaque so compounds round-trip."""

    packet_type: int
    count: int  # the 5-bit RC/SC/FMT field
    body: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtcpOther:
        count, body, padding = _split(data, None)
        return cls(data[1], count, bytes(body), padding)

    def __bytes__(self) -> bytes:
        return _header(self.packet_type, self.count, len(self.body), self.padding_size) + self.body + (
            _padding(self.padding_size))


RtcpPacket = RtcpSenderReport | RtcpReceiverReport | RtcpOther


def _split(data: bytes, expected_type: int | None) -> tuple[int, bytes, int]:
    """Validate one RTCP packet (exactly ``data``); return (count field, body, padding size)."""
    if len(data) < 4:
        raise RtpParseError(f"RTCP packet too short: {len(data)} bytes")
    b0, pt, words = _HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpParseError(f"bad RTCP version {b0 >> 6}, expected 2")
    if expected_type is not None and pt != expected_type:
        raise RtpParseError(f"RTCP packet type {pt}, expected {expected_type}")
    if 4 * (words + 1) != len(data):
        raise RtpParseError(f"RTCP length field says {4 * (words + 1)} bytes, packet has {len(data)}")
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or padding > len(data) - 4:
            raise RtpParseError(f"bad RTCP padding count {padding}")
    return b0 & 0x1F, data[4 : len(data) - padding], padding


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Split a compound RTCP datagram into its packets; ``b"".join(map(bytes, result)) == data``."""
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtpParseError(f"RTCP compound has {len(data) - pos} trailing bytes")
        (words,) = struct.unpack_from("!H", data, pos + 2)
        end = pos + 4 * (words + 1)
        if end > len(data):
            raise RtpParseError(f"RTCP packet at offset {pos} overruns the datagram")
        chunk = data[pos:end]
        pt = chunk[1]
        if pt == RTCP_SR:
            packets.append(RtcpSenderReport.parse(chunk))
        elif pt == RTCP_RR:
            packets.append(RtcpReceiverReport.parse(chunk))
        else:
            packets.append(RtcpOther.parse(chunk))
        pos = end
    if not packets:
        raise RtpParseError("empty RTCP datagram")
    return packets


def round_trip_seconds(block: RtcpReportBlock, arrival_unix_seconds: float) -> float | None:
    """RTT seen by a sender from a report block about its stream (RFC 3550 §6.4.1), or None."""
    if block.lsr == 0:
        return None
    arrival = ntp_middle32(ntp_timestamp(arrival_unix_seconds))
    rtt = (arrival - block.lsr - block.dlsr) & 0xFFFFFFFF
    return rtt / 65536.0 if rtt < 0x80000000 else 0.0


# -- receive statistics ------------------------------------------------------------------------------

MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100


@dataclass(slots=True)
class RtpReceiveStats:
    """Per-source receive statistics (RFC 3550 appendix A). Update with every packet received."""

    ssrc: int | None = None
    base_seq: int = 0
    max_seq: int = 0
    cycles: int = 0
    bad_seq: int = 0x10001
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0
    _transit: int | None = None
    _last_sr: int = 0
    _last_sr_arrival: float = 0.0

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = 0x10001
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0

    def update(self, packet: RtpPacket, arrival: int) -> bool:
        """Account for ``packet`` received at ``arrival`` (timestamp units).

        Returns False when the packet is judged invalid by A.1 (a large sequence jump that is not yet
        confirmed by a second packet); such a packet is not counted.
        """
        return self.receive(packet.sequence_number, packet.ssrc, packet.timestamp, arrival)

    def receive(self, seq: int, ssrc: int, timestamp: int, arrival: int) -> bool:
        """``update`` from the header fields (the receive fast path does not build an ``RtpPacket``)."""
        if self.ssrc is None or ssrc != self.ssrc:
            self.ssrc = ssrc
            self._init_seq(seq)
            self._transit = None
            self.jitter = 0.0
        elif self.received:
            udelta = (seq - self.max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += 0x10000
                self.max_seq = seq
            elif udelta <= 0x10000 - MAX_MISORDER:
                if seq != self.bad_seq:
                    self.bad_seq = (seq + 1) & 0xFFFF
                    return False
                self._init_seq(seq)  # the source restarted: two sequential packets confirm it
                self._transit = None
            # else: duplicate or reordered packet, counted but does not move max_seq
        self.received += 1

        transit = arrival - timestamp
        last = self._transit
        if last is not None:
            d = abs((((transit - last) + 0x80000000) & 0xFFFFFFFF) - 0x80000000)  # ts_diff of the two, inlined
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit
        return True

    def steady(self) -> tuple[int, int, int, int, int, float] | None:
        """(ssrc, max_seq, cycles, received, last transit, jitter) once a stream flows, for running the usual
        packet elsewhere (``RtpLanes``); None before."""
        if self.ssrc is None or not self.received or self._transit is None:
            return None
        return self.ssrc, self.max_seq, self.cycles, self.received, self._transit, self.jitter

    def resume(self, max_seq: int, cycles: int, received: int, transit: int, jitter: float) -> None:
        """Take back the figures ``steady`` gave, after in-sequence packets of the same source."""
        self.max_seq, self.cycles, self.received, self._transit, self.jitter = (
            max_seq, cycles, received, transit, jitter)

    def record_sender_report(self, report: RtcpSenderReport, arrival_unix_seconds: float) -> None:
        """Remember the last SR from this source, for LSR/DLSR in our next report block."""
        self._last_sr = ntp_middle32(report.ntp_timestamp)
        self._last_sr_arrival = arrival_unix_seconds

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self.received else 0

    @property
    def cumulative_lost(self) -> int:
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    def report_block(self, now_unix_seconds: float = 0.0) -> RtcpReportBlock:
        """Build the report block for this source and start a new reporting interval."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval == 0 or lost_interval <= 0 else (lost_interval << 8) // (
            expected_interval)
        dlsr = 0
        if self._last_sr:
            dlsr = max(0, int((now_unix_seconds - self._last_sr_arrival) * 65536)) & 0xFFFFFFFF
        return RtcpReportBlock(
            ssrc=self.ssrc or 0,
            fraction_lost=min(fraction, 255),
            packets_lost=self.cumulative_lost,
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self._last_sr,
            dlsr=dlsr,
        )

