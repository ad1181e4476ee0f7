"""What a recogniser process does with a transcription's audio (``recognise``), and that process's program
(``serve``: ``python -m callroom.media.recognise FD``, started by ``transcribe.RecogniserProcess``).

The audio arrives as 8 kHz samples; ``Upsampler`` (a stateful half-band interpolator, numpy) doubles the
rate to the 16 kHz pocketsphinx's model expects; its ``Endpointer`` finds where speech starts and ends
(``Segmenter`` widens each utterance a little), its ``Decoder`` recognises the speech between
(``start_utt``, ``process_raw``, ``hyp()``, ``end_utt``). Results (``Hypothesis``) go back to the media
process over the socket. The same code runs on a caller's thread with a ``Job`` (tests, benches).
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import numpy.typing as npt

from callroom.media.ports import FRAME_SAMPLES, Frame

ASR_RATE = 16000
QUEUE_SECONDS = 10.0  # audio a transcription holds when the recogniser falls behind; older is dropped
QUEUE_FRAMES = int(QUEUE_SECONDS * 50)
INTERIM_SECONDS = 0.4  # of speech between interim results (the first comes this long after the endpointer's start)
INTERIM_SAMPLES = int(INTERIM_SECONDS * ASR_RATE)
PRE_ROLL_SECONDS = 0.25  # audio decoded before the endpointer's start of speech, which comes late on soft onsets
POST_ROLL_SECONDS = 0.15  # and after its end
PRE_ROLL_SAMPLES = int(PRE_ROLL_SECONDS * ASR_RATE)
POST_ROLL_SAMPLES = int(POST_ROLL_SECONDS * ASR_RATE)
MAX_UTTERANCE_SECONDS = 30.0  # a longer stretch of speech (or noise) is decoded in pieces of this length
RECOGNISER_NICENESS = 10
# pocketsphinx's search settings, beyond its model's defaults (its front end's settings come from the model's
# feat.params, which overrides what a Config says; bench/transcribe_speed.py measures them)
DECODER_OPTIONS: dict[str, float | str | bool] = {}
_TAPS = 31  # half-band low-pass for the 8 kHz -> 16 kHz interpolation


def _halfband() -> npt.NDArray[np.float64]:
    n = np.arange(_TAPS) - (_TAPS - 1) / 2
    h: npt.NDArray[np.float64] = np.sinc(n / 2) * np.hamming(_TAPS)
    scaled: npt.NDArray[np.float64] = h / h.sum() * 2
    return scaled  # gain 2 makes up for the zeros stuffed between samples


_H = _halfband()
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
SILENCE.flags.writeable = False


class Upsampler:
    """8 kHz -> 16 kHz, block by block (the worker's: whatever the queue held), with the filter's history
    carried across blocks (no clicks at their edges). Output lags the input by ``(_TAPS - 1) / 2`` samples at 16 kHz."""

    def __init__(self) -> None:
        self._history = np.zeros(_TAPS - 1, dtype=np.float64)

    def __call__(self, frame: Frame) -> npt.NDArray[np.int16]:
        stuffed = np.zeros(2 * len(frame), dtype=np.float64)
        stuffed[::2] = frame
        x = np.concatenate((self._history, stuffed))
        self._history = x[-(_TAPS - 1):]
        y = np.convolve(x, _H, mode="valid")
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


class FrameQueue:
    """A bounded queue of 8 kHz frames between the tick (``put``, never blocks) and a worker (``get``,
    waits). ``close`` wakes the worker for good; ``dropped`` counts frames pushed out unread."""

    def __init__(self, limit: int = QUEUE_FRAMES) -> None:
        self._frames: deque[npt.NDArray[np.int16]] = deque()
        self._limit = limit
        self._ready = threading.Condition()
        self.closed = False
        self.dropped = 0

    def put(self, frame: npt.NDArray[np.int16]) -> None:
        with self._ready:
            if len(self._frames) >= self._limit:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify()

    def get(self) -> list[npt.NDArray[np.int16]] | None:
        """Every frame queued (waiting for one), or None once closed and drained."""
        with self._ready:
            while not self._frames and not self.closed:
                self._ready.wait()
            if not self._frames:
                return None
            out = list(self._frames)
            self._frames.clear()
            return out


@dataclass(frozen=True, slots=True)
class Hypothesis:
    transcript: str
    confidence: float
    is_final: bool


def hypothesis(text: str, logprob: float, frames: int, is_final: bool) -> Hypothesis | None:
    """A recogniser's result as reported: words without pocketsphinx's fillers and markers (``<sil>``,
    ``[noise]``, ``(2)`` variants), and its posterior turned into a confidence in [0, 1] (the per-frame
    log probability, scaled; pocketsphinx gives no calibrated figure). None when no word is left."""
    words = [w.split("(")[0] for w in text.split() if not w.startswith(("<", "["))]
    if not words:
        return None
    per_frame = logprob / max(frames, 1)
    confidence = round(min(1.0, max(0.0, math.exp(per_frame / 1000.0))), 3)
    return Hypothesis(" ".join(words), confidence, is_final)


class Job:
    """What a recogniser works on: a queue of 8 kHz audio, its upsampler, and where results go."""

    def __init__(self, interim: bool, report: Callable[[Hypothesis], None]) -> None:
        self.interim = interim
        self.queue = FrameQueue()
        self.upsample = Upsampler()
        self.report = report

    def push(self, frame: Frame | None) -> None:
        """A copy of the 8 kHz frame queued (the mixer reuses its buffers); None is a frame of silence."""
        self.queue.put(SILENCE if frame is None else frame.copy())


def serve(conn: Connection) -> None:
    """A recogniser process's loop: for each transcription (its first message says whether interim results
    are wanted; None ends the process), audio arrives as bytes of 8 kHz samples until an empty message,
    and each result goes back as (transcript, confidence, is_final), then None."""
    while (interim := _next(conn)) is not None:
        job = Job(bool(interim), lambda hyp: conn.send((hyp.transcript, hyp.confidence, hyp.is_final)))
        feeder = threading.Thread(target=_feed, args=(conn, job), daemon=True)
        feeder.start()
        try:
            recognise(job)
        finally:
            feeder.join()
            conn.send(None)


def _next(conn: Connection) -> bool | None:
    try:
        interim: bool | None = conn.recv()
    except (EOFError, OSError):  # the media process is gone
        return None
    return interim


def _feed(conn: Connection, job: Job) -> None:
    try:
        while data := conn.recv_bytes():
            job.queue.put(np.frombuffer(data, dtype=np.int16))
    except (EOFError, OSError):
        pass
    finally:
        job.queue.close()


class DecoderPool:
    """pocketsphinx decoders kept between transcriptions (a decoder serves one thread at a time)."""

    def __init__(self) -> None:
        self._free: list[Any] = []  # pocketsphinx has no type hints
        self._lock = threading.Lock()

    def take(self) -> Any:
        with self._lock:
            if self._free:
                return self._free.pop()
        from pocketsphinx import Config, Decoder

        return Decoder(Config(samprate=ASR_RATE, loglevel="FATAL", **DECODER_OPTIONS))

    def give_back(self, decoder: Any) -> None:
        with self._lock:
            self._free.append(decoder)


DECODERS = DecoderPool()


def recognise(t: Job) -> None:
    """The worker: queue -> endpointer -> decoder -> hypotheses, until the queue is closed.

    The endpointer says where speech starts late (its voice detector needs the onset to be loud) and
    returns audio only from there, which cut first words ("ten of clubs" heard as "an up close"): the
    worker keeps the recent audio itself (``Segmenter``) and decodes each utterance from ``PRE_ROLL``
    before the endpointer's start to ``POST_ROLL`` after its end. Each utterance's final result decodes the
    whole utterance at once (``full_utt``: the cepstral mean is the utterance's own, which recognises
    clearly better than the running estimate of a live decode); with interim results the utterance is also
    decoded as it goes, for the partial hypotheses (every ``INTERIM_SECONDS`` of speech). A decoder is taken
    from the pool as the worker starts (a new one takes ~0.35 s of CPU to load; taken at the first speech,
    it delayed that speech's first interim result by as much), while the queue holds the audio."""
    from pocketsphinx import Endpointer

    ep = Endpointer(sample_rate=ASR_RATE)
    need = ep.frame_bytes // 2  # the endpointer's frame, in samples
    seg = Segmenter(PRE_ROLL_SAMPLES + round((Endpointer.DEFAULT_WINDOW + ep.frame_length) * ASR_RATE))
    pending = np.zeros(0, dtype=np.int16)
    decoder: Any = DECODERS.take()
    live = False  # a live decode of the utterance is open (interim results)
    fed = 0  # samples of the utterance given to the live decode
    next_partial = 0
    while (frames := t.queue.get()) is not None:
        pending = np.concatenate((pending, t.upsample(np.concatenate(frames))))
        while len(pending) >= need:
            chunk, pending = pending[:need], pending[need:]
            seg.add(chunk)
            speech = ep.process(chunk.tobytes())
            if speech is None:
                continue
            if not seg.open:
                seg.begin(ep.speech_start)
            if not ep.in_speech or seg.too_long():
                _final(t, decoder, seg.end(ep.speech_end if not ep.in_speech else None), live)
                live = False
            elif t.interim:
                if not live:
                    decoder.start_utt()
                    live, fed, next_partial = True, 0, INTERIM_SAMPLES
                audio = seg.utterance()
                decoder.process_raw(audio[fed:].tobytes(), full_utt=False)
                fed = len(audio)
                if fed >= next_partial:
                    next_partial = fed + INTERIM_SAMPLES
                    _report(t, decoder, False)
    if ep.in_speech:
        ep.end_stream(pending.tobytes())
        seg.add(pending)
    if seg.open:
        _final(t, decoder, seg.end(None), live)
    DECODERS.give_back(decoder)  # between utterances (not after an error, which may leave one open)


class Segmenter:
    """The worker's recent audio (16 kHz) and the utterance being heard: ``begin`` at the endpointer's start
    (seconds of stream), ``end`` at its end (or now), each widened by ``PRE_ROLL`` / ``POST_ROLL``.
    Between utterances it keeps ``lookback`` samples: the pre-roll and the endpointer's delay (it tells
    the start of speech a window later)."""

    def __init__(self, lookback: int) -> None:
        self._lookback = lookback
        self._audio = np.zeros(0, dtype=np.int16)
        self._base = 0  # stream position of ``_audio[0]``, in samples
        self._start: int | None = None  # the open utterance's first sample (stream position)

    @property
    def open(self) -> bool:
        return self._start is not None

    def add(self, chunk: npt.NDArray[np.int16]) -> None:
        self._audio = np.concatenate((self._audio, chunk))
        keep_from = (self._start if self._start is not None else self._base + len(self._audio) - self._lookback)
        drop = max(0, keep_from - self._base)
        if drop:
            self._audio = self._audio[drop:]
            self._base += drop

    def begin(self, start_seconds: float) -> None:
        self._start = max(self._base, round(start_seconds * ASR_RATE) - PRE_ROLL_SAMPLES)

    def utterance(self) -> npt.NDArray[np.int16]:
        assert self._start is not None
        return self._audio[self._start - self._base:]

    def too_long(self) -> bool:
        return len(self.utterance()) >= MAX_UTTERANCE_SECONDS * ASR_RATE

    def end(self, end_seconds: float | None) -> bytes:
        """The utterance's audio, to ``POST_ROLL`` past ``end_seconds`` (or all heard so far); closes it."""
        audio = self.utterance()
        if end_seconds is not None:
            stop = round(end_seconds * ASR_RATE) + POST_ROLL_SAMPLES - (self._start or 0)
            audio = audio[:max(stop, 0)]
        self._start = None
        return audio.tobytes()


def _report(t: Job, decoder: Any, is_final: bool) -> None:
    hyp = decoder.hyp()
    if hyp is not None:
        found = hypothesis(hyp.hypstr, hyp.score, decoder.n_frames(), is_final)
        if found is not None:
            t.report(found)


def _final(t: Job, decoder: Any, utterance: bytes, live: bool) -> None:
    if live:
        decoder.end_utt()  # the live decode's; the final one starts afresh
    decoder.start_utt()
    decoder.process_raw(utterance, full_utt=True)
    decoder.end_utt()
    _report(t, decoder, True)


if __name__ == "__main__":  # a recogniser process (``transcribe.RecogniserProcess``)
    # Below the media process in the scheduler's eyes: when the cores are short, transcription falls
    # behind (and past its queue drops audio) rather than the calls' 20 ms tick.
    os.nice(RECOGNISER_NICENESS)
    serve(Connection(int(sys.argv[1])))
