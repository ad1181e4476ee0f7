"""Recording writers: 8 kHz int16 channels -> WAV or MP3 bytes, and silence trimming.

``channels`` is a list of one (single) or two (dual) equally long int16 arrays; in a dual
recording channel 1 is the first array and channel 2 the second. MP3 is written at 8 kHz
itself (MPEG-2.5 Layer III), which LAME supports at 8-64 kbit/s, so nothing is resampled.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import lameenc
import numpy as np
import soundfile as sf

from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from callroom.audio.recording import RecordingBuffer
from callroom.errors import MediaError

__all__ = ["MP3_BITRATES", "RecordingBuffer", "encode_mp3", "encode_wav", "trim_silence"]

MP3_BITRATES = (8, 16, 24, 32, 40, 48, 56, 64)  # kbit/s that LAME accepts for 8 kHz input
_MP3_CHUNK_SAMPLES = SAMPLE_RATE * 10


def encode_wav(channels: Sequence[Pcm]) -> bytes:
    """A 16-bit PCM WAV file at 8 kHz with one or two channels."""
    frames = _interleave(channels)
    out = io.BytesIO()
    sf.write(out, frames.reshape(-1, len(channels)), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


def encode_wav_tracks(channels: Sequence[Pcm]) -> bytes:
    """A 16-bit PCM WAV file at 8 kHz with one channel per track (any number, equally long)."""
    if not channels or len({c.size for c in channels}) != 1:
        raise ValueError("tracks must be given and equally long")
    out = io.BytesIO()
    sf.write(out, np.stack(channels, axis=1), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


def encode_mp3(channels: Sequence[Pcm], bitrate: int = 32, *, quality: int = 2) -> bytes:
    """A constant-bitrate MP3 at 8 kHz; ``bitrate`` in kbit/s for the whole stream (all channels).

    As with any MP3, the decoded audio is up to ~1,700 samples longer than the input
    (encoder delay and padding to a whole 576-sample frame).
    """
    if bitrate not in MP3_BITRATES:
        raise ValueError(f"bitrate must be one of {MP3_BITRATES} kbit/s at 8 kHz, got {bitrate}")
    frames = _interleave(channels)
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate)
    encoder.set_in_sample_rate(SAMPLE_RATE)
    encoder.set_channels(len(channels))
    encoder.set_quality(quality)
    step = _MP3_CHUNK_SAMPLES * len(channels)
    parts: list[bytes] = []
    try:
        for start in range(0, frames.size, step):
            parts.append(bytes(encoder.encode(frames[start : start + step].tobytes())))
        parts.append(bytes(encoder.flush()))
    except RuntimeError as exc:
        raise MediaError(f"MP3 encoding failed: {exc}") from exc
    return b"".join(parts)


def trim_silence(
    channels: Sequence[Pcm],
    threshold_dbfs: float = -50.0,
    *,
    frame_samples: int = FRAME_SAMPLES,
    keep_samples: int = 0,
) -> list[Pcm]:
    """Cut the silence at the start and end, the same cut on every channel.

    A frame of ``frame_samples`` counts as sound when the RMS of any channel in it reaches
    ``threshold_dbfs`` (0 dBFS = full-scale int16). ``keep_samples`` of the silence are kept on
    each side. All-silent input gives empty arrays.
    """
    _check(channels)
    if frame_samples <= 0 or keep_samples < 0:
        raise ValueError("frame_samples must be positive and keep_samples non-negative")
    length = channels[0].size
    n_frames = -(-length // frame_samples)
    if n_frames == 0:
        return [c.copy() for c in channels]
    threshold = 32768.0 * 10.0 ** (threshold_dbfs / 20.0)
    loud = np.zeros(n_frames, dtype=bool)
    for channel in channels:
        padded = np.zeros(n_frames * frame_samples, dtype=np.float64)
        padded[:length] = channel
        # RMS over the real samples only (the last frame may be short)
        counts = np.full(n_frames, frame_samples, dtype=np.float64)
        counts[-1] = length - (n_frames - 1) * frame_samples
        rms = np.sqrt(np.square(padded).reshape(n_frames, frame_samples).sum(axis=1) / counts)
        loud |= rms >= threshold
    indices = np.flatnonzero(loud)
    if indices.size == 0:
        return [c[:0].copy() for c in channels]
    start = max(0, int(indices[0]) * frame_samples - keep_samples)
    stop = min(length, (int(indices[-1]) + 1) * frame_samples + keep_samples)
    return [c[start:stop].copy() for c in channels]


def _check(channels: Sequence[Pcm]) -> None:
    if len(channels) not in (1, 2):
        raise ValueError(f"a recording has 1 or 2 channels, got {len(channels)}")
    for channel in channels:
        if channel.dtype != np.int16 or channel.ndim != 1:
            raise ValueError("channels must be 1-D int16 arrays")
    if len({c.size for c in channels}) != 1:
        raise ValueError(f"channels differ in length: {[c.size for c in channels]}")


def _interleave(channels: Sequence[Pcm]) -> Pcm:
    _check(channels)
    if len(channels) == 1:
        return np.ascontiguousarray(channels[0])
    return np.stack(channels, axis=1).reshape(-1)
