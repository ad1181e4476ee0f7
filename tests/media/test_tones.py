from __future__ import annotations

import numpy as np
import pytest

from callroom.media.mixer import frame_dbov
from callroom.media.tones import (
    ComfortNoise,
    HoldMusic,
    SamplePlayer,
    ToneGenerator,
    enter_beep,
    exit_beep,
    hold_music,
    sine,
)
from tests.media.audio import rms, tone_level


def test_sine_frequency_and_amplitude() -> None:
    x = sine(1000, 100, amplitude=5000)
    assert x.dtype == np.int16 and len(x) == 800
    assert tone_level(x, 1000) == pytest.approx(5000, rel=0.01)
    assert tone_level(x, 1400) < 10


def test_enter_and_exit_beeps_are_mirror_images() -> None:
    enter, leave = enter_beep(), exit_beep()
    assert len(enter) == len(leave) == 1600
    half = len(enter) // 2
    assert tone_level(enter[:half], 880) > 3000 > tone_level(enter[:half], 1318.5)
    assert tone_level(enter[half:], 1318.5) > 3000 > tone_level(enter[half:], 880)
    assert tone_level(leave[:half], 1318.5) > 3000 and tone_level(leave[half:], 880) > 3000
    assert abs(int(enter[0])) < 50 and abs(int(enter[-1])) < 300  # faded, no click


def test_tone_generator_is_continuous_across_frames() -> None:
    gen = ToneGenerator([440.0], amplitude=6000)
    joined = np.concatenate([gen.next_frame() for _ in range(10)])
    assert np.array_equal(joined, sine(440.0, 200, 6000))


def test_cadenced_ringback() -> None:
    gen = ToneGenerator([440.0, 480.0], amplitude=8000, cadence_ms=(2000, 4000))
    frames = [gen.next_frame() for _ in range(300)]  # 6 s
    on = np.concatenate(frames[:100])
    assert tone_level(on, 440) == pytest.approx(4000, rel=0.02)
    assert tone_level(on, 480) == pytest.approx(4000, rel=0.02)
    assert not np.concatenate(frames[100:300]).any()


def test_comfort_noise_level_determinism_and_colour() -> None:
    a, b = ComfortNoise(level_dbov=-50, seed=3), ComfortNoise(level_dbov=-50, seed=3)
    fa = np.concatenate([a.next_frame() for _ in range(100)])
    fb = np.concatenate([b.next_frame() for _ in range(100)])
    assert np.array_equal(fa, fb)
    assert not np.array_equal(fa, np.concatenate([ComfortNoise(-50, seed=4).next_frame() for _ in range(100)]))
    assert frame_dbov(fa) == pytest.approx(-50, abs=0.5)
    spectrum = np.abs(np.fft.rfft(fa.astype(np.float64))) ** 2
    low, high = spectrum[20:400].mean(), spectrum[1600:2000].mean()  # ~100-1000 Hz vs ~3.2-4 kHz
    assert low > 4 * high  # pink-ish: more energy down low


def test_hold_music_is_deterministic_loopable_and_musical() -> None:
    music = hold_music()
    assert np.array_equal(music, hold_music())
    assert len(music) == 8 * 8000
    assert -20 > frame_dbov(music) > -35
    assert int(np.abs(music).max()) < 32767  # no clipping
    assert abs(int(music[0])) < 100 and abs(int(music[-1])) < 100  # the loop seam is quiet
    # it changes chord every two seconds: the bass note of bar 1 (C3) is absent from bar 2 (A2)
    bar1, bar2 = music[:16000], music[16000:32000]
    c3, a2 = 440 * 2 ** (-21 / 12), 440 * 2 ** (-24 / 12)
    assert tone_level(bar1, c3) > 3 * tone_level(bar2, c3)
    assert tone_level(bar2, a2) > 3 * tone_level(bar1, a2)
    # never silent for long: every 100 ms window has some signal
    windows = music[: len(music) // 800 * 800].reshape(-1, 800)
    assert min(rms(w) for w in windows) > 100


def test_hold_music_player_loops() -> None:
    player = HoldMusic()
    frames = [player.next_frame() for _ in range(400 + 3)]
    assert all(len(f) == 160 for f in frames)
    assert np.array_equal(frames[400], frames[0]) and np.array_equal(frames[402], frames[2])


def test_sample_player_pads_and_finishes() -> None:
    player = SamplePlayer(np.arange(1, 201, dtype=np.int16))
    first = player.next_frame()
    assert not player.finished
    second = player.next_frame()
    assert player.finished
    assert list(first[:3]) == [1, 2, 3] and list(second[:40]) == list(range(161, 201))
    assert not second[40:].any() and len(second) == 160
    looping = SamplePlayer(np.arange(100, dtype=np.int16), loop=True)
    assert list(looping.next_frame()[95:105]) == [95, 96, 97, 98, 99, 0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        SamplePlayer(np.zeros(0, np.int16), loop=True)
