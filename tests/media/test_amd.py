"""Answering-machine detection on synthetic audio, frame by frame with ``now`` (no clock, no engine):
a short "hello" then silence is a person; a long greeting of many bursts, a word that never ends or a
long silence is a machine; a 1 kHz beep ends a machine's greeting, even 20 s in, and ringback-like two-tone
audio is no beep; a hissing line is heard through. (``test_amd_corpus.py`` measures it on speech.)"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from callroom.media.amd import MachineDetector, Verdict, pure_tone
from callroom.media.tones import silence, sine

SPEECH_HZ = (500.0, 900.0)  # two tones at once: voice-like energy, but not a pure tone


def burst(ms: float) -> NDArray[np.int16]:
    return (sine(SPEECH_HZ[0], ms, 4000).astype(np.int32) + sine(SPEECH_HZ[1], ms, 4000)).astype(np.int16)


def greeting(bursts: int, on_ms: float = 400, off_ms: float = 120) -> NDArray[np.int16]:
    return np.concatenate([np.concatenate([burst(on_ms), silence(off_ms)]) for _ in range(bursts)])


def run(audio: NDArray[np.int16], mode: str = "detect", **config: int) -> list[tuple[float, Verdict]]:
    """Feed ``audio`` (then silence up to 12 s) in 20 ms frames; the verdicts with the second each came."""
    total = np.concatenate([audio, silence(max(0.0, 12000 - len(audio) / 8))]) if len(audio) < 96000 else audio
    detector = MachineDetector(mode, config, now=100.0)
    out = []
    for i in range(len(total) // 160):
        now = 100.0 + (i + 1) * 0.02
        out += [(round(now - 100.0, 2), v) for v in detector.feed(total[i * 160 : (i + 1) * 160], now)]
        if detector.done:
            break
    return out


def results(found: list[tuple[float, Verdict]]) -> list[tuple[str, str]]:
    return [(v.kind, v.result) for _, v in found]


def test_a_short_hello_then_silence_is_a_person() -> None:
    found = run(np.concatenate([silence(300), burst(600)]))
    assert results(found) == [("detection", "human")]
    assert 1.66 <= found[0][0] <= 1.8  # 0.9 s of hello, then once the silence after the greeting reached 800 ms


def test_two_short_words_are_still_a_person() -> None:
    assert results(run(np.concatenate([burst(300), silence(150), burst(400)]))) == [("detection", "human")]


def test_a_long_greeting_of_many_words_is_a_machine() -> None:
    found = run(greeting(8))
    assert results(found) == [("detection", "machine")]
    assert found[0][0] < 3.0  # at the fifth word, before the greeting ends
    # with words not counted, the same greeting is a machine for its length
    assert results(run(greeting(10), maximum_number_of_words=50)) == [("detection", "machine")]


def test_a_word_that_never_ends_and_a_long_initial_silence_are_machines() -> None:
    assert results(run(burst(4000), maximum_word_length_millis=2000)) == [("detection", "machine")]
    found = run(silence(10))
    assert results(found) == [("detection", "machine")] and found[0][0] == 3.52  # longer than 3.5 s
    assert results(run(silence(10), initial_silence_millis=6000)) == [("detection", "not_sure")]  # 5 s analysis


def test_the_greeting_ends_with_a_beep_or_with_silence() -> None:
    beep = sine(1000, 500, 6000)
    with_beep = np.concatenate([greeting(8), silence(300), beep])
    found = run(with_beep, "detect_beep")
    assert results(found) == [("detection", "machine"), ("greeting", "beep_detected")]
    assert 8 * 0.52 + 0.3 < found[1][0] < 8 * 0.52 + 0.3 + 0.3  # within the beep's first 300 ms
    assert results(run(with_beep, "greeting_end")) == [("detection", "machine"), ("greeting", "beep_detected")]
    silent_end = run(greeting(8), "greeting_end")
    assert results(silent_end) == [("detection", "machine"), ("greeting", "ended")]
    assert silent_end[1][0] >= 8 * 0.52 + 1.5 - 0.12
    assert results(run(greeting(8), "detect_beep")) == [("detection", "machine")]  # detect_beep: only a beep
    endless = run(greeting(30), "greeting_end", maximum_number_of_words=5, greeting_total_analysis_time_millis=5000)
    assert results(endless) == [("detection", "machine"), ("greeting", "not_sure")]


def test_a_beep_before_any_decision_is_a_machine() -> None:
    found = run(np.concatenate([burst(300), silence(100), sine(1400, 400, 6000)]), "detect_beep")
    assert results(found) == [("detection", "machine"), ("greeting", "beep_detected")]


def test_only_a_pure_tone_is_a_beep() -> None:
    assert pure_tone(sine(1000, 20, 6000), 400, 2600) is not None
    assert abs((pure_tone(sine(1000, 20, 6000), 400, 2600) or 0) - 1000) <= 13
    assert pure_tone(burst(20), 400, 2600) is None  # two tones
    assert pure_tone(sine(350, 20, 6000), 400, 2600) is None  # out of the beep range
    noise = np.random.default_rng(1).normal(0, 3000, 160).astype(np.int16)
    assert pure_tone(noise, 400, 2600) is None


def test_more_words_than_the_maximum_make_a_machine_not_as_many() -> None:
    five = np.concatenate([np.concatenate([burst(200), silence(120)]) for _ in range(5)])
    assert results(run(five)) == [("detection", "human")]  # five words: not more than 5
    assert results(run(np.concatenate([five, burst(200)]))) == [("detection", "machine")]


def test_a_beep_at_the_end_of_a_long_greeting_is_still_heard() -> None:
    twenty = np.concatenate([greeting(38), silence(300), sine(1000, 500, 6000)])  # 20 s, then the beep
    found = run(twenty, "detect_beep")
    assert results(found) == [("detection", "machine"), ("greeting", "beep_detected")]
    assert 20.0 < found[1][0] < 20.4
    assert results(run(twenty, "detect_beep", greeting_total_analysis_time_millis=5000)) == [
        ("detection", "machine")]  # a shorter wait, set by the application, misses it


def test_a_hissing_line_is_not_one_endless_word() -> None:
    rng = np.random.default_rng(7)
    hello = np.concatenate([silence(400), burst(500), silence(6000)]).astype(np.float64)
    noisy = np.clip(hello + rng.normal(0, 400, len(hello)), -32768, 32767).astype(np.int16)  # ~320 mean level
    assert float(np.abs(noisy[:3200].astype(np.int32)).mean()) > 256  # louder than the silence threshold
    assert results(run(noisy)) == [("detection", "human")]
    late = np.concatenate([silence(200), noisy])  # digital silence first, then the hissing line
    assert results(run(late)) == [("detection", "human")]
    assert results(run(np.concatenate([burst(600), silence(2000)]))) == [("detection", "human")]  # at once
