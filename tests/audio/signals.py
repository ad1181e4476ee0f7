"""Test signals and spectral measurements."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> F64:
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def tone16(freq: float, seconds: float, amplitude: float = 0.5, rate: int = 8000) -> npt.NDArray[np.int16]:
    return np.round(tone(freq, seconds, rate, amplitude) * 32767).astype(np.int16)


def band_power_db(x: npt.NDArray[np.generic], rate: int, freq: float, width: float = 30.0) -> float:
    """Power (dB, arbitrary reference) of ``x`` within ``freq`` +- ``width`` Hz."""
    signal = np.asarray(x, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size))) ** 2
    freqs = np.fft.rfftfreq(signal.size, 1.0 / rate)
    band = spectrum[(freqs >= freq - width) & (freqs <= freq + width)]
    return float(10 * np.log10(band.sum() + 1e-12))


def dominant_freq(x: npt.NDArray[np.generic], rate: int) -> float:
    signal = np.asarray(x, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.fft.rfftfreq(signal.size, 1.0 / rate)[int(np.argmax(spectrum))])


def rms(x: npt.NDArray[np.generic]) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64)))))
