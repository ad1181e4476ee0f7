"""What a recogniser process does (``callroom/media/recognise.py``), run on this thread: the 8 -> 16 kHz
interpolation frame by frame, the bounded queue, the shaping of a recogniser's result, the decoder pool,
and the recogniser itself on speech synthesized here and on silence."""

from __future__ import annotations

import threading

import numpy as np

from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE
from callroom.audio.tts import synthesize
from callroom.media.recognise import DecoderPool, FrameQueue, Hypothesis, Job, Upsampler, hypothesis, recognise
from callroom.media.tones import sine
from tests.media.audio import tone_level


def test_upsampling_keeps_a_tone_and_its_level_across_frame_edges() -> None:
    tone = sine(1000, 400, amplitude=8000)
    up = Upsampler()
    out = np.concatenate([up(tone[i : i + FRAME_SAMPLES]) for i in range(0, len(tone), FRAME_SAMPLES)])
    assert out.dtype == np.int16 and len(out) == 2 * len(tone)
    steady = out[1600:]
    assert tone_level(steady, 1000, rate=16000) > 0.8 * tone_level(tone[800:], 1000)
    # no image of the tone at 8000 - 1000 Hz (what zero-stuffing alone leaves), no clicks at frame edges
    assert tone_level(steady, 7000, rate=16000) < 0.02 * tone_level(steady, 1000, rate=16000)
    assert np.abs(np.diff(steady.astype(np.int32))).max() < 8000 * 2 * np.pi * 1000 / 16000 * 1.2


def test_the_queue_drops_the_oldest_audio_rather_than_wait() -> None:
    q = FrameQueue(limit=3)
    frames = [np.full(4, i, dtype=np.int16) for i in range(5)]
    for f in frames:
        q.put(f)
    assert q.dropped == 2
    got = q.get()
    assert got is not None and [int(f[0]) for f in got] == [2, 3, 4]
    q.close()
    assert q.get() is None


def test_a_waiting_worker_is_woken_by_a_frame_and_by_close() -> None:
    q = FrameQueue()
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.extend([q.get(), q.get()]))
    worker.start()
    q.put(np.zeros(4, dtype=np.int16))
    q.close()
    worker.join()
    assert len(seen) == 2 and seen[1] is None


def test_a_result_is_shaped_without_fillers_and_with_a_bounded_confidence() -> None:
    h = hypothesis("<s> hello(2) [noise] world <sil> </s>", -4000, 100, True)
    assert h is not None and h.transcript == "hello world" and h.is_final
    assert 0.0 <= h.confidence <= 1.0
    assert hypothesis("<sil> [breath]", -10, 5, False) is None
    worse = hypothesis("hello", -400000, 100, True)
    assert worse is not None and worse.confidence < h.confidence


def test_speech_is_recognised_and_silence_reports_nothing() -> None:
    speech = synthesize("one two three four five", voice="male", language="en-US")
    pcm = np.concatenate((np.zeros(SAMPLE_RATE, np.int16), speech, np.zeros(SAMPLE_RATE, np.int16)))
    results: list[Hypothesis] = []
    job = Job(True, results.append)
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        job.push(pcm[i : i + FRAME_SAMPLES])
    for _ in range(50):
        job.push(None)  # a tick without the leg's audio is silence
    job.queue.close()
    recognise(job)  # on this thread
    assert results and results[-1].is_final
    assert results[-1].transcript  # what it heard; its accuracy is the API test's and bench's business

    quiet: list[Hypothesis] = []
    job = Job(True, quiet.append)
    for _ in range(100):
        job.push(None)
    job.queue.close()
    recognise(job)
    assert quiet == []


def test_decoders_are_kept_for_the_next_transcription() -> None:
    pool = DecoderPool()
    first = pool.take()
    pool.give_back(first)
    assert pool.take() is first
    assert pool.take() is not first  # none free: a new one
