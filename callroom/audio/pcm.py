"""The media engine's sample format: 8 kHz mono int16, 160 samples per 20 ms frame."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160

Pcm = npt.NDArray[np.int16]
Frame = Pcm  # one 20 ms frame: FRAME_SAMPLES samples
Float = npt.NDArray[np.float32]


def to_int16(x: npt.NDArray[np.floating]) -> Pcm:
    """Full-scale float (-1.0 .. 1.0) to int16, rounded and clipped."""
    scaled = np.rint(np.asarray(x, dtype=np.float32) * np.float32(32768.0))
    out: Pcm = np.clip(scaled, -32768, 32767).astype(np.int16)
    return out


def to_float(x: Pcm) -> Float:
    """int16 to float32 full scale (-1.0 .. 1.0)."""
    return np.asarray(x, dtype=np.float32) / np.float32(32768.0)
