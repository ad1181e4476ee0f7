"""Decode WAV or MP3 bytes into the engine's format: 8 kHz mono int16 (or check that a file would decode).

Runs synchronously and holds no state: callers run it in an executor. Channels are averaged,
the sample rate is converted with the band-limited resampler, and decoding stops as soon as the
audio proves longer than ``max_seconds`` (so a long file costs no more than the limit).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import soundfile as sf

from callroom.audio.pcm import SAMPLE_RATE, Pcm, to_int16
from callroom.audio.resample import resample
from callroom.audio.sniff import AudioFormat, sniff, sniff_file
from callroom.errors import EmptyMedia, MediaTooLong, NotAudio, UnsupportedMediaFormat

_BLOCK_FRAMES = 1 << 16


def decode_audio(data: bytes, *, max_seconds: float) -> Pcm:
    """WAV (PCM 8/16/24/32, float, mu-law, A-law) or MP3 bytes -> 8 kHz mono int16 samples."""
    _positive(max_seconds)
    fmt = sniff(data)
    with _open(io.BytesIO(data), fmt) as sound:
        rate = sound.samplerate
        blocks = list(_mono_blocks(sound, fmt, max_seconds))
    if not blocks:
        raise EmptyMedia(f"the {fmt.value.upper()} file contains no audio samples")
    mono = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    del blocks
    return to_int16(resample(mono, rate, SAMPLE_RATE))


def check_audio(source: BinaryIO, *, max_seconds: float) -> AudioFormat:
    """That the seekable file ``source`` decodes as ``decode_audio`` would decode it (the same errors), read a
    block at a time and kept nowhere: a file of any size costs a block of memory. Its format."""
    _positive(max_seconds)
    fmt = sniff_file(source)
    source.seek(0)
    with _open(source, fmt) as sound:
        frames = sum(len(block) for block in _mono_blocks(sound, fmt, max_seconds))
    if frames == 0:
        raise EmptyMedia(f"the {fmt.value.upper()} file contains no audio samples")
    return fmt


def _positive(max_seconds: float) -> None:
    if max_seconds <= 0:
        raise ValueError("max_seconds must be positive")


def _open(source: BinaryIO, fmt: AudioFormat) -> sf.SoundFile:
    try:
        return sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _open_error(fmt, exc) from exc


def _mono_blocks(sound: sf.SoundFile, fmt: AudioFormat, max_seconds: float) -> Iterator[np.ndarray]:
    """The audio of ``sound`` as float32 mono blocks at its own rate, until it proves longer than
    ``max_seconds``."""
    rate = sound.samplerate
    limit = int(max_seconds * rate)
    if fmt is AudioFormat.WAV and sound.frames > limit:
        raise MediaTooLong(f"the audio lasts {sound.frames / rate:.1f} s, over the {max_seconds:g} s limit")
    total = 0
    try:
        while True:
            block = sound.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                return
            total += block.shape[0]
            if total > limit:
                raise MediaTooLong(f"the audio lasts more than the {max_seconds:g} s limit")
            yield block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise NotAudio(f"the {fmt.value.upper()} data is corrupt: {exc}") from exc


def _open_error(fmt: AudioFormat, exc: Exception) -> Exception:
    if fmt is AudioFormat.WAV:
        return UnsupportedMediaFormat(f"this WAV cannot be decoded (codec unsupported or corrupt): {exc}")
    return NotAudio(f"the MPEG audio data cannot be decoded: {exc}")
