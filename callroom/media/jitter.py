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
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from callroom.media.rtp import RtpPacket, ts_diff

__all__ = ["LOST", "JitterBuffer", "JitterStats", "LossConcealer", "Lost", "PutResult"]


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
        self._played: dict[int, None] = {}  # recently played timestamps, oldest first

    @property
    def target_delay(self) -> int:
        """Delay between arrival and playout the buffer aims for, in timestamp units (whole frames)."""
        frames = -(-int(3 * self.jitter) // self.frame)
        return min(self.max_delay, max(self.min_delay, frames * self.frame) + self._extra)

    @property
    def depth(self) -> int:
        """Buffered frames."""
        return len(self._frames)

    def _extend(self, ts: int) -> int:
        ext = ts if self._last_ext is None else self._last_ext + ts_diff(ts, self._last_ext & 0xFFFFFFFF)
        if self._last_ext is None or ext > self._last_ext:
            self._last_ext = ext
        return ext

    def _restart(self, ext: int, transit: int) -> None:
        self._frames.clear()
        self._offset = transit + self.target_delay
        self._next = ext

    def put(self, packet: RtpPacket, arrival_ts: int) -> PutResult:
        ext = self._extend(packet.timestamp)
        transit = arrival_ts - ext
        if self._last_transit is not None:
            self.jitter += (abs(transit - self._last_transit) - self.jitter) / 16.0
        self._last_transit = transit

        if self._next is None:
            self._restart(ext, transit)
        elif abs(ext - self._next) >= 2 * self.capacity * self.frame:
            self._restart(ext, transit)
            self.stats.resyncs += 1
            self._frames[ext] = packet.payload
            return PutResult.RESYNC
        elif packet.marker and not self._frames and ext > self._next:
            self._restart(ext, transit)  # talkspurt start: re-base the delay on the current jitter
        assert self._next is not None
        if ext < self._next:
            if ext in self._played:
                self.stats.duplicates += 1
                return PutResult.DUPLICATE
            self.stats.late += 1
            if self.target_delay < self.max_delay:  # play one frame later from now on
                self._extra += self.frame
                self._offset += self.frame
            return PutResult.LATE
        if ext in self._frames:
            self.stats.duplicates += 1
            return PutResult.DUPLICATE
        result = PutResult.ACCEPTED
        if len(self._frames) >= self.capacity:
            del self._frames[min(self._frames)]
            self.stats.overflows += 1
            result = PutResult.OVERFLOW
        self._frames[ext] = packet.payload
        self.stats.accepted += 1
        return result

    def get(self, playout_ts: int) -> bytes | Lost | None:
        """The payload to play now, ``LOST`` if it is missing, or None before anything is due."""
        if self._next is None or playout_ts - self._offset < self._next:
            return None
        ext = self._next
        self._next += self.frame
        payload = self._frames.pop(ext, None)
        if payload is None:
            self.stats.lost += 1  # also counts silence (DTX) periods, where nothing was sent
            return LOST
        self._played[ext] = None
        if len(self._played) > self.capacity:
            del self._played[next(iter(self._played))]
        self.stats.played += 1
        return payload


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
