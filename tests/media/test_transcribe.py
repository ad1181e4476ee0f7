"""The pure parts of live transcription (``callroom/media/transcribe.py``), without sockets: the 8 -> 16 kHz
interpolation frame by frame, the bounded queue between the tick and the recogniser, the shaping of a
recogniser's result; and the recogniser itself on speech synthesized here, run on this thread."""

from __future__ import annotations

import asyncio
import threading
import time
import typing

import numpy as np

from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE
from callroom.audio.tts import synthesize
from callroom.media.ports import AudioLeg
from callroom.media.tones import sine
from callroom.media.transcribe import (
    MAX_RECOGNISERS,
    RECOGNISERS,
    DecoderPool,
    FrameQueue,
    Hypothesis,
    Job,
    Transcriber,
    Transcriptions,
    Upsampler,
    hypothesis,
    recognise,
)
from callroom.model import media as m
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


def test_no_more_tracks_are_transcribed_than_the_limit() -> None:
    facts: list[m.MediaFact] = []
    legs = {f"c{i}": typing.cast(AudioLeg, object()) for i in range(MAX_RECOGNISERS + 1)}

    async def run() -> None:
        t = Transcriptions(lambda: legs, facts.append)
        for i in range(MAX_RECOGNISERS // 2):
            t.start(m.StartTranscription(f"j{i}", f"c{i}", "both"))
        t.start(m.StartTranscription("over", f"c{MAX_RECOGNISERS}", "inbound"))
        t.after_mix({}, {}, 0.0)
        assert sum(len(ts) for ts in t.running.values()) == MAX_RECOGNISERS
        assert f"c{MAX_RECOGNISERS}" not in t.running
        workers = [tr for ts in t.running.values() for tr in ts]
        await t.aclose()  # stops them all and waits for their threads
        assert not t.running and not any(tr.alive for tr in workers)

    asyncio.run(run())


def test_an_interim_result_comes_within_a_second_of_the_start_of_speech() -> None:
    """Frames pushed at the tick's pace (20 ms) while the recogniser process runs, as on a call: the first
    partial hypothesis of a phrase arrives less than a second after the phrase's first sample was pushed.
    (A media process's first transcription also waits for its recogniser process to start: warmed here.)"""
    warm = Transcriber("warm", "inbound", False, lambda fact: None)
    warm.start()
    warm.stop()
    warm.join()
    speech = synthesize("please transfer me to the billing department", voice="male", language="en-US")
    pcm = np.concatenate((np.zeros(SAMPLE_RATE // 2, np.int16), speech, np.zeros(SAMPLE_RATE, np.int16)))
    onset_at = SAMPLE_RATE // 2 + int(np.argmax(np.abs(speech) > 500))  # the first audible sample
    first_interim: list[float] = []
    finals: list[str] = []
    got = threading.Event()

    def post(fact: m.MediaFact) -> None:
        if isinstance(fact, m.Transcribed):
            if fact.is_final:
                finals.append(fact.transcript)
            elif not first_interim:
                first_interim.append(time.monotonic())
                got.set()

    t = Transcriber("job", "inbound", True, post)
    t.start()
    started = time.monotonic()
    onset: float | None = None
    for n, i in enumerate(range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES)):
        time.sleep(max(0.0, started + n * 0.02 - time.monotonic()))
        t.push(pcm[i : i + FRAME_SAMPLES])
        if onset is None and i + FRAME_SAMPLES > onset_at:
            onset = time.monotonic()
    t.stop()
    t.join()
    RECOGNISERS.close()
    assert onset is not None and first_interim, "no interim result"
    assert first_interim[0] - onset < 1.0, f"first interim {first_interim[0] - onset:.2f} s after speech began"
    assert finals  # and the utterance's final result after it


def test_recognising_does_not_stop_a_ticking_thread() -> None:
    """pocketsphinx holds the GIL while it decodes (an utterance's final decode took ~1 s here, and a
    thread ticking every 20 ms beside it was that late): the recogniser runs in a process of its own, so a
    thread of this process keeps its pace while speech is recognised."""
    speech = synthesize("please transfer me to the billing department and call me back tomorrow morning",
                        voice="male", language="en-US")
    pcm = np.concatenate((speech, speech, np.zeros(SAMPLE_RATE, np.int16)))
    finals = threading.Event()
    t = Transcriber("job", "inbound", False, lambda fact: finals.set())
    t.start()
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        t.push(pcm[i : i + FRAME_SAMPLES])  # all at once: the recogniser has seconds of work queued
    t.stop()
    late: list[float] = []
    due = time.monotonic()
    while not finals.is_set() or t.alive:
        due += 0.02
        time.sleep(max(0.0, due - time.monotonic()))
        late.append(time.monotonic() - due)
        assert len(late) < 3000, "no result within a minute"
    t.join()
    RECOGNISERS.close()
    assert finals.is_set()
    assert max(late) < 0.3, f"a tick was {max(late) * 1000:.0f} ms late while the recogniser worked"
