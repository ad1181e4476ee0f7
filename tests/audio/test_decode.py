from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import lameenc
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from callroom.audio.decode import check_audio, decode_audio
from callroom.audio.sniff import AudioFormat, mpeg_frame_length, sniff, sniff_file
from callroom.errors import EmptyMedia, MediaError, MediaTooLong, NotAudio, UnsupportedMediaFormat
from tests.audio.signals import dominant_freq, rms, tone


def wav_bytes(x: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    out = io.BytesIO()
    sf.write(out, x, rate, format="WAV", subtype=subtype)
    return out.getvalue()


def mp3_bytes(x: np.ndarray, rate: int, bitrate: int = 64) -> bytes:
    """x: float (frames,) or (frames, channels)."""
    frames = x if x.ndim == 2 else x[:, None]
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate)
    encoder.set_in_sample_rate(rate)
    encoder.set_channels(frames.shape[1])
    pcm = np.round(frames * 32767).astype(np.int16).reshape(-1)
    return bytes(encoder.encode(pcm.tobytes())) + bytes(encoder.flush())


WAV_SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"]


@pytest.mark.parametrize("subtype", WAV_SUBTYPES)
def test_wav_codecs(subtype: str) -> None:
    audio = decode_audio(wav_bytes(tone(440, 1.0, 16000), 16000, subtype), max_seconds=10)
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert audio.size == 8000
    assert dominant_freq(audio, 8000) == pytest.approx(440, abs=2)
    assert rms(audio) == pytest.approx(0.5 / np.sqrt(2) * 32768, rel=0.03)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_any_rate_and_channel_count(rate: int, channels: int) -> None:
    x = np.tile(tone(1000, 0.5, rate)[:, None], (1, channels))
    audio = decode_audio(wav_bytes(x, rate), max_seconds=10)
    assert audio.size == 4000
    assert dominant_freq(audio, 8000) == pytest.approx(1000, abs=3)


def test_downmix_averages_channels() -> None:
    left = tone(600, 0.5, 8000)
    audio = decode_audio(wav_bytes(np.stack([left, np.zeros_like(left)], axis=1), 8000), max_seconds=10)
    assert rms(audio) == pytest.approx(rms(left) * 32768 / 2, rel=0.01)


def test_float_wav_beyond_full_scale_is_clipped() -> None:
    audio = decode_audio(wav_bytes(tone(500, 0.2, 8000, amplitude=3.0), 8000, "FLOAT"), max_seconds=10)
    assert audio.max() == 32767 and audio.min() == -32768


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (22050, 1), (8000, 1), (48000, 2)])
def test_mp3(rate: int, channels: int) -> None:
    x = np.tile(tone(800, 1.0, rate)[:, None], (1, channels))
    data = mp3_bytes(x, rate)
    assert sniff(data) is AudioFormat.MP3
    audio = decode_audio(data, max_seconds=10)
    assert 8000 <= audio.size <= 8000 + 2400  # encoder delay and frame padding
    assert dominant_freq(audio, 8000) == pytest.approx(800, abs=3)
    assert rms(audio[2000:6000]) == pytest.approx(0.5 / np.sqrt(2) * 32768, rel=0.1)


def test_mp3_behind_an_id3_tag() -> None:
    frame = b"TIT2" + (9).to_bytes(4, "big") + b"\x00\x00" + b"\x03Welcome"
    padding = b"\x00" * 500
    size = len(frame) + len(padding)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    data = b"ID3\x03\x00\x00" + syncsafe + frame + padding + mp3_bytes(tone(800, 0.5, 16000), 16000)
    assert sniff(data) is AudioFormat.MP3
    assert dominant_freq(decode_audio(data, max_seconds=10), 8000) == pytest.approx(800, abs=3)


def test_too_long() -> None:
    with pytest.raises(MediaTooLong):
        decode_audio(wav_bytes(tone(440, 3.0, 8000), 8000), max_seconds=2.5)
    with pytest.raises(MediaTooLong):
        decode_audio(mp3_bytes(tone(440, 3.0, 16000), 16000), max_seconds=2.5)
    assert decode_audio(wav_bytes(tone(440, 2.0, 8000), 8000), max_seconds=2.0).size == 16000


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>", "HTML"),
        (b"  \n<html lang='en'><body>x</body></html>", "HTML"),
        (b'{"error": "not found"}', "JSON"),
        (b"Access denied\n", "text"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "RIFF"),
        (np.random.default_rng(7).bytes(20000), "binary"),
        (b"\xff\xfb\x90\x00" + bytes(50), "binary"),  # one plausible MP3 header, then nothing valid
    ],
)
def test_not_audio(data: bytes, words: str) -> None:
    with pytest.raises(NotAudio, match=words):
        decode_audio(data, max_seconds=10)


def test_unsupported_formats() -> None:
    flac = io.BytesIO()
    sf.write(flac, tone(440, 0.2, 8000), 8000, format="FLAC")
    with pytest.raises(UnsupportedMediaFormat, match="FLAC"):
        decode_audio(flac.getvalue(), max_seconds=10)
    ogg = io.BytesIO()
    sf.write(ogg, tone(440, 0.2, 8000), 8000, format="OGG")
    with pytest.raises(UnsupportedMediaFormat, match="Ogg"):
        decode_audio(ogg.getvalue(), max_seconds=10)
    with pytest.raises(UnsupportedMediaFormat, match="MP4"):
        decode_audio(b"\x00\x00\x00\x20ftypM4A " + bytes(100), max_seconds=10)
    with pytest.raises(UnsupportedMediaFormat):
        decode_audio(b"RIFF\x24\x00\x00\x00WAVEjunk", max_seconds=10)


def test_empty() -> None:
    with pytest.raises(EmptyMedia):
        decode_audio(b"", max_seconds=10)
    with pytest.raises(EmptyMedia, match="no audio samples"):
        decode_audio(wav_bytes(np.zeros(0), 8000), max_seconds=10)


def test_mpeg_frame_length() -> None:
    assert mpeg_frame_length(b"\xff\xfb\x90\x00") == 417  # MPEG-1 Layer III 128 kbit/s 44.1 kHz
    assert mpeg_frame_length(b"\xff\xfb\x92\x00") == 418  # ... with padding
    assert mpeg_frame_length(b"\xff\xe3\x48\x00") == 288  # MPEG-2.5 32 kbit/s 8 kHz
    assert mpeg_frame_length(b"\xff\xfb\xf0\x00") is None  # bitrate index 15
    assert mpeg_frame_length(b"\xff\xfb\x9c\x00") is None  # sample rate index 3
    assert mpeg_frame_length(b"\xff\xeb\x90\x00") is None  # reserved version


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_media_errors(data: bytes) -> None:
    try:
        audio = decode_audio(data, max_seconds=5)
    except MediaError:
        return
    assert audio.dtype == np.int16


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=0, max_value=255))
def test_damaged_audio_raises_only_media_errors(cut: int, flip: int) -> None:
    for original in (wav_bytes(tone(440, 0.3, 8000), 8000), mp3_bytes(tone(440, 0.3, 8000), 8000)):
        damaged = bytearray(original[:cut])
        if damaged:
            damaged[flip % len(damaged)] ^= 0xFF
        with contextlib.suppress(MediaError):
            decode_audio(bytes(damaged), max_seconds=5)


def _id3(size: int) -> bytes:
    """An ID3v2 tag of ``size`` bytes after its header (padding only)."""
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + bytes(size)


def _outcome(run: Callable[[], object]) -> object:
    """What ``run`` returns, or the class of the error it raises."""
    try:
        return run()
    except (MediaError, ValueError) as exc:
        return type(exc)


@pytest.mark.parametrize("case", ["wav", "stereo-mp3", "mp3-after-a-long-tag", "tag-then-noise", "too-long", "html",
                                  "flac", "empty", "no-samples", "cut-wav"])  # fmt: skip
def test_a_file_is_checked_as_its_bytes_would_be_decoded(case: str) -> None:
    """``check_audio`` (an upload, read from its file a block at a time) agrees with ``decode_audio``."""
    stereo = np.stack([tone(440, 0.5, 16000), tone(660, 0.5, 16000)], axis=1)
    flac = io.BytesIO()
    sf.write(flac, tone(440, 0.2, 8000), 8000, format="FLAC")
    wav = wav_bytes(tone(440, 0.5, 8000), 8000)
    data = {
        "wav": wav,
        "stereo-mp3": mp3_bytes(stereo, 16000),
        "mp3-after-a-long-tag": _id3(200_000) + mp3_bytes(tone(440, 0.5, 16000), 16000),  # past the head read
        "tag-then-noise": _id3(200_000) + np.random.default_rng(3).bytes(5000),
        "too-long": wav_bytes(tone(440, 3.0, 8000), 8000),
        "html": b"<html><body>Not found</body></html>",
        "flac": flac.getvalue(),
        "empty": b"",
        "no-samples": wav_bytes(np.zeros(0), 8000),
        "cut-wav": wav[:30],
    }[case]
    decoded = _outcome(lambda: decode_audio(data, max_seconds=2))
    checked = _outcome(lambda: check_audio(io.BytesIO(data), max_seconds=2))
    assert checked == (decoded if isinstance(decoded, type) else sniff(data)), case
    if data:
        assert _outcome(lambda: sniff_file(io.BytesIO(data))) == _outcome(lambda: sniff(data))
