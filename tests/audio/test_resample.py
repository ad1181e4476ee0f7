from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callroom.audio.pcm import to_float, to_int16
from callroom.audio.resample import resample
from tests.audio.signals import rms, tone

RATES = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 96000, 7350]


@pytest.mark.parametrize("src", RATES)
def test_length_and_passband_tone(src: int) -> None:
    x = tone(1000, 1.0, src)
    y = resample(x, src, 8000)
    assert y.dtype == np.float32
    assert y.size == math.ceil(x.size * 8000 / src)
    expected = tone(1000, y.size / 8000, 8000)
    inner = slice(200, -200)  # the edges see the zero padding
    assert np.max(np.abs(y[inner] - expected[inner])) < 1e-3


@pytest.mark.parametrize("src", [16000, 22050, 44100, 48000])
@pytest.mark.parametrize("freq", [4500, 6000, 7000])
def test_above_new_nyquist_is_removed(src: int, freq: int) -> None:
    y = resample(tone(freq, 1.0, src), src, 8000)
    assert 20 * math.log10(rms(y[200:-200]) / rms(tone(freq, 1.0, src)) + 1e-12) < -70


@pytest.mark.parametrize("freq", [300, 1000, 3000])
def test_passband_is_flat(freq: int) -> None:
    y = resample(tone(freq, 1.0, 44100), 44100, 8000)
    assert abs(20 * math.log10(rms(y[200:-200]) / rms(tone(freq, 1.0, 8000)))) < 0.05


def test_upsampling_interpolates() -> None:
    y = resample(tone(700, 0.5, 8000), 8000, 48000)
    expected = tone(700, y.size / 48000, 48000)
    assert np.max(np.abs(y[1000:-1000] - expected[1000:-1000])) < 1e-3


def test_identity_and_empty() -> None:
    x = np.arange(10, dtype=np.float32)
    assert np.array_equal(resample(x, 8000, 8000), x)
    assert resample(np.zeros(0), 44100, 8000).size == 0


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        resample(np.zeros(10), 0, 8000)
    with pytest.raises(ValueError):
        resample(np.zeros((2, 10)), 16000, 8000)


@settings(max_examples=25, deadline=None)
@given(
    src=st.integers(min_value=4000, max_value=96000),
    n=st.integers(min_value=1, max_value=3000),
)
def test_any_rate_gives_bounded_output_of_the_right_length(src: int, n: int) -> None:
    x = np.random.default_rng(n).uniform(-0.5, 0.5, n)
    y = resample(x, src, 8000)
    assert y.size == math.ceil(n * 8000 / src)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y), initial=0.0) < 1.5


def test_int16_conversion_rounds_and_clips() -> None:
    converted = to_int16(np.array([0.0, 0.5, -1.0, 1.0, 2.0, -3.0]))
    assert converted.tolist() == [0, 16384, -32768, 32767, 32767, -32768]
    assert np.array_equal(
        to_int16(to_float(np.array([-32768, -1, 0, 1, 32767], np.int16))), np.array([-32768, -1, 0, 1, 32767], np.int16)
    )
