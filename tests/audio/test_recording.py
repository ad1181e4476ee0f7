from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callroom.audio.encode import RecordingBuffer


def frames(n: int, start: int, size: int = 160) -> list[np.ndarray]:
    return [((np.arange(size) + start + i * size) % 30000).astype(np.int16) for i in range(n)]


def test_dual_recording_across_blocks() -> None:
    rec = RecordingBuffer(2, block_samples=1000)  # frames straddle block boundaries
    a, b = frames(20, 0), frames(20, 7000)
    for fa, fb in zip(a, b, strict=True):
        rec.append(fa, fb)
    left, right = rec.arrays()
    assert rec.samples == 3200 and rec.seconds == pytest.approx(0.4)
    assert np.array_equal(left, np.concatenate(a)) and np.array_equal(right, np.concatenate(b))


def test_pause_drops_frames_and_resume_continues() -> None:
    rec = RecordingBuffer(1)
    f = frames(6, 0)
    rec.append(f[0])
    rec.pause()
    assert rec.paused
    rec.append(f[1])
    rec.append(f[2])
    rec.resume()
    rec.append(f[3])
    (mono,) = rec.arrays()
    assert np.array_equal(mono, np.concatenate([f[0], f[3]]))


def test_none_is_silence_on_that_channel() -> None:
    rec = RecordingBuffer(2, block_samples=200)
    rec.append(frames(1, 1)[0], None)
    rec.append(None, frames(1, 2)[0])
    left, right = rec.arrays()
    assert np.array_equal(left[160:], np.zeros(160, np.int16))
    assert np.array_equal(right[:160], np.zeros(160, np.int16))
    assert np.count_nonzero(left[:160]) > 150 and np.count_nonzero(right[160:]) > 150


def test_arrays_are_copies_and_recording_goes_on() -> None:
    rec = RecordingBuffer(1, block_samples=300)
    f = frames(3, 0)
    rec.append(f[0])
    first = rec.arrays()[0]
    first[:] = 0
    rec.append(f[1])
    rec.append(f[2])
    assert np.array_equal(rec.arrays()[0], np.concatenate(f))
    rec.clear()
    assert rec.samples == 0 and rec.arrays()[0].size == 0


def test_frames_are_copied_on_append() -> None:
    rec = RecordingBuffer(1)
    buffer = np.ones(160, np.int16)
    rec.append(buffer)
    buffer[:] = 5  # the caller reuses its frame buffer
    assert np.array_equal(rec.arrays()[0], np.ones(160, np.int16))


def test_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError):
        RecordingBuffer(3)
    rec = RecordingBuffer(2)
    with pytest.raises(ValueError):
        rec.append(np.zeros(160, np.int16))
    with pytest.raises(ValueError):
        rec.append(np.zeros(160, np.int16), np.zeros(80, np.int16))
    with pytest.raises(ValueError):
        rec.append(None, None)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=1, max_value=700),
    st.lists(st.tuples(st.sampled_from(["frame", "pause", "resume"]), st.integers(1, 400)), max_size=60),
)
def test_matches_a_naive_model(block: int, ops: list[tuple[str, int]]) -> None:
    rec = RecordingBuffer(2, block_samples=block)
    model: list[np.ndarray] = []
    paused = False
    for i, (op, size) in enumerate(ops):
        if op == "pause":
            rec.pause()
            paused = True
        elif op == "resume":
            rec.resume()
            paused = False
        else:
            frame = np.full(size, i, np.int16)
            rec.append(frame, -frame)
            if not paused:
                model.append(frame)
    expected = np.concatenate(model) if model else np.zeros(0, np.int16)
    left, right = rec.arrays()
    assert np.array_equal(left, expected) and np.array_equal(right, -expected)
    assert rec.samples == expected.size
