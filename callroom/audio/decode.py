"""Decode WAV or MP3 bytes into the engine's format: 8 kHz mono int16.

Runs synchronously and holds no state: callers run it in an executor. Channels are averaged,
the sample rate is converted with the band-limited resampler, and decoding stops as soon as the
audio proves longer than ``max_seconds`` (so a long file costs no more than the limit).
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from callroom.audio.pcm import SAMPLE_RATE, Pcm, to_int16
from callroom.audio.resample import resample
from callroom.audio.sniff import AudioFormat, sniff
from callroom.errors import EmptyMedia, MediaTooLong, NotAudio, UnsupportedMediaFormat

_BLOCK_FRAMES = 1 << 16


def decode_audio(data: bytes, *, max_seconds: float) -> Pcm:
    """WAV (PCM 8/16/24/32, float, mu-law, A-law) or MP3 bytes -> 8 kHz mono int16 samples."""
    if max_seconds <= 0:
        raise ValueError("max_seconds must be positive")
    fmt = sniff(data)
    try:
        sound = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _open_error(fmt, exc) from exc
    with sound:
        rate = sound.samplerate
        limit = int(max_seconds * rate)
        declared = sound.frames
        if fmt is AudioFormat.WAV and declared > limit:
            raise MediaTooLong(f"the audio lasts {declared / rate:.1f} s, over the {max_seconds:g} s limit")
        blocks: list[np.ndarray] = []
        total = 0
        try:
            while True:
                block = sound.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                total += block.shape[0]
                if total > limit:
                    raise MediaTooLong(f"the audio lasts more than the {max_seconds:g} s limit")
                blocks.append(block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0])
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise NotAudio(f"the {fmt.value.upper()} data is corrupt: {exc}") from exc
    if total == 0:
        raise EmptyMedia(f"the {fmt.value.upper()} file contains no audio samples")
    mono = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    del blocks
    return to_int16(resample(mono, rate, SAMPLE_RATE))


def _open_error(fmt: AudioFormat, exc: Exception) -> Exception:
    if fmt is AudioFormat.WAV:
        return UnsupportedMediaFormat(f"this WAV cannot be decoded (codec unsupported or corrupt): {exc}")
    return NotAudio(f"the MPEG audio data cannot be decoded: {exc}")
