"""Live transcription (``callroom/media/transcribe.py``): the limit on recognisers, and a recogniser process
fed at the tick's pace: how soon its first interim result comes, and that it takes no time from a thread
ticking beside it."""

from __future__ import annotations

import asyncio
import threading
import time
import typing

import numpy as np

from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE
from callroom.audio.tts import synthesize
from callroom.media.ports import AudioLeg
from callroom.media.transcribe import MAX_RECOGNISERS, RECOGNISERS, Transcriber, Transcriptions
from callroom.model import media as m


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
