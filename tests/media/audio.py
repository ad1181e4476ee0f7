"""Test helpers: measure what a signal contains (no mocks, just numpy)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def tone_level(samples: NDArray[np.int16], freq: float, rate: int = 8000) -> float:
    """Peak amplitude of the ``freq`` component (a Hann-windowed single-bin DFT, so a neighbour
    tone 400 Hz away leaks less than -60 dB into the measurement)."""
    x = samples.astype(np.float64)
    n = np.arange(len(x))
    window = np.hanning(len(x))
    z = np.sum(x * window * np.exp(-2j * np.pi * freq * n / rate))
    return float(2 * abs(z) / window.sum())


def rms(samples: NDArray[np.int16]) -> float:
    x = samples.astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def speech_like(seconds: float, seed: int, peak: float = 12000.0) -> NDArray[np.int16]:
    """Voiced-speech stand-in: a gliding 110 Hz glottal source through formants near 700, 1220 and
    2600 Hz (right on top of DTMF rows and columns), gated into 4 Hz syllables."""
    rng = np.random.default_rng(seed)
    n = int(8000 * seconds)
    t = np.arange(n) / 8000
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t) + rng.standard_normal() * 5
    phase = 2 * np.pi * np.cumsum(f0) / 8000
    out: NDArray[np.float64] = np.zeros(n)
    for k in range(1, 30):
        fk = k * f0
        env = sum(np.exp(-(((fk - f) / b) ** 2)) for f, b in ((700, 130), (1220, 150), (2600, 200)))
        out += env * np.sin(k * phase)
    out *= np.sin(2 * np.pi * 4 * t) > 0
    scaled: NDArray[np.float64] = out / np.abs(out).max() * peak
    return scaled.astype(np.int16)


def frame_levels(samples: NDArray[np.int16], frame: int = 160) -> NDArray[np.float64]:
    """The RMS of each 20 ms frame: the energy envelope."""
    x = samples[: len(samples) // frame * frame].astype(np.float64).reshape(-1, frame)
    levels: NDArray[np.float64] = np.sqrt((x * x).mean(axis=1))
    return levels


def peak_share(samples: NDArray[np.int16], rate: int = 8000) -> float:
    """The share of the signal's energy within 50 Hz of its strongest frequency: near 1 for a tone, low
    for speech, whose energy spreads over harmonics and formants."""
    power = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    peak = freqs[int(np.argmax(power))]
    return float(power[np.abs(freqs - peak) <= 50].sum() / power.sum())


def is_speech_like(samples: NDArray[np.int16], floor: float = 200.0) -> bool:
    """Speech, by its envelope and spectrum, not a tone or silence: voice in a good part of the frames, an
    envelope that rises and falls (syllables and pauses, not a steady level), energy spread over the band."""
    levels = frame_levels(samples)
    voiced = levels[levels > floor]
    if len(voiced) < 0.2 * len(levels) or len(voiced) < 10:
        return False
    fluctuation = float(np.std(np.diff(levels)) / np.mean(voiced))  # frame-to-frame swings of the envelope
    return fluctuation > 0.15 and peak_share(samples) < 0.5
