"""Playback of prepared audio into the mixer: one queue per target, overlays beside it.

A play job is prepared off the tick (downloaded, decoded, synthesised) and waits its turn behind what
already plays to the same target (a leg, a set of legs, or a conference); an overlay job starts as
soon as it is ready. The engine asks ``tick()`` which jobs finished, and reports started/ended facts.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from callroom.media.ports import FRAME_SAMPLES, Frame
from callroom.model.media import Play

Samples = NDArray[np.int16]


class LoopingPlayer:
    """Frames from ``samples``, ``loops`` times (None: forever); the last frame is zero-padded."""

    def __init__(self, samples: Samples, loops: int | None) -> None:
        self._samples = samples if len(samples) else np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._loops_left = loops
        self._pos = 0
        self.finished = False

    def next_frame(self) -> Frame:
        if self.finished:
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES and not self.finished:
            take = min(FRAME_SAMPLES - filled, len(self._samples) - self._pos)
            out[filled : filled + take] = self._samples[self._pos : self._pos + take]
            filled += take
            self._pos += take
            if self._pos >= len(self._samples):
                self._pos = 0
                if self._loops_left is not None:
                    self._loops_left -= 1
                    if self._loops_left <= 0:
                        self.finished = True
        return out


@dataclass
class Job:
    op: Play
    samples: Samples | None = None  # None until prepared
    failed: str | None = None  # why it cannot play, as the application is told
    failed_status: str = "failed"  # call.playback.ended's status then (file_not_found: it could not be fetched)
    player: LoopingPlayer | None = None
    cancelled: bool = False

    @property
    def port(self) -> str:
        return f"src:play:{self.op.job_id}"

    @property
    def target(self) -> str:
        if self.op.conference_id:
            return f"conference:{self.op.conference_id}"
        return "legs:" + ",".join(sorted(self.op.call_control_ids))

    def touches(self, call_control_id: str) -> bool:
        return call_control_id in self.op.call_control_ids


@dataclass
class Players:
    """Which jobs wait, which play. Pure bookkeeping: the engine does ports and edges."""

    queues: dict[str, deque[Job]] = field(default_factory=dict)
    overlays: dict[str, Job] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)

    def add(self, op: Play) -> Job:
        job = Job(op)
        self.jobs[op.job_id] = job
        if op.overlay:
            self.overlays[op.job_id] = job
        else:
            self.queues.setdefault(job.target, deque()).append(job)
        return job

    def ready_to_start(self) -> list[Job]:
        """Prepared jobs that may start now: overlays, and the head of each queue."""
        out = [j for j in self.overlays.values() if j.player is None and (j.samples is not None or j.failed)]
        for queue in self.queues.values():
            if queue and queue[0].player is None and (queue[0].samples is not None or queue[0].failed):
                out.append(queue[0])
        return out

    def start(self, job: Job) -> None:
        assert job.samples is not None
        job.player = LoopingPlayer(job.samples, job.op.loop)

    def finished(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.player is not None and j.player.finished]

    def remove(self, job: Job) -> None:
        self.jobs.pop(job.op.job_id, None)
        self.overlays.pop(job.op.job_id, None)
        queue = self.queues.get(job.target)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(job)
            if not queue:
                del self.queues[job.target]

    def select(self, call_control_ids: tuple[str, ...], conference_id: str | None, which: str,
               kinds: tuple[str, ...], kind_of: dict[str, str]) -> list[Job]:
        """The jobs a stop command names: playing (``current``) or also queued (``all``)."""
        out = []
        for job in list(self.jobs.values()):
            if kind_of.get(job.op.job_id, "playback") not in kinds:
                continue
            if conference_id is not None:
                if job.op.conference_id != conference_id:
                    continue
            elif not any(job.touches(c) for c in call_control_ids):
                continue
            if which == "current" and job.player is None and not job.op.overlay:
                continue
            out.append(job)
        return out

    def of_leg(self, call_control_id: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.touches(call_control_id)]

    def of_conference(self, conference_id: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.op.conference_id == conference_id]
