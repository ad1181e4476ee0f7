"""A virtual phone's audio leg on its own, frame by frame: a tone gated into its cadence then a beep, and
speech handed over once prepared (silence until then), said once, then its beep, then silence."""

from __future__ import annotations

import numpy as np

from callroom.media.ports import FRAME_SAMPLES
from callroom.media.tones import sine
from callroom.media.virtual_audio import VirtualAudioLeg
from tests.media.audio import tone_level


def _pull(leg: VirtualAudioLeg, frames: int) -> np.ndarray:
    out = [leg.pull_frame() for _ in range(frames)]
    assert all(f is not None and len(f) == FRAME_SAMPLES for f in out)
    return np.concatenate([f for f in out if f is not None])


def test_a_cadence_gates_the_tone_then_the_beep_then_silence() -> None:
    leg = VirtualAudioLeg((500.0,), cadence_ms=(100, 100, 100), beep_hz=1000.0)
    audio = _pull(leg, 50)
    assert tone_level(audio[:800], 500) > 3000 and tone_level(audio[1600:2400], 500) > 3000
    assert not audio[800:1600].any()
    assert tone_level(audio[2400:6400], 1000) > 3000  # the 500 ms beep
    assert not audio[6400:].any()


def test_speech_is_said_once_when_ready_then_the_beep() -> None:
    leg = VirtualAudioLeg(beep_hz=1400.0, speaks=True)
    assert leg.speaking and not _pull(leg, 10).any()  # silent while its speech is prepared
    words = sine(700, 300, amplitude=5000)[:2345]  # not a whole number of frames
    leg.speak(words)
    audio = _pull(leg, 60)
    assert np.array_equal(audio[: len(words)], words) and not audio[len(words) : 2400].any()
    assert tone_level(audio[2400:6400], 1400) > 3000
    assert not audio[6400:].any() and not leg.speaking
    leg.speak(words)  # said once: a second hand-over changes nothing
    assert not _pull(leg, 10).any()


def test_speech_that_could_not_be_had_still_ends_in_the_beep() -> None:
    leg = VirtualAudioLeg(beep_hz=1000.0, speaks=True)
    leg.speak(np.zeros(0, dtype=np.int16))
    assert tone_level(_pull(leg, 25), 1000) > 3000
