"""A call's recording with ``silence_timeout_secs`` (dial's ``record_timeout_secs``): it ends after that
much silence from the far end, counted only once the far end has spoken."""

from __future__ import annotations

import numpy as np

from callroom.media.recorders import Recorder
from callroom.model.media import StartRecording

LOUD = (3000 * np.sin(2 * np.pi * 440 * np.arange(160) / 8000)).astype(np.int16)
QUIET = np.zeros(160, dtype=np.int16)


def _frames(rec: Recorder, frame: np.ndarray, n: int) -> None:
    for _ in range(n):
        rec.capture({"a": frame}, {"a": QUIET}, None)


def test_silence_counts_only_after_speech_and_speech_resets_it() -> None:
    rec = Recorder(StartRecording("r", "/tmp/r", "wav", "single", call_control_id="a", silence_timeout_secs=1), 0.0)
    _frames(rec, QUIET, 200)  # four seconds before anyone spoke
    assert not rec.full()
    _frames(rec, LOUD, 10)
    _frames(rec, QUIET, 49)
    assert not rec.full()
    _frames(rec, LOUD, 1)  # speech again: the silence starts over
    _frames(rec, QUIET, 49)
    assert not rec.full()
    _frames(rec, QUIET, 1)
    assert rec.full()


def test_without_a_timeout_silence_never_ends_it() -> None:
    rec = Recorder(StartRecording("r", "/tmp/r", "wav", "single", call_control_id="a"), 0.0)
    _frames(rec, LOUD, 5)
    _frames(rec, QUIET, 500)
    assert not rec.full()
