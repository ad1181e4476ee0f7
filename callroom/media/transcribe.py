"""Live transcription of a call's audio with pocketsphinx, off the 20 ms tick and out of the media process.

The tick does only cheap work: each running transcription appends a copy of the leg's 20 ms frames of the
tracks it transcribes to a bounded queue (``FrameQueue``: when the recogniser falls behind, the oldest audio
is dropped and counted, the tick never waits). A thread per transcription sends the queued audio to a
recogniser process (``RecogniserProcess``: ``media/recognise.py`` run as a program; kept in ``RECOGNISERS``
for the next transcription), which upsamples it to 16 kHz, finds utterances and decodes them with
pocketsphinx (``recognise.recognise``). Partial hypotheses (``is_final`` false)
and the final one at the end of each utterance come back over the process's socket, and to the event loop
with ``call_soon_threadsafe``, reported as ``Transcribed`` facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection

import numpy as np

from callroom.media.ports import AudioLeg, Frame
from callroom.media.recognise import SILENCE, FrameQueue, Hypothesis
from callroom.model import media as m

log = logging.getLogger(__name__)

WAIT_FOR_ANSWER_SECONDS = 900.0
# A recogniser process holds the model's ~90 MB and takes ~1 s to start (its decoder ~0.35 s of CPU): they
# are kept for the next transcription, and at most this many tracks are transcribed at once by a media process.
MAX_RECOGNISERS = 8


class Transcriber:
    """One transcription of one track of a leg. The tick feeds ``push`` (a queue); a thread here sends the
    queued audio to a recogniser process (``RecogniserProcess``) and another posts what comes back.

    pocketsphinx holds Python's GIL while it decodes (an utterance's final decode takes up to a second), so
    a recogniser in a thread of the media process stopped its 20 ms tick for that long: every call in the
    process lost audio. In a process of its own it takes none of the media process's time."""

    def __init__(self, job_id: str, track: str, interim: bool, post: Callable[[m.MediaFact], None]) -> None:
        self.job_id = job_id
        self.track = track  # inbound | outbound
        self.interim = interim
        self.queue = FrameQueue()
        self._post = post
        self._thread: threading.Thread | None = None

    def push(self, frame: Frame | None) -> None:
        """The tick's share: a copy of the 8 kHz frame queued (the mixer reuses its buffers)."""
        self.queue.put(SILENCE if frame is None else frame.copy())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"asr-{self.job_id[:8]}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.queue.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def report(self, hyp: Hypothesis) -> None:
        self._post(m.Transcribed(self.job_id, hyp.transcript, hyp.confidence, hyp.is_final, self.track))

    def _run(self) -> None:
        try:
            recogniser = RECOGNISERS.take()
        except Exception:
            log.exception("transcription %s: no recogniser process", self.job_id)
            return
        reader = threading.Thread(target=self._read, args=(recogniser,), name=f"asr-in-{self.job_id[:8]}",
                                  daemon=True)
        try:
            recogniser.conn.send(self.interim)
            reader.start()
            while (frames := self.queue.get()) is not None:
                recogniser.conn.send_bytes(np.concatenate(frames).tobytes())
            recogniser.conn.send_bytes(b"")  # the end of this transcription's audio
            reader.join()
        except (OSError, EOFError):
            log.exception("transcription %s: its recogniser process failed", self.job_id)
            recogniser.close()
            return
        RECOGNISERS.give_back(recogniser)

    def _read(self, recogniser: RecogniserProcess) -> None:
        with contextlib.suppress(OSError, EOFError):
            while (found := recogniser.conn.recv()) is not None:
                self.report(Hypothesis(*found))


class RecogniserProcess:
    """A process that recognises one transcription's audio at a time (``serve``), kept for the next. It is
    a plain child program (``python -m callroom.media.recognise FD``, a socket pair between them): the
    media process is itself a daemonic process, which multiprocessing lets have no children."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "callroom.media.recognise", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        self.conn = Connection(ours.detach())

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.conn.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class RecogniserPool:
    """Recogniser processes kept between transcriptions (each serves one at a time)."""

    def __init__(self) -> None:
        self._free: list[RecogniserProcess] = []
        self._lock = threading.Lock()

    def take(self) -> RecogniserProcess:
        with self._lock:
            while self._free:
                recogniser = self._free.pop()
                if recogniser.alive:
                    return recogniser
        return RecogniserProcess()

    def give_back(self, recogniser: RecogniserProcess) -> None:
        with self._lock:
            self._free.append(recogniser)

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for recogniser in free:
            recogniser.close()


RECOGNISERS = RecogniserPool()


class Transcriptions:
    """The engine's transcriptions by call: each starts when its leg's audio exists (the answer); the tick
    feeds them in ``after_mix``; results reach ``report`` on the event loop."""

    def __init__(self, legs: Callable[[], Mapping[str, AudioLeg]], report: Callable[[m.MediaFact], None]) -> None:
        self.legs = legs
        self.report = report
        self.pending: dict[str, tuple[m.StartTranscription, float | None]] = {}
        self.running: dict[str, list[Transcriber]] = {}  # by call_control_id
        self._stopped: list[Transcriber] = []  # still finishing their last utterance

    def __bool__(self) -> bool:
        return bool(self.pending) or bool(self.running)

    def start(self, op: m.StartTranscription) -> None:
        self.stop(op.call_control_id)
        self.pending[op.call_control_id] = (op, None)

    def stop(self, cid: str) -> None:
        self.pending.pop(cid, None)
        for t in self.running.pop(cid, []):
            t.stop()
            self._stopped.append(t)
        self._stopped = [t for t in self._stopped if t.alive]

    async def aclose(self) -> None:
        """Stop every transcription and wait for its worker (off the loop: it may be mid-utterance)."""
        for cid in list(self.running):
            self.stop(cid)
        for t in self._stopped:
            await asyncio.to_thread(t.join)
        self._stopped = []
        await asyncio.to_thread(RECOGNISERS.close)

    def _begin(self, op: m.StartTranscription) -> None:
        loop = asyncio.get_running_loop()

        def post(fact: m.MediaFact) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed as the recogniser finished an utterance
                loop.call_soon_threadsafe(self.report, fact)

        tracks = ("inbound", "outbound") if op.tracks == "both" else (op.tracks,)
        busy = sum(len(ts) for ts in self.running.values())
        if busy + len(tracks) > MAX_RECOGNISERS:
            log.warning("transcription %s not started: %d tracks are being transcribed already (at most %d)",
                        op.job_id, busy, MAX_RECOGNISERS)
            return
        started = [Transcriber(op.job_id, track, op.interim_results, post) for track in tracks]
        for t in started:
            t.start()
        self.running[op.call_control_id] = started

    def after_mix(self, inputs: Mapping[str, Frame | None], outputs: Mapping[str, Frame], now: float) -> None:
        if self.pending:
            legs = self.legs()
            for cid, (op, since) in list(self.pending.items()):
                if cid in legs:
                    del self.pending[cid]
                    self._begin(op)
                elif since is None:
                    self.pending[cid] = (op, now)
                elif now - since > WAIT_FOR_ANSWER_SECONDS:
                    del self.pending[cid]
        for cid, started in self.running.items():
            for t in started:
                t.push(inputs.get(cid) if t.track == "inbound" else outputs.get(cid))
