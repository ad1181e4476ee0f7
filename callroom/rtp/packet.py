"""RTP packets (RFC 3550 §5) and sequence-number arithmetic. Pure: no sockets, no clocks.

RTCP (sender/receiver reports and the receive statistics that feed them) lives in ``rtcp.py``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from callroom.errors import RtpParseError

__all__ = [
    "RTP_HEADER_SIZE",
    "RtpPacket",
    "SequenceExtender",
    "is_rtcp",
    "seq_diff",
    "seq_gt",
    "seq_lt",
    "ts_diff",
]

RTP_HEADER_SIZE: Final = 12
_HEADER: Final = struct.Struct("!BBHII")
_EXT_HEADER: Final = struct.Struct("!HH")


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet.

    ``extension_profile`` is ``None`` when the X bit is clear; otherwise ``extension`` holds the
    extension body (a multiple of 4 bytes, without the 4-byte profile/length word).
    ``padding_size`` counts the padding octets including the final count octet; the padding
    is written as zeros followed by the count (RFC 3550 §5.1).
    """

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extension: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < RTP_HEADER_SIZE:
            raise RtpParseError(f"RTP packet too short: {len(data)} bytes, the fixed header needs 12")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        version = b0 >> 6
        if version != 2:
            raise RtpParseError(f"bad RTP version {version}, expected 2")
        has_padding = bool(b0 & 0x20)
        has_extension = bool(b0 & 0x10)
        cc = b0 & 0x0F
        pos = RTP_HEADER_SIZE
        end = len(data)

        if pos + 4 * cc > end:
            raise RtpParseError(f"CSRC list overruns the packet: {cc} CSRCs need {4 * cc} bytes, "
                                f"{end - pos} left")
        csrc = list(struct.unpack_from(f"!{cc}I", data, pos))
        pos += 4 * cc

        padding_size = 0
        if has_padding:
            padding_size = data[-1]
            if padding_size == 0:
                raise RtpParseError("bad RTP padding: P bit set but padding count is 0")

        extension_profile: int | None = None
        extension = b""
        if has_extension:
            if pos + 4 > end:
                raise RtpParseError("RTP header extension overruns the packet: no room for its header")
            extension_profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            if pos + 4 * words > end:
                raise RtpParseError(f"RTP header extension overruns the packet: {words} words need "
                                    f"{4 * words} bytes, {end - pos} left")
            extension = data[pos : pos + 4 * words]
            pos += 4 * words

        if padding_size > end - pos:
            raise RtpParseError(f"bad RTP padding: count {padding_size} exceeds the {end - pos} bytes "
                                "after the header")
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos : end - padding_size]),
            marker=bool(b1 & 0x80),
            csrc=csrc,
            extension_profile=extension_profile,
            extension=bytes(extension),
            padding_size=padding_size,
        )

    def __bytes__(self) -> bytes:
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRCs fit in an RTP header")
        if len(self.extension) % 4:
            raise ValueError("an RTP header extension body is a whole number of 32-bit words")
        if not 0 <= self.padding_size <= 255:
            raise ValueError("RTP padding is 0..255 octets")
        has_ext = self.extension_profile is not None
        b0 = 0x80 | (0x20 if self.padding_size else 0) | (0x10 if has_ext else 0) | len(self.csrc)
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [_HEADER.pack(b0, b1, self.sequence_number & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                              self.ssrc & 0xFFFFFFFF)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            parts.append(_EXT_HEADER.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes([self.padding_size]))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4 demultiplexing: RTCP packet types 192-223 sit where RTP has M+PT 64-95."""
    return len(data) >= 2 and 192 <= data[1] <= 223


# -- sequence numbers and timestamps ------------------------------------------------------------------


def seq_diff(a: int, b: int) -> int:
    """``a - b`` for 16-bit sequence numbers, as a signed distance in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_lt(a: int, b: int) -> bool:
    """``a`` comes before ``b`` modulo 2**16."""
    return seq_diff(a, b) < 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def ts_diff(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, as a signed distance."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


@dataclass(slots=True)
class SequenceExtender:
    """Turns 16-bit sequence numbers into a monotonic extended counter (cycles << 16 | seq).

    Late packets from before a wrap get the previous cycle, so reordering across 65535 -> 0 is
    handled. ``highest`` is the largest extended number seen so far.
    """

    highest: int | None = None

    def extend(self, seq: int) -> int:
        seq &= 0xFFFF
        if self.highest is None:
            self.highest = seq
            return seq
        ext = self.highest + seq_diff(seq, self.highest & 0xFFFF)
        if ext > self.highest:
            self.highest = ext
        return ext
