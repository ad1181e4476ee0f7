"""Tone, beep, comfort-noise and hold-music generators: int16 samples at 8 kHz.

Functions return whole arrays; the objects (``SamplePlayer``, ``ToneGenerator``, ``ComfortNoise``,
``HoldMusic``) are pulled by the mixer one 20 ms frame (160 samples) at a time with ``next_frame()``.
Everything is deterministic: noise comes from a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "ComfortNoise",
    "FrameSource",
    "HoldMusic",
    "SamplePlayer",
    "ToneGenerator",
    "enter_beep",
    "exit_beep",
    "hold_music",
    "pink_noise",
    "ringback",
    "silence",
    "sine",
]

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms at 8 kHz
FULL_SCALE: Final = 32767.0

Samples = NDArray[np.int16]


class FrameSource(Protocol):
    """Anything the mixer can pull 20 ms of audio from."""

    def next_frame(self) -> Samples: ...


def _to_int16(x: NDArray[np.float64]) -> Samples:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _fade(x: NDArray[np.float64], ms: float, rate: int) -> NDArray[np.float64]:
    """Raised-cosine fade in and out over ``ms`` at each end, so tones start and stop without clicks."""
    n = min(int(rate * ms / 1000), len(x) // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, endpoint=False))
        x = x.copy()
        x[:n] *= ramp
        x[len(x) - n :] *= ramp[::-1]
    return x


def silence(ms: float, rate: int = SAMPLE_RATE) -> Samples:
    return np.zeros(int(rate * ms / 1000), dtype=np.int16)


def sine(freq: float, ms: float, amplitude: float = 8000.0, rate: int = SAMPLE_RATE,
         phase: float = 0.0, fade_ms: float = 0.0) -> Samples:
    """A sine tone of ``ms`` milliseconds; ``amplitude`` is the linear peak (32767 = full scale)."""
    n = round(rate * ms / 1000)
    x = amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate + phase)
    return _to_int16(_fade(x, fade_ms, rate) if fade_ms else x)


def ringback(amplitude: float = 4000.0, rate: int = SAMPLE_RATE) -> Samples:
    """One cycle of the North American ringback a caller hears while the far end rings: 440 Hz and
    480 Hz together for 2 s, then 4 s of silence (played in a loop)."""
    ms = 2000.0
    n = round(rate * ms / 1000)
    t = np.arange(n) / rate
    x = amplitude / 2 * (np.sin(2 * np.pi * 440.0 * t) + np.sin(2 * np.pi * 480.0 * t))
    return np.concatenate([_to_int16(_fade(x, 10.0, rate)), silence(4000.0, rate)])


def _beep(freqs: Sequence[float], note_ms: float, amplitude: float, rate: int) -> Samples:
    return np.concatenate([sine(f, note_ms, amplitude, rate, fade_ms=8.0) for f in freqs])


def enter_beep(amplitude: float = 6000.0, rate: int = SAMPLE_RATE) -> Samples:
    """Participant joined: a rising pair of notes (A5 then E6), 200 ms in all."""
    return _beep((880.0, 1318.5), 100.0, amplitude, rate)


def exit_beep(amplitude: float = 6000.0, rate: int = SAMPLE_RATE) -> Samples:
    """Participant left: the same notes falling (E6 then A5)."""
    return _beep((1318.5, 880.0), 100.0, amplitude, rate)


def pink_noise(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``n`` samples of 1/f noise with unit RMS, shaped in the frequency domain.

    The result is circular (its last sample flows into its first), so it loops without a seam.
    """
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    spectrum /= np.sqrt(f)
    spectrum[0] = 0.0
    x = np.fft.irfft(spectrum, n)
    rms = float(np.sqrt(np.mean(x * x)))
    return x / rms if rms > 0 else x


class SamplePlayer:
    """Serves a fixed array 160 samples at a time, optionally looping; pads the last frame with zeros."""

    def __init__(self, samples: Samples, loop: bool = False, frame_samples: int = FRAME_SAMPLES) -> None:
        if loop and len(samples) == 0:
            raise ValueError("cannot loop an empty sample array")
        self._samples = samples
        self._loop = loop
        self._pos = 0
        self._n = frame_samples

    @property
    def finished(self) -> bool:
        return not self._loop and self._pos >= len(self._samples)

    def rewind(self) -> None:
        self._pos = 0

    def next_frame(self) -> Samples:
        total = len(self._samples)
        if not self._loop:
            out = self._samples[self._pos : self._pos + self._n]
            self._pos += self._n
            if len(out) < self._n:
                out = np.concatenate([out, np.zeros(self._n - len(out), dtype=np.int16)])
            return out
        idx = (self._pos + np.arange(self._n)) % total
        self._pos = (self._pos + self._n) % total
        return self._samples[idx]


class ToneGenerator:
    """Continuous (optionally cadenced) sum of sines with phase carried across frames.

    ``ToneGenerator([440, 480], cadence_ms=(2000, 4000))`` is the North American ringback.
    """

    def __init__(self, freqs: Sequence[float], amplitude: float = 8000.0,
                 cadence_ms: tuple[float, float] | None = None, rate: int = SAMPLE_RATE,
                 frame_samples: int = FRAME_SAMPLES) -> None:
        self._freqs = np.asarray(freqs, dtype=np.float64)
        self._amplitude = amplitude / max(len(self._freqs), 1)
        self._rate = rate
        self._n = frame_samples
        self._sample = 0
        self._cadence = None if cadence_ms is None else (int(rate * cadence_ms[0] / 1000),
                                                         int(rate * sum(cadence_ms) / 1000))

    def next_frame(self) -> Samples:
        t = self._sample + np.arange(self._n)
        self._sample += self._n
        x = self._amplitude * np.sin(2 * np.pi * np.outer(self._freqs, t) / self._rate).sum(axis=0)
        if self._cadence is not None:
            on, period = self._cadence
            x = np.where(t % period < on, x, 0.0)
        return _to_int16(x)


class ComfortNoise:
    """Low-level pink noise (default -65 dBov RMS) so a quiet line does not sound dead."""

    def __init__(self, level_dbov: float = -65.0, seed: int = 0, seconds: float = 2.0,
                 rate: int = SAMPLE_RATE, frame_samples: int = FRAME_SAMPLES) -> None:
        rng = np.random.default_rng(seed)
        n = int(rate * seconds) // frame_samples * frame_samples
        noise = pink_noise(n, rng) * FULL_SCALE * 10 ** (level_dbov / 20)
        self._player = SamplePlayer(_to_int16(noise), loop=True, frame_samples=frame_samples)

    def next_frame(self) -> Samples:
        return self._player.next_frame()


# -- hold music -------------------------------------------------------------------------------------

_A4: Final = 440.0


def _note(semitones_from_a4: float) -> float:
    return _A4 * 2 ** (semitones_from_a4 / 12)


def _voice(freq: float, ms: float, amplitude: float, rate: int) -> NDArray[np.float64]:
    """A soft plucked voice: fundamental plus two quiet harmonics, exponential decay."""
    n = int(rate * ms / 1000)
    t = np.arange(n) / rate
    tone = (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)
            + 0.1 * np.sin(6 * np.pi * freq * t))
    env = np.exp(-3.0 * t / (ms / 1000)) * np.minimum(1.0, t / 0.01)
    return _fade(amplitude * tone * env, 10.0, rate)


# I-vi-IV-V in C major, one bar each: (bass note, arpeggio notes), semitones from A4
_PROGRESSION: Final = (
    (-21, (3, 7, 10, 15)),  # C: C5 E5 G5 C6
    (-24, (0, 3, 7, 12)),  # Am: A4 C5 E5 A5
    (-28, (-4, 0, 3, 8)),  # F: F4 A4 C5 F5
    (-26, (-2, 2, 5, 10)),  # G: G4 B4 D5 G5
)


def hold_music(rate: int = SAMPLE_RATE, beat_ms: float = 250.0, amplitude: float = 5000.0) -> Samples:
    """A deterministic, loopable 8-second arpeggiated I-vi-IV-V melody over a soft bass.

    Every note decays to silence inside its bar, so the last sample leads into the first cleanly.
    """
    bar = int(rate * beat_ms * 8 / 1000)
    beat = int(rate * beat_ms / 1000)
    out = np.zeros(bar * len(_PROGRESSION), dtype=np.float64)
    for i, (bass, arpeggio) in enumerate(_PROGRESSION):
        start = i * bar
        out[start : start + bar] += _voice(_note(bass), beat_ms * 8, amplitude * 0.6, rate)[:bar]
        pattern = (*arpeggio, *arpeggio[-2:0:-1], arpeggio[0], arpeggio[2])  # up, back down, up
        for j, semis in enumerate(pattern[:8]):
            v = _voice(_note(semis), beat_ms * 2, amplitude * 0.5, rate)
            s = start + j * beat
            end = min(s + len(v), start + bar)
            out[s:end] += v[: end - s]
    return _to_int16(_fade(out, 20.0, rate))


class HoldMusic(SamplePlayer):
    """The default hold music, looping forever."""

    def __init__(self, rate: int = SAMPLE_RATE, frame_samples: int = FRAME_SAMPLES) -> None:
        super().__init__(hold_music(rate), loop=True, frame_samples=frame_samples)
