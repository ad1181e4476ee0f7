"""A virtual phone's audio: what it says (a tone, speech, a file, silence, in-band DTMF) and a recording of
what it hears.

Options in the phone's address choose what it sends: ``virtual:alice;tone=500`` sends a 500 Hz tone,
``tone=500+900`` a dual tone; without ``tone`` it sends silence. ``cadence=600`` (or
``cadence=400/120/400``) gates the tone into that cadence and then falls silent. ``say=`` and ``play=``
send speech or a file once: the samples are prepared off the tick (``MediaActions.prepare``) and handed
to ``speak``; the phone is silent until then. ``beep=1000`` ends what it says with a 500 ms beep, as a
voicemail does. Everything it hears is kept (the last ``keep_seconds``) and can be fetched as a WAV
file, so tests and demos check real audio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from callroom.media.ports import FRAME_SAMPLES, SAMPLE_RATE, DtmfDigit, Frame
from callroom.media.tones import ToneGenerator, sine
from callroom.rtp.dtmf import DtmfDetector, dtmf_tones


class VirtualAudioLeg:
    def __init__(self, tone_hz: tuple[float, ...] = (), amplitude: float = 6000.0, keep_seconds: float = 120.0,
                 cadence_ms: tuple[int, ...] = (), beep_hz: float | None = None,
                 speaks: bool = False) -> None:  # fmt: skip
        """``speaks``: it will be given speech (``speak``), silent until then; its beep comes after."""
        self._source = ToneGenerator(list(tone_hz), amplitude=amplitude) if tone_hz else None
        self._beep_hz = beep_hz
        self._waiting = speaks
        self._cadence = _cadence(cadence_ms, None if speaks else beep_hz) if cadence_ms or beep_hz or speaks else None
        self._frame_no = 0
        self._silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._pending: deque[Frame] = deque()  # DTMF frames to send before the tone resumes
        self._incoming: deque[Frame] = deque()  # DTMF frames sent to this phone, added to what it hears
        self._heard: deque[Frame] = deque(maxlen=int(keep_seconds * SAMPLE_RATE / FRAME_SAMPLES))
        self.frames_heard = 0
        self.closed = False

    # -- AudioLeg -----------------------------------------------------------------------------------

    def pull_frame(self) -> Frame | None:
        if self._pending:
            return self._pending.popleft()
        if self._cadence is not None:
            at = self._frame_no
            self._frame_no += 1
            on = self._cadence[at] if at < len(self._cadence) else False
            if isinstance(on, np.ndarray):
                return on
            if not on:
                return self._silence
        if self._source is None:
            return self._silence
        return self._source.next_frame()

    def push_frame(self, frame: Frame) -> None:
        if self._incoming:
            tone = self._incoming.popleft()
            frame = np.clip(frame.astype(np.int32) + tone, -32768, 32767).astype(np.int16)
        self._heard.append(frame.copy())
        self.frames_heard += 1

    def speak(self, samples: Frame) -> None:
        """What it says (8 kHz samples, then its beep), from the next frame on; once, after the answer."""
        if not self._waiting:
            return
        self._waiting = False
        padded = np.concatenate([samples.astype(np.int16), np.zeros((-len(samples)) % FRAME_SAMPLES, np.int16)])
        frames: list[bool | Frame] = [padded[at : at + FRAME_SAMPLES] for at in range(0, len(padded), FRAME_SAMPLES)]
        self._cadence = frames + _cadence((), self._beep_hz)
        self._frame_no = 0

    @property
    def speaking(self) -> bool:
        """Whether it has speech still to say (or waits for it)."""
        return self._waiting or (self._cadence is not None and self._frame_no < len(self._cadence))

    @property
    def pressing(self) -> bool:
        """Whether key-press tones are queued in what the phone sends."""
        return bool(self._pending)

    def press(self, digits: str, duration_ms: int = 100) -> None:
        """The phone's user presses keys: in-band DTMF tones in what it sends."""
        self._pending.extend(_frames(digits, duration_ms))

    def send_dtmf(self, digits: str, duration_ms: int) -> None:
        """The node sends DTMF to this phone: the tones are in what it hears."""
        self._incoming.extend(_frames(digits, duration_ms))

    def close(self) -> None:
        self.closed = True

    # -- for tests and demos ------------------------------------------------------------------------

    def heard(self, last_seconds: float | None = None) -> Frame:
        """What the phone heard, as one array (the most recent ``last_seconds`` if given)."""
        frames = list(self._heard)
        if last_seconds is not None:
            frames = frames[-int(last_seconds * SAMPLE_RATE / FRAME_SAMPLES) :]
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(frames)

    def clear(self) -> None:
        self._heard.clear()


class VirtualPhoneAudio(VirtualAudioLeg):
    """A virtual phone's audio leg whose own key presses are found by an in-band DTMF detector, as
    they would be on a phone line that carries DTMF as tones. The detector listens only while keys
    are pressed (and a few frames after), so a phone that only sends its tone costs the tick nothing."""

    def __init__(self, tone_hz: tuple[float, ...], on_digit: Callable[[DtmfDigit], None],
                 cadence_ms: tuple[int, ...] = (), beep_hz: float | None = None,
                 speaks: bool = False) -> None:  # fmt: skip
        super().__init__(tone_hz, cadence_ms=cadence_ms, beep_hz=beep_hz, speaks=speaks)
        self._detector = DtmfDetector()
        self._on_digit = on_digit
        self._listen = 0

    def pull_frame(self) -> Frame | None:
        pressing = self.pressing
        frame = super().pull_frame()
        if pressing:
            self._listen = 10
        if frame is not None and self._listen > 0:
            self._listen -= 0 if pressing else 1
            digit = self._detector.process(frame)
            if digit:
                self._on_digit(DtmfDigit(digit, 0, "inband"))
        return frame


BEEP_MS = 500


def _cadence(cadence_ms: tuple[int, ...], beep_hz: float | None) -> list[bool | Frame]:
    """Per 20 ms frame: the tone on (True) or off (False), or a frame of the beep; silence after the end."""
    out: list[bool | Frame] = []
    for i, ms in enumerate(cadence_ms):
        out += [i % 2 == 0] * (ms // 20)
    if beep_hz is not None:
        beep = sine(beep_hz, BEEP_MS, amplitude=6000.0)
        out += [beep[at : at + FRAME_SAMPLES] for at in range(0, len(beep), FRAME_SAMPLES)]
    return out


def _frames(digits: str, duration_ms: int) -> list[Frame]:
    """In-band DTMF for ``digits`` as 20 ms frames; ``w`` is a 0.5 s pause and ``W`` a 1 s pause."""
    parts: list[Frame] = []
    for d in digits:
        if d in "wW":
            parts.append(np.zeros(SAMPLE_RATE // (2 if d == "w" else 1), dtype=np.int16))
        else:
            parts.append(dtmf_tones(d, on_ms=duration_ms, off_ms=80))
    if not parts:
        return []
    tones = np.concatenate(parts)
    tones = np.concatenate([tones, np.zeros((-len(tones)) % FRAME_SAMPLES, dtype=np.int16)])
    return [tones[i : i + FRAME_SAMPLES] for i in range(0, len(tones), FRAME_SAMPLES)]
