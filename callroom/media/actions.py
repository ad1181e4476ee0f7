"""The media actions inside the engine: playback and speech, recording, DTMF gathering, sending DTMF.

Owned by the engine and driven from its tick. What they need of the engine is ``ActionHost``: its legs and
conferences, where to attach a player, and ``on_fact`` for what they report (playback started/ended,
recording saved, gather ended).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from callroom.audio.fetch import FETCH_ERRORS, public_reason
from callroom.errors import MediaError
from callroom.media.amd import MachineDetectors
from callroom.media.forks import ForkOpener, Forks
from callroom.media.gather import DigitGatherer, Finished, Reprompt
from callroom.media.players import Job, LoopingPlayer, Players
from callroom.media.ports import AudioLeg, Frame
from callroom.media.recorders import Recorder, write_recording
from callroom.media.sources import AudioPreparer
from callroom.media.streams import StreamOpener, Streams
from callroom.media.tones import FrameSource, SamplePlayer, enter_beep
from callroom.media.transcribe import Transcriptions
from callroom.model import media as m
from callroom.outbound import UNRESTRICTED, AddressPolicy

log = logging.getLogger(__name__)


class ActionHost(Protocol):
    """What the actions need of the engine that runs them (``engine.MediaEngine``)."""

    @property
    def legs(self) -> Mapping[str, AudioLeg]: ...

    @property
    def conferences(self) -> Mapping[str, m.ConferenceMix]: ...

    @property
    def on_fact(self) -> Callable[[m.MediaFact], None]:
        """Where facts go (to the control plane)."""
        ...

    def attach_player(self, port: str, source: FrameSource, cids: tuple[str, ...], conference_id: str | None,
                      ) -> None:  # fmt: skip
        """Mix ``source`` as port ``port`` to the legs ``cids``, or to a conference's listeners."""
        ...

    def attach_oneshot(self, player: SamplePlayer, cids: tuple[str, ...], conference_id: str | None) -> None:
        """Play ``player`` once to ``cids`` (and a conference's present members); gone when it ends."""
        ...

    def detach(self, port: str) -> None:
        """Take a player's port out of the mix."""
        ...


class _PreparedLoop:
    def __init__(self, fallback: FrameSource) -> None:
        self._fallback = fallback
        self._player: LoopingPlayer | None = None

    def ready(self, samples: NDArray[np.int16]) -> None:
        self._player = LoopingPlayer(samples, None)

    def next_frame(self) -> Frame:
        return self._player.next_frame() if self._player is not None else self._fallback.next_frame()


class ActionRunner:
    def __init__(self, engine: ActionHost, url_policy: AddressPolicy = UNRESTRICTED,
                 stream_opener: StreamOpener | None = None, fork_opener: ForkOpener | None = None) -> None:
        self.engine = engine
        self.streams = Streams(engine, lambda fact: self.engine.on_fact(fact), stream_opener)
        self.forks = Forks(lambda: self.engine.legs, fork_opener)
        self.machines = MachineDetectors(lambda: self.engine.legs, lambda fact: self.engine.on_fact(fact))
        self.transcriptions = Transcriptions(lambda: self.engine.legs, lambda fact: self.engine.on_fact(fact))
        self.players = Players()
        self.kinds: dict[str, str] = {}  # job id -> playback | speak
        self.recorders: dict[str, Recorder] = {}
        self.gathers: dict[str, tuple[m.Gather, DigitGatherer]] = {}  # by call_control_id
        self.preparer = AudioPreparer(url_policy=url_policy)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- instructions -------------------------------------------------------------------------------

    def apply(self, op: m.MediaOp) -> bool:
        match op:
            case m.Play():
                self._play(op, op.kind or ("speak" if op.audio.kind == "tts" else "playback"))
            case m.StopPlay():
                for job in self.players.select(op.call_control_ids, op.conference_id, op.which, op.kinds, self.kinds):
                    self._end(job, "cancelled")
            case m.StartRecording():
                self.recorders[op.job_id] = Recorder(op, time.time())
                if op.play_beep:
                    targets = (op.call_control_id,) if op.call_control_id else ()
                    self.engine.attach_oneshot(SamplePlayer(enter_beep()), targets, op.conference_id)
            case m.ControlRecording(job_id=job_id, action=action):
                rec = self.recorders.get(job_id)
                if rec is not None:
                    if action == "pause":
                        rec.buffer.pause()
                    elif action == "resume":
                        rec.buffer.resume()
                    else:
                        self._finish_recording(rec)
            case m.Gather():
                self._gather(op)
            case m.StopGather(call_control_id=cid):
                self._end_gather(cid, "cancelled")
            case m.StartStream() | m.StopStream():
                self.streams.apply(op)
            case m.StartFork() | m.StopFork():
                self.forks.apply(op)
            case m.DetectMachine():
                self.machines.start(op)
            case m.StartTranscription():
                self.transcriptions.start(op)
            case m.StopTranscription(call_control_id=cid):
                self.transcriptions.stop(cid)
            case m.SendDtmf(call_control_ids=cids, digits=digits, duration_millis=ms):
                for cid in cids:
                    leg = self.engine.legs.get(cid)
                    if leg is not None:
                        leg.send_dtmf(digits, ms)
            case _:
                return False
        return True

    def looping(self, spec: m.AudioSpec, fallback: FrameSource) -> FrameSource:
        """A source that loops ``spec`` once it is ready (fetched, decoded), and ``fallback`` until then
        (or for good, if the audio cannot be had)."""
        source = _PreparedLoop(fallback)

        async def prepare() -> None:
            try:
                source.ready(await self.preparer.prepare(spec))
            except Exception as exc:
                log.warning("hold audio %s unusable, keeping the default: %s", spec.value, exc)

        self._spawn(prepare())
        return source

    def prepare(self, spec: m.AudioSpec, ready: Callable[[NDArray[np.int16]], None], what: str) -> None:
        """Prepare ``spec`` off the tick (fetch, decode, synthesise) and hand the samples to ``ready`` on the media
        loop; audio that cannot be had is logged and handed over as no samples, so what comes after it still
        comes (a virtual phone's beep)."""

        async def prepare() -> None:
            try:
                samples = await self.preparer.prepare(spec)
            except Exception as exc:
                log.warning("audio for %s unusable (%s %s): %s", what, spec.kind, spec.value[:80], exc)
                samples = np.zeros(0, dtype=np.int16)
            ready(samples)

        self._spawn(prepare())

    def _play(self, op: m.Play, kind: str) -> Job:
        self.kinds[op.job_id] = kind
        job = self.players.add(op)
        self._spawn(self._prepare(job))
        return job

    async def _prepare(self, job: Job) -> None:
        try:
            job.samples = await self.preparer.prepare(job.op.audio)
        except MediaError as exc:
            # The application learns a reason, not what a server answered; the log keeps the detail.
            log.info("media for %s unusable: %s", job.op.job_id, exc)
            job.failed_status = "file_not_found" if isinstance(exc, FETCH_ERRORS) else "failed"
            job.failed = public_reason(exc)
        except Exception:  # never let a bad file take the engine down
            log.exception("preparing %s failed", job.op.job_id)
            job.failed = "the media could not be played"

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- per tick -----------------------------------------------------------------------------------

    def before_mix(self) -> None:
        for job in self.players.ready_to_start():
            if job.failed is not None:
                self._report_end(job, job.failed_status, job.failed)
                self.players.remove(job)
                continue
            self.players.start(job)
            assert job.player is not None
            self.engine.attach_player(job.port, job.player, job.op.call_control_ids, job.op.conference_id)
            self.engine.on_fact(m.PlaybackStarted(job.op.job_id))

    @property
    def tapping(self) -> bool:
        """Whether something needs every leg's frames this tick (the ``inputs`` and ``outputs`` of
        ``after_mix``): recordings, streams, forks, answering-machine detection and transcription."""
        return (bool(self.recorders) or bool(self.streams) or bool(self.forks) or bool(self.machines)
                or bool(self.transcriptions))

    def after_mix(self, inputs: Mapping[str, Frame | None], outputs: Mapping[str, Frame], now: float) -> None:
        if self.streams:
            self.streams.after_mix(inputs, outputs, now)
        if self.forks:
            self.forks.after_mix(inputs, outputs)
        if self.machines:
            self.machines.after_mix(inputs, now)
        if self.transcriptions:
            self.transcriptions.after_mix(inputs, outputs, now)
        for job in self.players.finished():
            self._end(job, "completed")
        for rec in list(self.recorders.values()):
            conf = self.engine.conferences.get(rec.op.conference_id or "")
            rec.capture(inputs, outputs, conf)
            if rec.full():
                self._finish_recording(rec)
        for cid, (_op, gatherer) in list(self.gathers.items()):
            self._gather_outcome(cid, gatherer.tick(now))

    # -- endings ------------------------------------------------------------------------------------

    def _end(self, job: Job, status: str) -> None:
        started = job.player is not None
        self.players.remove(job)
        if started:
            self.engine.detach(job.port)
        self._report_end(job, status if started else "cancelled", None if started else "not_started")
        self._prompt_over(job.op.job_id)

    def _report_end(self, job: Job, status: str, detail: str | None) -> None:
        self.kinds.pop(job.op.job_id, None)
        self.engine.on_fact(m.PlaybackEnded(job.op.job_id, status, detail))
        self._prompt_over(job.op.job_id)

    def leg_gone(self, cid: str) -> None:
        self.streams.leg_gone(cid)
        self.forks.stop(cid)
        self.machines.stop(cid)
        self.transcriptions.stop(cid)
        for job in self.players.of_leg(cid):
            self._end(job, "call_hangup")
        for rec in [r for r in self.recorders.values() if r.op.call_control_id == cid]:
            self._finish_recording(rec)
        self._end_gather(cid, "call_hangup")

    def conference_closed(self, conference_id: str) -> None:
        for job in self.players.of_conference(conference_id):
            self._end(job, "completed")
        for rec in [r for r in self.recorders.values() if r.op.conference_id == conference_id]:
            self._finish_recording(rec)

    def _finish_recording(self, rec: Recorder) -> None:
        if rec.stopped:
            return
        rec.stopped = True
        self.recorders.pop(rec.op.job_id, None)
        tracks: tuple[str, ...] = ()
        if rec.op.per_participant:
            cids, channels = rec.track_arrays()
            tracks = tuple(cids)
        else:
            channels = rec.buffer.arrays()
        ended = time.time()

        async def save() -> None:
            try:
                path, size, duration = await asyncio.to_thread(write_recording, rec.op, channels)
            except Exception as exc:
                log.exception("writing recording %s failed", rec.op.job_id)
                self.engine.on_fact(m.RecordingFailed(rec.op.job_id, str(exc)))
                return
            self.engine.on_fact(m.RecordingSaved(rec.op.job_id, path, size, duration, rec.started_at, ended, tracks))

        self._spawn(save())

    # -- gather -------------------------------------------------------------------------------------

    def _gather(self, op: m.Gather) -> None:
        self._end_gather(op.call_control_id, "cancelled")
        now = asyncio.get_running_loop().time()
        self.gathers[op.call_control_id] = (op, DigitGatherer(op, now, has_prompt=op.prompt is not None))
        if op.prompt is not None:
            self._play(m.Play(op.job_id + ":prompt", op.prompt, (op.call_control_id,)), "speak"
                       if op.prompt.kind == "tts" else "playback")

    def _prompt_over(self, job_id: str) -> None:
        if not job_id.endswith(":prompt") and ":prompt:" not in job_id:
            return
        gather_id = job_id.split(":prompt")[0]
        for _cid, (op, gatherer) in self.gathers.items():
            if op.job_id == gather_id:
                gatherer.prompt_ended(asyncio.get_running_loop().time())

    def digit(self, cid: str, digit: str) -> None:
        self.streams.digit(cid, digit)
        entry = self.gathers.get(cid)
        if entry is None:
            return
        op, gatherer = entry
        if op.stop_playback_on_dtmf:
            for job in self.players.of_leg(cid):
                if job.op.job_id.startswith(op.job_id + ":prompt"):
                    self._end(job, "cancelled")
        self._gather_outcome(cid, gatherer.digit(digit, asyncio.get_running_loop().time()))

    def _gather_outcome(self, cid: str, outcome: Reprompt | Finished | None) -> None:
        entry = self.gathers.get(cid)
        if outcome is None or entry is None:
            return
        op, gatherer = entry
        if isinstance(outcome, Finished):
            del self.gathers[cid]
            self.engine.on_fact(m.GatherEnded(op.job_id, outcome.digits, outcome.status))
            return
        prompts = [p for p in ((op.invalid_prompt if outcome.invalid else None), op.prompt) if p is not None]
        if not prompts:
            gatherer.prompt_ended(asyncio.get_running_loop().time())
        for n, spec in enumerate(prompts):
            self._play(m.Play(f"{op.job_id}:prompt:{gatherer.tries}:{n}", spec, (cid,)),
                       "speak" if spec.kind == "tts" else "playback")

    def _end_gather(self, cid: str, status: str) -> None:
        entry = self.gathers.pop(cid, None)
        if entry is None:
            return
        op, gatherer = entry
        finished = gatherer.cancel(status)
        if finished is not None:
            self.engine.on_fact(m.GatherEnded(op.job_id, finished.digits, finished.status))

    async def aclose(self) -> None:
        self.streams.close()
        self.forks.close()
        for task in list(self._tasks):
            task.cancel()
        await self.preparer.aclose()
        await self.transcriptions.aclose()
