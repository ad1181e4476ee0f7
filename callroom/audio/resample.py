"""Band-limited sample-rate conversion in numpy: a polyphase windowed-sinc (Kaiser) filter.

For a ratio ``dst/src = up/down`` (reduced), output sample ``n`` sits at input time ``n*down/up``;
its fractional position repeats every ``up`` outputs, so each of the ``up`` phases has one fixed
set of taps and its outputs are a strided matrix-vector product over the input.
The cutoff is ``rolloff`` times the lower Nyquist frequency, so downsampling never aliases.
"""

from __future__ import annotations

from math import ceil, gcd

import numpy as np
import numpy.typing as npt

ZERO_CROSSINGS = 16
ROLLOFF = 0.94
KAISER_BETA = 8.6
_BLOCK_ELEMENTS = 1 << 20


def resample(
    x: npt.NDArray[np.floating], src_rate: int, dst_rate: int, *, rolloff: float = ROLLOFF
) -> npt.NDArray[np.float32]:
    """Resample a 1-D float signal from ``src_rate`` to ``dst_rate`` Hz.

    The output has ``ceil(len(x) * dst_rate / src_rate)`` samples and is aligned with the input
    (no group delay: the filter is centred on each output instant).
    """
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    if not 0.0 < rolloff <= 1.0:
        raise ValueError("rolloff must be in (0, 1]")
    signal = np.asarray(x, dtype=np.float32)
    if signal.ndim != 1:
        raise ValueError("resample() takes a 1-D signal")
    if src_rate == dst_rate or signal.size == 0:
        return signal.copy()
    g = gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    # cutoff in cycles per input sample, and the filter's half-width in input samples
    cutoff = 0.5 * min(1.0, up / down) * rolloff
    half_width = ZERO_CROSSINGS / (2.0 * cutoff)
    k_half = ceil(half_width)
    taps_len = 2 * k_half
    n_out = ceil(signal.size * up / down)

    padded = np.concatenate([np.zeros(k_half, np.float32), signal, np.zeros(k_half + 2, np.float32)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps_len)
    out = np.empty(n_out, dtype=np.float32)
    offsets = np.arange(taps_len, dtype=np.float64)
    rows_per_block = max(1, _BLOCK_ELEMENTS // taps_len)

    for r in range(min(up, n_out)):
        whole, rem = divmod(r * down, up)
        frac = rem / up
        taps = _kernel(frac + (k_half - 1) - offsets, cutoff, half_width)
        count = (n_out - r + up - 1) // up
        # window row for output r + m*up starts at padded[whole + m*down + 1]
        rows = windows[whole + 1 :: down][:count]
        dest = out[r::up]
        for start in range(0, count, rows_per_block):
            stop = min(count, start + rows_per_block)
            dest[start:stop] = rows[start:stop] @ taps
    return out


def _kernel(tau: npt.NDArray[np.float64], cutoff: float, half_width: float) -> npt.NDArray[np.float32]:
    """Kaiser-windowed ideal low-pass impulse response at offsets ``tau`` (input samples)."""
    inside = np.abs(tau) < half_width
    ratio = np.where(inside, tau / half_width, 1.0)
    window = np.where(inside, np.i0(KAISER_BETA * np.sqrt(1.0 - ratio * ratio)), 0.0) / np.i0(KAISER_BETA)
    return (2.0 * cutoff * np.sinc(2.0 * cutoff * tau) * window).astype(np.float32)
