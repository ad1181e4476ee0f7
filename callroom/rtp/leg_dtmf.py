"""The DTMF side of one RTP leg: digits received and digits to send.

``DtmfIn`` reports each key press the peer makes once: from RFC 4733 telephone-events, or from the in-band
search of the received audio (while the peer has sent no telephone-event), a press seen both ways being
reported once. ``DtmfOut`` holds the digits we are sending, as RFC 4733 packets or as in-band tones, which
replace the outgoing audio on the 20 ms schedule of ``RtpLeg.push_frame``. Sans-I/O: times are passed in.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Final

import numpy as np

from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Frame
from callroom.errors import RtpParseError
from callroom.rtp.dtmf import (
    DtmfCallback,
    DtmfDetector,
    DtmfDigit,
    Rfc4733Receiver,
    Rfc4733Sender,
    char_to_event,
    dtmf_tones,
)
from callroom.rtp.packet import RtpPacket

__all__ = ["DtmfIn", "DtmfOut"]

log = logging.getLogger(__name__)

_F: Final = FRAME_SAMPLES
_GAP_MS: Final = 60  # between two digits we send
_DEDUP_SECONDS: Final = 1.0  # an RFC 4733 digit equal to an in-band one reported this recently is a repeat


class DtmfIn:
    """Digits from the peer, reported through ``on_dtmf``."""

    def __init__(self, on_dtmf: DtmfCallback | None, detect_inband: bool) -> None:
        self.on_dtmf = on_dtmf
        self.te_pt: int | None = None
        self.rfc4733 = Rfc4733Receiver(101)
        self.rfc4733_seen = False
        self.detector = DtmfDetector()
        self.quiet_frames = 0  # quiet frames in a row (the in-band search skips them once the detector idles)
        self._detect_inband = detect_inband
        self.wants_inband = detect_inband  # detect_inband, until the peer sends RFC 4733 events
        self._inband_recent: tuple[str, float] | None = None

    def set_payload_type(self, te_pt: int | None) -> None:
        """The negotiated telephone-event payload type (None: not negotiated)."""
        if te_pt != self.te_pt:
            self.te_pt = te_pt
            self.rfc4733 = Rfc4733Receiver(te_pt if te_pt is not None else -1)

    @property
    def detect_inband(self) -> bool:
        return self._detect_inband

    @detect_inband.setter
    def detect_inband(self, on: bool) -> None:
        self._detect_inband = on
        self.wants_inband = on and not self.rfc4733_seen

    @property
    def event_open(self) -> bool:
        """A telephone-event has begun and not yet been reported (``expire`` may report it)."""
        return self.te_pt is not None and self.rfc4733_seen and self.rfc4733.open

    def telephone_event(self, packet: RtpPacket, now: float) -> bool:
        """An RFC 4733 packet from the peer; False when its payload is malformed."""
        self.rfc4733_seen = True
        self.wants_inband = False
        try:
            digits = self.rfc4733.receive(packet)
        except RtpParseError:
            return False
        for d in digits:
            self.emit(d.digit, d.duration * 1000 // SAMPLE_RATE, "rfc4733", now)
        return True

    def expire(self, peer_timestamp: int, now: float) -> None:
        """Report an event whose end packets never came (``peer_timestamp``: the peer's RTP clock now)."""
        if self.te_pt is not None and self.rfc4733_seen:
            for d in self.rfc4733.expire(peer_timestamp):
                self.emit(d.digit, d.duration * 1000 // SAMPLE_RATE, "rfc4733", now)

    def search(self, frame: Frame, now: float) -> None:
        """The in-band search of one received frame."""
        # A frame this quiet cannot hold a digit: a Goertzel power is at most 4x the frame's mean power, and
        # both tones need min_level**2. (The batch checks this for all legs at once.)
        x = frame.astype(np.float32)
        if float(x @ x) * (4.0 / _F) < self.detector.min_power:
            self.quiet(now)
        else:
            self.classified(self.detector.classify(frame), now)

    def quiet(self, now: float) -> None:
        """This tick's frame is too quiet to hold a digit. After a few such frames the detector sits in its
        idle state, where more quiet frames change nothing, so they are skipped (most frames of a conference
        are quiet)."""
        if self.quiet_frames > self.detector.min_off_frames:
            return
        self.quiet_frames += 1
        self.advance(None, now)

    def classified(self, classified: str | None, now: float) -> None:
        """The classification of this tick's (loud enough) frame, by ``DtmfDetector.classify(_many)``."""
        self.quiet_frames = 0
        if classified is None and self.detector.idle:
            return  # the usual loud frame (speech): nothing to advance
        self.advance(classified, now)

    def advance(self, classified: str | None, now: float) -> None:
        """Feed the detector one frame's classification; reports a confirmed digit."""
        digit = self.detector.advance(classified)
        if digit is not None:
            self.emit(digit, self.detector.min_on_frames * _F * 1000 // SAMPLE_RATE, "inband", now)

    def emit(self, digit: str, duration_ms: int, source: str, now: float) -> None:
        recent = self._inband_recent
        if source == "inband":
            self._inband_recent = (digit, now)
        elif recent is not None and recent[0] == digit and now - recent[1] < _DEDUP_SECONDS:
            self._inband_recent = None  # the same press, already reported from the audio
            return
        if self.on_dtmf is not None:
            try:
                self.on_dtmf(DtmfDigit(digit, duration_ms, source))
            except Exception:
                log.exception("DTMF callback failed")


class DtmfOut:
    """Digits we send: RFC 4733 packets when the peer negotiated telephone-event, else in-band tones."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.te_pt: int | None = None
        self._sender = Rfc4733Sender(ssrc, 101)
        self._queue: deque[tuple[str, int]] = deque()
        self._packets: deque[RtpPacket] = deque()
        self._wait = 0  # ticks until the next digit may start
        self._tones: deque[Frame] = deque()

    def set_payload_type(self, te_pt: int | None) -> None:
        if te_pt != self.te_pt:
            self.te_pt = te_pt
            self._sender = Rfc4733Sender(self.ssrc, te_pt or 101)

    @property
    def busy(self) -> bool:
        """Digits are queued or being sent: ``tick`` and ``take`` have work this tick."""
        return bool(self._wait or self._packets or self._queue or self._tones)

    def send(self, digits: str, duration_ms: int) -> None:
        """Queue digits (each at least 40 ms long)."""
        for d in digits:
            char_to_event(d)  # raises ValueError for anything but 0-9 * # A-D
        duration_ms = max(40, duration_ms)
        if self.te_pt is not None:
            self._queue.extend((d, duration_ms) for d in digits)
            return
        samples = dtmf_tones(digits, on_ms=duration_ms, off_ms=_GAP_MS)
        samples = np.pad(samples, (0, -len(samples) % _F))
        self._tones.extend(samples.reshape(-1, _F))

    def tick(self, ts: int) -> None:
        """A 20 ms packet period starts, at RTP timestamp ``ts``: the next queued digit may begin."""
        if self._wait:
            self._wait -= 1
        if not self._packets and self._queue and not self._wait:
            digit, duration_ms = self._queue.popleft()
            packets = self._sender.digit_packets(digit, ts, duration_ms)
            self._packets.extend(packets)
            self._wait = max(len(packets), -(-(duration_ms + _GAP_MS) // 20))

    def take(self) -> RtpPacket | Frame | None:
        """What replaces this period's audio: an RFC 4733 packet, a frame of tones, or None (the audio)."""
        if self._packets:
            return self._packets.popleft()
        if self._tones:
            return self._tones.popleft()
        return None

    def skip(self) -> None:
        """This period sends nothing (on hold): what it would have sent is dropped."""
        if self._packets:
            self._packets.popleft()
        if self._tones:
            self._tones.popleft()
