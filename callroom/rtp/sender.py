"""The stream an RTP leg sends: sequence numbers, timestamps, the marker bit, the counts a sender report
gives, and the DTMF that replaces the audio while digits are sent. Sans-I/O: it builds packets, the leg
sends them.
"""

from __future__ import annotations

import random
import struct
from typing import Final

import numpy as np
from numpy.typing import NDArray

from callroom.audio.pcm import FRAME_SAMPLES, Frame
from callroom.rtp.leg_dtmf import DtmfOut
from callroom.rtp.packet import RtpPacket

__all__ = ["RtpSender"]

_HEADER: Final = struct.Struct("!BBHII")
_F: Final = FRAME_SAMPLES
_PACKET: Final = 12 + FRAME_SAMPLES


class RtpSender:
    """One packet per 20 ms period: ``packet`` (or ``header_into`` for a payload already encoded)."""

    def __init__(self, ssrc: int, rng: random.Random) -> None:
        self.ssrc = ssrc
        self.seq = rng.getrandbits(16)
        self.ts = rng.getrandbits(32)
        self.marker = True  # on the first packet, and the first after a pause in sending
        self.packets = 0
        self.bytes = 0
        self.octets = 0  # payload octets, for the SR
        self.dtmf = DtmfOut(ssrc)

    def packet(self, frame: Frame, pt: int, encode_table: NDArray[np.uint8], sending: bool) -> bytes | None:
        """This period's packet: ``frame`` encoded, or what DTMF puts in its place. None when not
        ``sending`` (on hold, no peer): the period passes all the same."""
        ts = self.ts
        self.ts = (ts + _F) & 0xFFFFFFFF
        dtmf = self.dtmf
        dtmf.tick(ts)
        if not sending:
            dtmf.skip()
            self.marker = True
            return None
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        instead = dtmf.take()
        if isinstance(instead, RtpPacket):
            instead.sequence_number = seq
            data = bytes(instead)
            payload_len = len(instead.payload)
        else:
            if instead is not None:
                frame = instead
            payload = encode_table[frame.view(np.uint16)].tobytes()
            data = _HEADER.pack(0x80, (0x80 if self.marker else 0) | pt, seq, ts, self.ssrc) + payload
            payload_len = len(payload)
            self.marker = False
        self.packets += 1
        self.bytes += len(data)
        self.octets += payload_len
        return data

    def header_into(self, buf: bytearray, offset: int, pt: int) -> None:
        """``packet`` for a plain 20 ms payload already in ``buf[offset + 12 : offset + 172]`` (no DTMF to
        send: ``dtmf.busy`` is false): writes the header in front of it."""
        ts, seq = self.ts, self.seq
        self.ts = (ts + _F) & 0xFFFFFFFF
        self.seq = (seq + 1) & 0xFFFF
        _HEADER.pack_into(buf, offset, 0x80, (0x80 if self.marker else 0) | pt, seq, ts, self.ssrc)
        self.marker = False
        self.packets += 1
        self.bytes += _PACKET
        self.octets += _F

    def sent(self) -> tuple[int, int, int]:
        """What a sender report tells: packets, payload octets, the RTP timestamp of the latest packet."""
        return self.packets, self.octets, self.ts
