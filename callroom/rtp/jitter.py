"""A small adaptive jitter buffer and packet-loss concealment. Sans-I/O: times are passed in.

Times are in RTP timestamp units of the local clock (8,000 per second for G.711): the caller converts
its monotonic clock once. ``put(packet, arrival_ts)`` on every packet, ``get(playout_ts)`` once per
frame period. A packet with RTP timestamp ``t`` is played at local time ``t + offset``; ``offset`` is
set from the first packet's transit time plus the target delay, and re-based at each talkspurt start
(marker bit on an empty buffer). The target delay follows an RFC 3550 interarrival-jitter estimate,
and grows by one frame whenever a packet arrives too late to be played.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from callroom.rtp.packet import RtpPacket, ts_diff

__all__ = ["LOST", "JitterBuffer", "JitterStats", "LossConcealer", "Lost", "PutResult", "Reframer"]


class Lost(enum.Enum):
    """A frame was due but never arrived (conceal it)."""

    LOST = "lost"


LOST: Final = Lost.LOST


class PutResult(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # already buffered (or already played and still remembered): dropped
    LATE = "late"  # its playout time has passed: dropped
    RESYNC = "resync"  # a jump of 2 x capacity frames or more: the buffer restarted on this packet
    OVERFLOW = "overflow"  # accepted, but the buffer was full and dropped its oldest frame


_ACCEPTED: Final = PutResult.ACCEPTED  # a module global: reading an Enum member off its class is slow


@dataclass(slots=True)
class JitterStats:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    resyncs: int = 0
    overflows: int = 0
    played: int = 0
    lost: int = 0


class JitterBuffer:
    def __init__(self, frame_samples: int = 160, min_delay_frames: int = 2, max_delay_frames: int = 10,
                 capacity: int = 50) -> None:
        if not 1 <= min_delay_frames <= max_delay_frames < capacity:
            raise ValueError("need 1 <= min_delay_frames <= max_delay_frames < capacity")
        self.frame = frame_samples
        self.min_delay = min_delay_frames * frame_samples
        self.max_delay = max_delay_frames * frame_samples
        self.capacity = capacity
        self.stats = JitterStats()
        self.jitter = 0.0  # RFC 3550 interarrival jitter estimate, timestamp units
        self._extra = 0  # delay added after late packets, timestamp units
        self._frames: dict[int, bytes] = {}  # extended timestamp -> payload
        self._last_ext: int | None = None
        self._last_transit: int | None = None
        self._offset = 0
        self._next: int | None = None  # extended timestamp of the next frame to play
        self._played: deque[int] = deque(maxlen=capacity)  # recently played timestamps, oldest first

    @property
    def target_delay(self) -> int:
        """Delay between arrival and playout the buffer aims for, in timestamp units (whole frames)."""
        frames = -(-int(3 * self.jitter) // self.frame)
        return min(self.max_delay, max(self.min_delay, frames * self.frame) + self._extra)

    @property
    def depth(self) -> int:
        """Buffered frames."""
        return len(self._frames)

    def _restart(self, ext: int, transit: int) -> None:
        self._frames.clear()
        self._offset = transit + self.target_delay
        self._next = ext

    def put(self, packet: RtpPacket, arrival_ts: int) -> PutResult:
        return self.put_payload(packet.timestamp, packet.marker, packet.payload, arrival_ts)

    def put_payload(self, timestamp: int, marker: bool, payload: bytes, arrival_ts: int) -> PutResult:
        """``put`` from the header fields (the receive fast path does not build an ``RtpPacket``)."""
        last = self._last_ext
        if last is None:
            ext = self._last_ext = timestamp
        else:
            ext = last + (((timestamp - last + 0x80000000) & 0xFFFFFFFF) - 0x80000000)  # ts_diff, inlined
            if ext > last:
                self._last_ext = ext
        transit = arrival_ts - ext
        last_transit = self._last_transit
        if last_transit is not None:
            self.jitter += (abs(transit - last_transit) - self.jitter) / 16.0
        self._last_transit = transit

        frames = self._frames
        nxt = self._next
        if (nxt is not None and not marker and nxt <= ext < nxt + 2 * self.capacity * self.frame
                and ext not in frames and len(frames) < self.capacity):
            frames[ext] = payload  # the usual packet: in the window, new, room for it
            self.stats.accepted += 1
            return _ACCEPTED
        if nxt is None:
            self._restart(ext, transit)
        elif abs(ext - nxt) >= 2 * self.capacity * self.frame:
            self._restart(ext, transit)
            self.stats.resyncs += 1
            frames[ext] = payload
            return PutResult.RESYNC
        elif marker and not frames and ext > nxt:
            self._restart(ext, transit)  # talkspurt start: re-base the delay on the current jitter
        nxt = self._next
        assert nxt is not None
        if ext < nxt:
            if ext in self._played:
                self.stats.duplicates += 1
                return PutResult.DUPLICATE
            self.stats.late += 1
            if self.target_delay < self.max_delay:  # play one frame later from now on
                self._extra += self.frame
                self._offset += self.frame
            return PutResult.LATE
        if ext in frames:
            self.stats.duplicates += 1
            return PutResult.DUPLICATE
        result = PutResult.ACCEPTED
        if len(frames) >= self.capacity:
            del frames[min(frames)]
            self.stats.overflows += 1
            result = PutResult.OVERFLOW
        frames[ext] = payload
        self.stats.accepted += 1
        return result

    def steady(self) -> tuple[int, int, int, int, float, dict[int, bytes]] | None:
        """The state of a playing buffer, for running its usual case elsewhere (``RtpLanes``): (highest
        extended timestamp, last transit, next timestamp to play, offset, jitter, frames); None until the
        buffer has started."""
        if self._next is None or self._last_ext is None or self._last_transit is None:
            return None
        return self._last_ext, self._last_transit, self._next, self._offset, self.jitter, self._frames

    def resume(self, last_ext: int, last_transit: int, nxt: int, jitter: float, frames: dict[int, bytes],
               accepted: int, played_from: int) -> None:  # fmt: skip
        """Take back the state ``steady`` gave, after ``accepted`` packets were put (each in order, new, in
        the window: now in ``frames``) and every frame from ``played_from`` up to ``nxt`` was played."""
        self._last_ext, self._last_transit, self._next, self.jitter, self._frames = (
            last_ext, last_transit, nxt, jitter, frames)
        self.stats.accepted += accepted
        self.stats.played += (nxt - played_from) // self.frame
        self._played.extend(range(max(played_from, nxt - self.capacity * self.frame), nxt, self.frame))

    def get(self, playout_ts: int) -> bytes | Lost | None:
        """The payload to play now, ``LOST`` if it is missing, or None before anything is due."""
        ext = self._next
        if ext is None or playout_ts - self._offset < ext:
            return None
        self._next = ext + self.frame
        payload = self._frames.pop(ext, None)
        if payload is None:
            self.stats.lost += 1  # also counts silence (DTX) periods, where nothing was sent
            return LOST
        self._played.append(ext)  # the oldest falls out beyond ``capacity``
        self.stats.played += 1
        return payload

    def get_catching_up(self, playout_ts: int, behind: int) -> bytes | Lost | None:
        """``get(playout_ts)``; and when the frame after it is already more than ``behind`` overdue, that
        one instead (the late one is skipped: after a stall, playout catches up rather than staying late)."""
        got = self.get(playout_ts)
        if got is None:
            return None
        nxt = self._next
        assert nxt is not None
        if playout_ts - behind - self._offset < nxt:
            return got  # the usual case: the next frame is not due yet
        later = self.get(playout_ts - behind)
        return got if later is None else later


class LossConcealer:
    """Fills lost frames: repeats the last good frame with decaying gain, then silence."""

    def __init__(self, frame_samples: int = 160, decay: float = 0.5, max_repeats: int = 3) -> None:
        self.frame_samples = frame_samples
        self.decay = decay
        self.max_repeats = max_repeats
        self._last: NDArray[np.int16] | None = None
        self._repeats = 0

    def next(self, frame: NDArray[np.int16] | None) -> NDArray[np.int16]:
        """Pass a received frame through, or (``None``) produce a concealment frame."""
        if frame is not None:
            self._last, self._repeats = frame, 0
            return frame
        self._repeats += 1
        if self._last is None or self._repeats > self.max_repeats:
            return np.zeros(self.frame_samples, dtype=np.int16)
        gain = self.decay**self._repeats
        # fade linearly across the frame from the previous gain to this one, avoiding a step
        ramp = np.linspace(gain / self.decay, gain, self.frame_samples, endpoint=False)
        return np.rint(self._last.astype(np.float64) * ramp).astype(np.int16)


class Reframer:
    """Cuts packets of another ptime (10, 30, 40 ms ...) into frames on a fixed timestamp grid, joining the
    pieces that straddle two packets; a frame missing a piece is left for concealment."""

    def __init__(self, frame_samples: int = 160) -> None:
        self.frame = frame_samples
        self._grid: int | None = None
        self._partial: dict[int, tuple[bytearray, int]] = {}  # frame start -> its bytes so far, how many

    def cut(self, packet: RtpPacket) -> list[RtpPacket]:
        f = self.frame
        ts, payload = packet.timestamp, packet.payload
        if self._grid is None or abs(ts_diff(ts, self._grid)) > 1 << 24:
            self._grid = ts
            self._partial.clear()
        offset = ts_diff(ts, self._grid) % f
        start = (ts - offset) & 0xFFFFFFFF
        out: list[RtpPacket] = []
        pos = 0
        while pos < len(payload):
            take = min(f - offset, len(payload) - pos)
            buf, filled = self._partial.pop(start, (bytearray(f), 0))
            buf[offset : offset + take] = payload[pos : pos + take]
            if filled + take >= f:
                out.append(RtpPacket(packet.payload_type, packet.sequence_number, start, packet.ssrc, bytes(buf),
                                     marker=packet.marker and not out))
            else:
                self._partial[start] = (buf, filled + take)
            pos += take
            offset = 0
            start = (start + f) & 0xFFFFFFFF
        while len(self._partial) > 8:
            del self._partial[next(iter(self._partial))]
        return out
