"""Answering-machine detection from the answered audio: a sans-I/O detector fed 20 ms frames with ``now``.

The verdict comes from the length and cadence of what the far end says first, as a classic detector
decides it: a person answers with a short word or two and then waits (silence after a short greeting:
``human``); a machine plays a long greeting of many words, or says nothing at first (a long initial
silence, a word or a greeting longer than a person's, more words than a person says: ``machine``); no
decision within the analysis time is ``not_sure``. A frame is voice when its mean absolute amplitude
is above ``silence_threshold`` and well above the line's own noise (``NOISE_MARGIN`` times its floor, the
quietest frame of the last 1.5 s, so a hissing line is not one endless word); a word is voice of at
least ``MIN_WORD_MS``, words are apart when the silence between them reaches
``between_words_silence_millis``. As Telnyx describes its settings, it is a machine when the initial
silence, a word or the greeting lasts *longer* than its limit, or when there are *more* words than
``maximum_number_of_words``.

After a ``machine`` verdict, in the modes that wait for the greeting's end, it listens on: a beep (a pure
tone, one frequency holding most of each frame's energy for ``beep_min_tone_duration_millis``) ends
the greeting with ``beep_detected``; silence of ``greeting_silence_duration_millis`` after the greeting
with ``ended`` (not in ``detect_beep``, which reports only a beep); nothing within
``greeting_total_analysis_time_millis``, ``not_sure``. That wait is 30 s unless the application sets it, as
Telnyx documents for its beep detection: a voicemail greeting runs 3 to 30 s, and its beep comes at its end,
long after the ``machine`` verdict. Telnyx's configuration names throughout.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from callroom.media.ports import FRAME_SAMPLES, SAMPLE_RATE, AudioLeg, Frame
from callroom.model import media as m

DEFAULTS: Mapping[str, int] = {
    "after_greeting_silence_millis": 800,
    "between_words_silence_millis": 50,
    "greeting_duration_millis": 3500,
    "greeting_silence_duration_millis": 1500,
    "greeting_total_analysis_time_millis": 30000,
    "initial_silence_millis": 3500,
    "maximum_number_of_words": 5,
    "maximum_word_length_millis": 3500,
    "silence_threshold": 256,
    "total_analysis_time_millis": 5000,
    "beep_min_frequency_hz": 400,
    "beep_max_frequency_hz": 2600,
    "beep_min_tone_duration_millis": 160,
}
MIN_WORD_MS = 100
NOISE_MARGIN = 2.5  # voice is this many times louder than the line's noise floor (8 dB)
NOISE_WINDOW_FRAMES = 75  # the floor is the quietest frame of the last 1.5 s: speech pauses more often than that
WAIT_FOR_ANSWER_SECONDS = 900.0  # a detection waits this long for its call's answer
BEEP_PURITY = 0.8  # the share of a frame's energy within the beep's frequency and its neighbours
BEEP_DRIFT_HZ = 60.0  # a beep's frequency holds within this from frame to frame
_BINS = 4 * FRAME_SAMPLES  # zero-padded FFT: 12.5 Hz bins
_WINDOW = np.hanning(FRAME_SAMPLES)
_FREQS = np.fft.rfftfreq(_BINS, 1 / SAMPLE_RATE)


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # detection | greeting
    result: str  # human | machine | not_sure; beep_detected | ended | not_sure


def pure_tone(frame: Frame, low_hz: float, high_hz: float) -> float | None:
    """The frequency of ``frame`` if it is one pure tone between ``low_hz`` and ``high_hz``, else None."""
    x = frame.astype(np.float64) * _WINDOW
    power = np.abs(np.fft.rfft(x, _BINS)) ** 2
    total = float(power.sum())
    if total <= 0.0:
        return None
    peak = int(np.argmax(power))
    near = float(power[max(peak - 6, 0) : peak + 7].sum())
    hz = float(_FREQS[peak])
    if near / total < BEEP_PURITY or not low_hz <= hz <= high_hz:
        return None
    return hz


class MachineDetector:
    """``feed(frame, now)`` every 20 ms from the answer; it returns the verdicts reached (at most one
    detection, then at most one greeting end); ``done`` once nothing more will come."""

    def __init__(self, mode: str, config: Mapping[str, int], now: float) -> None:
        self.mode = mode
        self.cfg = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
        self.started = now
        self.detected: str | None = None
        self.done = False
        self._voice_ms = 0  # of the current stretch of voice
        self._silence_ms = 0  # of the current stretch of silence
        self._words = 0
        self._in_word = False
        self._heard_voice = False
        self._greeting_ms = 0  # from the first word's start
        self._machine_at = 0.0
        self._beep_ms = 0
        self._beep_hz = 0.0
        self._levels: deque[float] = deque(maxlen=NOISE_WINDOW_FRAMES)  # the last frames' mean absolute amplitude

    def feed(self, frame: Frame | None, now: float) -> list[Verdict]:
        if self.done:
            return []
        if frame is None:
            frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        voiced = self._voiced(float(np.abs(frame.astype(np.int32)).mean()))
        beep = self._beep(frame) if voiced else False
        self._cadence(voiced)
        out: list[Verdict] = []
        if self.detected is None:
            result = "machine" if beep else self._decide(now)
            if result is None:
                return out
            self.detected = result
            self._machine_at = now
            out.append(Verdict("detection", result))
            if result != "machine" or self.mode == "detect":
                self.done = True
                return out
        if beep:
            self.done = True
            return [*out, Verdict("greeting", "beep_detected")]
        ended = self._heard_voice and self._silence_ms >= self.cfg["greeting_silence_duration_millis"]
        if self.mode != "detect_beep" and ended:
            self.done = True
            return [*out, Verdict("greeting", "ended")]
        if (now - self._machine_at) * 1000 >= self.cfg["greeting_total_analysis_time_millis"]:
            self.done = True
            if self.mode != "detect_beep":
                return [*out, Verdict("greeting", "not_sure")]
        return out

    def _voiced(self, level: float) -> bool:
        """Whether a frame of this level is voice: above ``silence_threshold`` and ``NOISE_MARGIN`` times the
        line's noise floor (the quietest recent frame, at most ``silence_threshold``: a call that starts with
        speech is heard at once, a line that starts to hiss is not voice for longer than the window)."""
        self._levels.append(level)
        threshold = self.cfg["silence_threshold"]
        return level > threshold and level > NOISE_MARGIN * min(min(self._levels), threshold)

    def _cadence(self, voiced: bool) -> None:
        step = 1000 * FRAME_SAMPLES // SAMPLE_RATE
        if voiced:
            self._voice_ms += step
            self._silence_ms = 0
            if self._heard_voice:
                self._greeting_ms += step
            if not self._in_word and self._voice_ms >= MIN_WORD_MS:
                self._in_word = True
                self._words += 1
                if not self._heard_voice:
                    self._heard_voice = True
                    self._greeting_ms = self._voice_ms
        else:
            self._silence_ms += step
            if self._heard_voice:
                self._greeting_ms += step
            if self._silence_ms >= self.cfg["between_words_silence_millis"]:
                self._in_word = False
                self._voice_ms = 0

    def _decide(self, now: float) -> str | None:
        cfg = self.cfg
        if not self._heard_voice:
            if self._silence_ms > cfg["initial_silence_millis"]:
                return "machine"
        elif (
            (self._in_word and self._voice_ms > cfg["maximum_word_length_millis"])  # a word too long
            or self._words > cfg["maximum_number_of_words"]  # too many words
            or self._greeting_ms > cfg["greeting_duration_millis"]  # a greeting too long
        ):
            return "machine"
        elif self._silence_ms >= cfg["after_greeting_silence_millis"]:
            return "human"
        if (now - self.started) * 1000 >= cfg["total_analysis_time_millis"]:
            return "not_sure"
        return None

    def _beep(self, frame: Frame) -> bool:
        hz = pure_tone(frame, self.cfg["beep_min_frequency_hz"], self.cfg["beep_max_frequency_hz"])
        if hz is None or (self._beep_ms and abs(hz - self._beep_hz) > BEEP_DRIFT_HZ):
            self._beep_ms = 0 if hz is None else 20
            self._beep_hz = hz or 0.0
            return False
        self._beep_ms += 20
        self._beep_hz = hz
        return self._beep_ms >= self.cfg["beep_min_tone_duration_millis"]


class MachineDetectors:
    """The engine's detections by call: each starts when its leg's audio exists (the answer) and reports
    its verdicts as ``MachineDetection`` facts."""

    def __init__(self, legs: Callable[[], Mapping[str, AudioLeg]], report: Callable[[m.MediaFact], None]) -> None:
        self.legs = legs
        self.report = report
        self.pending: dict[str, tuple[m.DetectMachine, float | None]] = {}  # with when a tick first saw it
        self.running: dict[str, tuple[m.DetectMachine, MachineDetector]] = {}

    def __bool__(self) -> bool:
        return bool(self.pending) or bool(self.running)

    def start(self, op: m.DetectMachine) -> None:
        self.running.pop(op.call_control_id, None)
        self.pending[op.call_control_id] = (op, None)

    def stop(self, cid: str) -> None:
        self.pending.pop(cid, None)
        self.running.pop(cid, None)

    def after_mix(self, inputs: Mapping[str, Frame | None], now: float) -> None:
        if self.pending:
            legs = self.legs()
            for cid, (op, since) in list(self.pending.items()):
                if cid in legs:
                    del self.pending[cid]
                    self.running[cid] = (op, MachineDetector(op.mode, dict(op.config), now))
                elif since is None:
                    self.pending[cid] = (op, now)
                elif now - since > WAIT_FOR_ANSWER_SECONDS:
                    del self.pending[cid]  # the call was never answered here
        for cid, (op, detector) in list(self.running.items()):
            for verdict in detector.feed(inputs.get(cid), now):
                self.report(m.MachineDetection(op.job_id, verdict.kind, verdict.result))
            if detector.done:
                del self.running[cid]
