"""Answering-machine detection measured on the recordings of ``amd_corpus.py`` (espeak-ng voices saying
hello, voicemail greetings of 3-25 s with and without a beep, silent answers, hard ones), by the detector
alone, frame by frame: at least 90 % of the human/machine decisions right, on the whole set and on the
held-out third; every beep found, and none where there is none. The table is printed (``pytest -s``)."""

from __future__ import annotations

import shutil

import pytest

from tests.media.amd_corpus import accuracy, confusion, make, recordings, run_detector, table

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_the_detector_is_right_on_nine_in_ten_recordings() -> None:
    decisions = [run_detector(r) for r in recordings()]
    print("\n" + table(decisions, "the detector alone (detect_beep), no call"))
    counts = confusion(decisions)
    assert sum(counts["human"].values()) >= 20 and sum(counts["machine"].values()) >= 20
    assert accuracy(decisions) >= 0.9
    assert accuracy([d for d in decisions if d.held_out]) >= 0.9
    beeps = [d for d in decisions if d.beep_expected]
    assert sum(d.beep_found for d in beeps) >= 0.9 * len(beeps)
    assert not any(d.beep_found and not d.beep_expected for d in decisions)
    assert max(d.seconds for d in decisions if d.result != "none") <= 5.0  # within the analysis time


def test_the_recordings_are_the_same_every_time() -> None:
    noisy = next(r for r in recordings() if r.spec.noise)
    assert (make(noisy.spec) == noisy.samples).all()  # seeded noise, the same speech
    assert len({r.name for r in recordings()}) == len(recordings())
    assert all(len(r.samples) > 0 for r in recordings())
