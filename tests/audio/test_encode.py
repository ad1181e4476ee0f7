from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from callroom.audio.encode import MP3_BITRATES, encode_mp3, encode_wav, trim_silence
from callroom.audio.sniff import AudioFormat, sniff
from tests.audio.signals import band_power_db, tone16

SOX = shutil.which("sox")


def dual() -> list[np.ndarray]:
    return [tone16(500, 2.0), tone16(1300, 2.0)]


def sox_info(path: Path) -> dict[str, str]:
    assert SOX is not None
    out = subprocess.run([SOX, "--i", str(path)], capture_output=True, text=True, check=True).stdout
    return {m[0].strip(): m[1].strip() for m in re.findall(r"^([^:\n]+):(.*)$", out, re.MULTILINE)}


def sox_reads_mp3() -> bool:
    if SOX is None:
        return False
    help_text = subprocess.run([SOX, "-h"], capture_output=True, text=True).stdout
    return " mp3" in help_text.split("AUDIO FILE FORMATS:")[-1].split("\n")[0]


def assert_channels_separate(left: np.ndarray, right: np.ndarray) -> None:
    assert band_power_db(left, 8000, 500) - band_power_db(left, 8000, 1300) > 30
    assert band_power_db(right, 8000, 1300) - band_power_db(right, 8000, 500) > 30


def test_wav_single_round_trip() -> None:
    x = tone16(500, 1.5)
    data = encode_wav([x])
    back, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 8000 and back.ndim == 1
    assert np.array_equal(back, x)


def test_wav_dual_keeps_channels_in_order() -> None:
    data = encode_wav(dual())
    back, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    assert rate == 8000 and back.shape == (16000, 2)
    assert np.array_equal(back[:, 0], dual()[0]) and np.array_equal(back[:, 1], dual()[1])
    assert_channels_separate(back[:, 0], back[:, 1])


@pytest.mark.skipif(SOX is None, reason="sox is not installed")
@pytest.mark.parametrize("n_channels", [1, 2])
def test_wav_per_sox(tmp_path: Path, n_channels: int) -> None:
    path = tmp_path / "rec.wav"
    path.write_bytes(encode_wav(dual()[:n_channels]))
    info = sox_info(path)
    assert info["Channels"] == str(n_channels)
    assert info["Sample Rate"] == "8000"
    assert info["Precision"] == "16-bit"
    assert info["Duration"].startswith("00:00:02.00 = 16000 samples")


@pytest.mark.parametrize("n_channels", [1, 2])
def test_mp3_decodes_with_right_shape(n_channels: int) -> None:
    data = encode_mp3(dual()[:n_channels], bitrate=32)
    assert sniff(data) is AudioFormat.MP3
    back, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    assert rate == 8000 and back.shape[1] == n_channels
    assert 16000 <= back.shape[0] <= 16000 + 1800
    assert len(data) == pytest.approx(32000 / 8 * 2.0, rel=0.2)


def test_mp3_dual_keeps_tones_on_their_channels() -> None:
    back, _ = sf.read(io.BytesIO(encode_mp3(dual(), bitrate=48)), dtype="int16", always_2d=True)
    assert_channels_separate(back[2000:14000, 0], back[2000:14000, 1])


def test_mp3_swapped_input_swaps_channels() -> None:
    back, _ = sf.read(io.BytesIO(encode_mp3(dual()[::-1])), dtype="int16", always_2d=True)
    assert_channels_separate(back[2000:14000, 1], back[2000:14000, 0])


@pytest.mark.skipif(not sox_reads_mp3(), reason="this sox has no MP3 support (libsox-fmt-mp3)")
def test_mp3_per_sox(tmp_path: Path) -> None:
    path = tmp_path / "rec.mp3"
    path.write_bytes(encode_mp3(dual()))
    info = sox_info(path)
    assert info["Channels"] == "2" and info["Sample Rate"] == "8000"


def test_mp3_bitrates() -> None:
    sizes = [len(encode_mp3([tone16(500, 2.0)], bitrate=b)) for b in MP3_BITRATES]
    assert sizes == sorted(sizes)
    with pytest.raises(ValueError):
        encode_mp3([tone16(500, 0.1)], bitrate=128)


@pytest.mark.parametrize("encode", [encode_wav, encode_mp3])
def test_bad_channel_lists(encode: object) -> None:
    assert callable(encode)
    with pytest.raises(ValueError):
        encode([tone16(500, 0.1)] * 3)
    with pytest.raises(ValueError):
        encode([tone16(500, 0.1), tone16(500, 0.2)])
    with pytest.raises(ValueError):
        encode([tone16(500, 0.1).astype(np.float32)])


def test_empty_recording_still_encodes() -> None:
    empty = np.zeros(0, np.int16)
    back, rate = sf.read(io.BytesIO(encode_wav([empty, empty])), always_2d=True)
    assert rate == 8000 and back.shape == (0, 2)


def test_trim_silence_cuts_the_same_on_all_channels() -> None:
    silence = np.zeros(8000, np.int16)
    first = np.concatenate([silence, tone16(500, 0.5), np.zeros(12000, np.int16)])
    second = np.concatenate([np.zeros(12000, np.int16), tone16(1300, 0.5), silence])
    trimmed = trim_silence([first, second])
    assert len(trimmed) == 2 and trimmed[0].size == trimmed[1].size
    # sound runs from sample 8000 (channel 1) to 16000 (channel 2), rounded out to 20 ms frames
    assert trimmed[0].size == 8000
    assert np.array_equal(trimmed[0], first[8000:16000])
    assert np.array_equal(trimmed[1], second[8000:16000])


def test_trim_silence_threshold_and_keep() -> None:
    quiet = tone16(500, 0.5, amplitude=10 ** (-60 / 20))  # about -63 dBFS RMS
    x = np.concatenate([np.zeros(1600, np.int16), quiet, tone16(500, 0.5), np.zeros(1600, np.int16)])
    assert trim_silence([x])[0].size == 4000
    assert trim_silence([x], threshold_dbfs=-70)[0].size == 8000
    kept = trim_silence([x], keep_samples=800)[0]
    assert np.array_equal(kept, x[4800:10400])


def test_trim_silence_all_silent_and_empty() -> None:
    assert [c.size for c in trim_silence([np.zeros(800, np.int16)] * 2)] == [0, 0]
    assert trim_silence([np.zeros(0, np.int16)])[0].size == 0
    noise = np.full(100, 2000, np.int16)  # a partial frame at the end still counts
    assert trim_silence([np.concatenate([np.zeros(320, np.int16), noise])])[0].size == 100
