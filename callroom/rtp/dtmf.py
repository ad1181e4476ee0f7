"""DTMF: RFC 4733 telephone-events (payload, receiver, sender) and in-band tones (generator, detector).

All sans-I/O. The receiver is fed RTP packets and returns digits; the sender returns RTP packets tagged
with the 20 ms tick at which to send each; the detector is fed 160-sample int16 frames.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE
from callroom.errors import RtpParseError
from callroom.rtp.packet import RtpPacket, ts_diff

__all__ = [
    "COL_FREQS",
    "DIGITS",
    "ROW_FREQS",
    "DtmfCallback",
    "DtmfDetector",
    "DtmfDigit",
    "ReceivedDigit",
    "Rfc4733Receiver",
    "Rfc4733Sender",
    "TelephoneEvent",
    "char_to_event",
    "dtmf_tone",
    "dtmf_tones",
    "event_to_char",
]

DIGITS: Final = "0123456789*#ABCD"  # RFC 4733 events 0-15, in event-code order
ROW_FREQS: Final = (697.0, 770.0, 852.0, 941.0)
COL_FREQS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD: Final = ("123A", "456B", "789C", "*0#D")

_EVENT: Final = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A key press a leg received."""

    digit: str
    duration_ms: int
    source: str  # "rfc4733" | "inband"


DtmfCallback = Callable[[DtmfDigit], None]


def event_to_char(event: int) -> str:
    if not 0 <= event < len(DIGITS):
        raise ValueError(f"telephone-event {event} is not a DTMF digit")
    return DIGITS[event]


def char_to_event(char: str) -> int:
    i = DIGITS.find(char.upper()) if len(char) == 1 else -1
    if i < 0:
        raise ValueError(f"{char!r} is not a DTMF digit (0-9, *, #, A-D)")
    return i


@dataclass(slots=True, frozen=True)
class TelephoneEvent:
    """The 4-byte RFC 4733 §2.3 payload. ``volume`` is -dBm0 (0..63); ``duration`` in timestamp units."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0
    reserved: bool = False  # the R bit: senders set 0, receivers ignore; kept for exact round-trips

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        if len(data) != 4:
            raise RtpParseError(f"telephone-event payload is 4 bytes, got {len(data)}")
        event, flags, duration = _EVENT.unpack(data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration, bool(flags & 0x40))

    def __bytes__(self) -> bytes:
        if not 0 <= self.volume <= 63:
            raise ValueError("telephone-event volume is 0..63")
        flags = (0x80 if self.end else 0) | (0x40 if self.reserved else 0) | self.volume
        return _EVENT.pack(self.event & 0xFF, flags, min(self.duration, 0xFFFF))


@dataclass(slots=True, frozen=True)
class ReceivedDigit:
    digit: str
    timestamp: int  # RTP timestamp of the event (its start)
    duration: int  # timestamp units, the longest duration seen (0 if never known)


class Rfc4733Receiver:
    """Reports each telephone-event digit exactly once.

    An event is identified by its RTP timestamp. It is reported when its first end packet arrives,
    or -- if every end packet was lost -- when a packet of a later event arrives, or when
    ``expire(now_timestamp)`` finds it silent for ``timeout_samples``. Lost start packets do not
    matter (any packet of a new timestamp opens the event); redundant end packets and late
    retransmissions of reported events are ignored.
    """

    def __init__(self, payload_type: int = 101, timeout_samples: int = 8000) -> None:
        self.payload_type = payload_type
        self.timeout_samples = timeout_samples
        self._ssrc: int | None = None
        self._open: tuple[int, int] | None = None  # (timestamp, event) of the event in progress
        self._open_duration = 0
        self._last_reported_ts: int | None = None

    def receive(self, packet: RtpPacket) -> list[ReceivedDigit]:
        if packet.payload_type != self.payload_type:
            return []
        ev = TelephoneEvent.parse(packet.payload)
        if ev.event >= len(DIGITS):
            return []  # flash-hook and other non-digit events are not digits
        if packet.ssrc != self._ssrc:
            self._ssrc, self._open, self._last_reported_ts = packet.ssrc, None, None
        ts = packet.timestamp
        if self._last_reported_ts is not None and ts_diff(ts, self._last_reported_ts) <= 0:
            return []  # redundant end packet or a late packet of an already reported event
        out: list[ReceivedDigit] = []
        if self._open is not None and self._open[0] != ts:
            if ts_diff(ts, self._open[0]) < 0:
                return []  # a straggler from before the open event
            out.append(self._close())
        if self._open is None:
            self._open, self._open_duration = (ts, ev.event), 0
        self._open_duration = max(self._open_duration, ev.duration)
        if ev.end:
            out.append(self._close())
        return out

    @property
    def open(self) -> bool:
        """An event has begun and is not reported yet."""
        return self._open is not None

    def expire(self, now_timestamp: int) -> list[ReceivedDigit]:
        """Report an event whose end packets never came, once ``timeout_samples`` past its end."""
        if self._open is None:
            return []
        if ts_diff(now_timestamp, self._open[0] + self._open_duration) >= self.timeout_samples:
            return [self._close()]
        return []

    def _close(self) -> ReceivedDigit:
        assert self._open is not None
        ts, event = self._open
        self._open = None
        self._last_reported_ts = ts
        return ReceivedDigit(DIGITS[event], ts, self._open_duration)


class Rfc4733Sender:
    """Builds the RTP packets of telephone-events for a digit string.

    For each digit: one packet per ``packet_ms`` with growing duration (the first has the marker bit),
    then the final duration three times with the end bit (RFC 4733 §2.5.1.4). ``schedule`` yields
    ``(tick, packet)``: ``tick`` counts ``packet_ms`` periods from the start. The sequence counter is
    ``next_sequence``; share it with the audio stream of the same SSRC.
    """

    def __init__(self, ssrc: int, payload_type: int = 101, next_sequence: int = 0,
                 clock_rate: int = SAMPLE_RATE, packet_ms: int = 20, volume: int = 10) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.next_sequence = next_sequence & 0xFFFF
        self.clock_rate = clock_rate
        self.packet_ms = packet_ms
        self.volume = volume

    def _packet(self, ev: TelephoneEvent, timestamp: int, marker: bool) -> RtpPacket:
        p = RtpPacket(payload_type=self.payload_type, sequence_number=self.next_sequence,
                      timestamp=timestamp & 0xFFFFFFFF, ssrc=self.ssrc, payload=bytes(ev), marker=marker)
        self.next_sequence = (self.next_sequence + 1) & 0xFFFF
        return p

    def digit_packets(self, digit: str, timestamp: int, duration_ms: int = 100) -> list[RtpPacket]:
        """Packets for one digit, one per tick: updates, then three identical end packets."""
        event = char_to_event(digit)
        step = self.clock_rate * self.packet_ms // 1000
        total = max(step, self.clock_rate * duration_ms // 1000)
        updates = -(-total // step)  # packets until the duration is reached (the last one ends)
        packets = [
            self._packet(TelephoneEvent(event, False, self.volume, step * k), timestamp, marker=k == 1)
            for k in range(1, updates)
        ]
        final = TelephoneEvent(event, True, self.volume, total)
        packets += [self._packet(final, timestamp, marker=updates == 1 and i == 0) for i in range(3)]
        return packets

    def schedule(self, digits: str, timestamp: int, duration_ms: int = 100,
                 gap_ms: int = 60) -> Iterator[tuple[int, RtpPacket]]:
        """All packets of ``digits``, each with the tick at which it is due; events start
        ``duration_ms + gap_ms`` (rounded up to whole ticks) apart in both time and timestamp."""
        tick = 0
        step = self.clock_rate * self.packet_ms // 1000
        for digit in digits:
            packets = self.digit_packets(digit, timestamp, duration_ms)
            for i, p in enumerate(packets):
                yield tick + i, p
            ticks = max(len(packets), -(-(duration_ms + gap_ms) // self.packet_ms))
            tick += ticks
            timestamp += ticks * step


# -- in-band tones ------------------------------------------------------------------------------------


def _freqs_of(digit: str) -> tuple[float, float]:
    char_to_event(digit)  # validates
    for r, row in enumerate(_KEYPAD):
        c = row.find(digit.upper())
        if c >= 0:
            return ROW_FREQS[r], COL_FREQS[c]
    raise AssertionError("unreachable")


def dtmf_tone(digit: str, ms: float = 100.0, amplitude: float = 7000.0, twist_db: float = 0.0,
              rate: int = SAMPLE_RATE) -> NDArray[np.int16]:
    """One key press: the row and column sines, each of peak ``amplitude`` (column raised by
    ``twist_db``)."""
    low, high = _freqs_of(digit)
    t = np.arange(round(rate * ms / 1000)) / rate
    col_amp = amplitude * 10 ** (twist_db / 20)
    x = amplitude * np.sin(2 * np.pi * low * t) + col_amp * np.sin(2 * np.pi * high * t)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def dtmf_tones(digits: str, on_ms: float = 100.0, off_ms: float = 100.0, amplitude: float = 7000.0,
               rate: int = SAMPLE_RATE) -> NDArray[np.int16]:
    """A digit string as tones separated by silences (trailing silence included)."""
    parts: list[NDArray[np.int16]] = []
    for d in digits:
        parts += [dtmf_tone(d, on_ms, amplitude, rate=rate), np.zeros(int(rate * off_ms / 1000), dtype=np.int16)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class DtmfDetector:
    """In-band DTMF detector on 160-sample frames (Goertzel powers at the 8 DTMF frequencies).

    A frame holds a digit when: the strongest row and column tones each exceed ``min_level`` (peak
    amplitude), the twist between them is within limits, each beats its runner-up by
    ``min_peak_ratio_db``, and together they carry at least ``min_tone_fraction`` of the frame's
    energy (which rejects speech and noise). A digit is reported once, after ``min_on_frames``
    consecutive frames, and can be reported again only after ``min_off_frames`` frames without it.
    """

    def __init__(self, rate: int = SAMPLE_RATE, frame_samples: int = FRAME_SAMPLES,
                 min_level: float = 300.0, max_normal_twist_db: float = 8.0,
                 max_reverse_twist_db: float = 8.0, min_peak_ratio_db: float = 6.0,
                 min_tone_fraction: float = 0.6, min_on_frames: int = 2, min_off_frames: int = 2) -> None:
        self.frame_samples = frame_samples
        freqs = np.array(ROW_FREQS + COL_FREQS)
        n = np.arange(frame_samples)
        w = 2 * np.pi * np.outer(freqs, n) / rate
        # The Goertzel recurrence's final |y|^2 equals |sum x[n] e^{-jwn}|^2: compute that directly
        # as one 8x160 matrix product, scaled so a sine of peak A gives A**2.
        self._basis = np.concatenate([np.cos(w), np.sin(w)]) * (2.0 / frame_samples)
        self._basis32 = np.ascontiguousarray(self._basis.T, dtype=np.float32)
        self.min_power = min_level**2
        self._near_power = np.float32(0.99 * self.min_power)
        self.normal_twist = 10 ** (max_normal_twist_db / 10)
        self.reverse_twist = 10 ** (max_reverse_twist_db / 10)
        self.peak_ratio = 10 ** (min_peak_ratio_db / 10)
        self.min_tone_fraction = min_tone_fraction
        self.min_on_frames = min_on_frames
        self.min_off_frames = min_off_frames
        self._current: str | None = None
        self._candidate: str | None = None
        self._count = 0
        self._off = 0

    def powers(self, frame: NDArray[np.int16]) -> NDArray[np.float64]:
        """Squared peak amplitude seen at each of the 8 DTMF frequencies (rows then columns)."""
        proj = self._basis @ frame.astype(np.float64)
        return proj[:8] ** 2 + proj[8:] ** 2

    def classify(self, frame: NDArray[np.int16]) -> str | None:
        """The digit this single frame holds, if any (no memory)."""
        if len(frame) != self.frame_samples:
            raise ValueError(f"DTMF detector frames are {self.frame_samples} samples, got {len(frame)}")
        p = self.powers(frame)
        rows, cols = p[:4], p[4:]
        r, c = int(np.argmax(rows)), int(np.argmax(cols))
        pr, pc = float(rows[r]), float(cols[c])
        if pr < self.min_power or pc < self.min_power:
            return None
        if pr > pc * self.normal_twist or pc > pr * self.reverse_twist:
            return None
        if np.any(np.delete(rows, r) * self.peak_ratio > pr):
            return None
        if np.any(np.delete(cols, c) * self.peak_ratio > pc):
            return None
        x = frame.astype(np.float64)
        energy = float(np.mean(x * x))  # a sine of peak A has mean power A**2 / 2
        if (pr + pc) / 2 < self.min_tone_fraction * energy:
            return None
        return _KEYPAD[r][c]

    def classify_many(self, frames: NDArray[np.int16]) -> list[str | None]:
        """``classify`` for a whole (N, frame_samples) array at once: one matrix product for all of them,
        which is how the engine checks every leg that wants in-band detection in one tick."""
        out: list[str | None] = [None] * len(frames)
        for i, d in self.find_digits(frames).items():
            out[i] = d
        return out

    def find_digits(self, frames: NDArray[np.int16]) -> dict[int, str]:
        """``classify_many`` as the rows that hold a digit (usually none) and their digits."""
        # Single precision first, to drop the frames whose strongest row or column tone is clearly too weak
        # (its error is far below the 1% margin); the rest are classified in double precision, as ``classify``.
        p32 = _tone_powers(frames.astype(np.float32) @ self._basis32)
        near = np.flatnonzero(_strongest(p32, 0) >= self._near_power)
        near = near[_strongest(p32[near], 4) >= self._near_power]
        if not len(near):
            return {}
        x = frames[near].astype(np.float64)
        p = _tone_powers(x @ self._basis.T)
        # Both strongest tones loud enough: few frames get past this, and only they are examined further.
        strong = np.flatnonzero((_strongest(p, 0) >= self.min_power) & (_strongest(p, 4) >= self.min_power))
        if not len(strong):
            return {}
        p, x = p[strong], x[strong]
        rows, cols = p[:, :4], p[:, 4:]
        r, c = np.argmax(rows, axis=1), np.argmax(cols, axis=1)
        idx = np.arange(len(p))
        pr, pc = rows[idx, r], cols[idx, c]
        second_row = np.sort(rows, axis=1)[:, -2]
        second_col = np.sort(cols, axis=1)[:, -2]
        energy = np.mean(x * x, axis=1)
        ok = (
            ~(pr > pc * self.normal_twist) & ~(pc > pr * self.reverse_twist)
            & ~(second_row * self.peak_ratio > pr) & ~(second_col * self.peak_ratio > pc)
            & ~((pr + pc) / 2 < self.min_tone_fraction * energy)
        )
        return {int(near[strong[i]]): _KEYPAD[int(r[i])][int(c[i])] for i in np.flatnonzero(ok).tolist()}

    def process(self, frame: NDArray[np.int16]) -> str | None:
        """Feed one frame; returns a digit the first time a key press is confirmed."""
        return self.advance(self.classify(frame))

    @property
    def idle(self) -> bool:
        """No digit held or being confirmed: a frame without a digit would change nothing."""
        return self._candidate is None and self._current is None

    def advance(self, d: str | None) -> str | None:
        """Feed one frame's classification (``classify``/``classify_many``); a digit when confirmed."""
        if d is not None and d == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = d, (1 if d is not None else 0)
        if self._current is not None:
            if d == self._current:
                self._off = 0
                return None
            self._off += 1
            if self._off < self.min_off_frames:
                return None
            self._current = None
        if d is not None and self._count >= self.min_on_frames:
            self._current, self._off = d, 0
            return d
        return None

    def process_samples(self, samples: NDArray[np.int16]) -> str:
        """Convenience: run a whole buffer (trailing partial frame ignored), return the digits."""
        out = []
        for i in range(0, len(samples) - self.frame_samples + 1, self.frame_samples):
            d = self.process(samples[i : i + self.frame_samples])
            if d is not None:
                out.append(d)
        return "".join(out)


def _tone_powers(proj: NDArray[np.floating]) -> NDArray[np.floating]:
    """The squared amplitudes at the 8 DTMF frequencies from the cosine and sine projections."""
    power: NDArray[np.floating] = proj[:, :8] ** 2 + proj[:, 8:] ** 2
    return power


def _strongest(p: NDArray[np.floating], first: int) -> NDArray[np.floating]:
    """The largest of the four powers from column ``first`` (the row tones: 0, the column tones: 4)."""
    most: NDArray[np.floating] = np.maximum(np.maximum(p[:, first], p[:, first + 1]),
                                            np.maximum(p[:, first + 2], p[:, first + 3]))
    return most
