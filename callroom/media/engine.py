"""The media engine: legs and sources as mixer ports, placed by the control plane, mixed every 20 ms.

It runs in its own process (see ``callroom/media_worker``) so that HTTP and database work never delay a tick.
The control plane's instructions (``callroom.model.media``) arrive through ``apply``; legs are
added when their audio exists (an RTP session set up, a virtual phone answered); facts (DTMF, floor
changes) go back through ``on_fact``. Who hears whom, as mixer edges that follow the placements, is
``wiring.py``'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from callroom.media import topology as topo
from callroom.media.actions import ActionRunner
from callroom.media.forks import ForkOpener
from callroom.media.mixer import SILENCE_DBOV
from callroom.media.ports import FRAME_SAMPLES, AudioLeg, DtmfDigit, Frame, LegBatch
from callroom.media.streams import StreamOpener
from callroom.media.talkers import TalkerDetector
from callroom.media.wiring import Wiring
from callroom.model import media as m
from callroom.outbound import UNRESTRICTED, AddressPolicy

log = logging.getLogger(__name__)

TICK_SECONDS = 0.020


@dataclass
class TickStats:
    """Lateness of ticks (how long after its due time each tick started) and the work per tick."""

    ticks: int = 0
    late_ms: list[float] = field(default_factory=list)
    work_ms: list[float] = field(default_factory=list)
    skipped: int = 0
    # The lateness of the recent ticks, smoothed (each tick weighs a tenth: about the last 200 ms); the
    # node's admission refuses new calls while it is over its limit (``callroom/admission.py``).
    recent_late_ms: float = 0.0

    def record(self, late: float, work: float) -> None:
        self.ticks += 1
        self.recent_late_ms += 0.1 * (late * 1000 - self.recent_late_ms)
        if len(self.late_ms) >= 50_000:
            del self.late_ms[:25_000], self.work_ms[:25_000]
        self.late_ms.append(late * 1000)
        self.work_ms.append(work * 1000)

    def summary(self) -> dict[str, float]:
        if not self.late_ms:
            return {"ticks": 0}
        late, work = np.asarray(self.late_ms), np.asarray(self.work_ms)
        return {
            "ticks": self.ticks,
            "late_p50_ms": float(np.percentile(late, 50)),
            "late_p99_ms": float(np.percentile(late, 99)),
            "late_max_ms": float(late.max()),
            "work_p50_ms": float(np.percentile(work, 50)),
            "work_p99_ms": float(np.percentile(work, 99)),
            "skipped": self.skipped,
        }


class MediaEngine(Wiring):
    def __init__(self, on_fact: Callable[[m.MediaFact], None] = lambda _f: None, *, batch: LegBatch | None = None,
                 url_policy: AddressPolicy = UNRESTRICTED, stream_opener: StreamOpener | None = None,
                 fork_opener: ForkOpener | None = None) -> None:  # fmt: skip
        super().__init__()
        self.on_fact = on_fact
        # The legs it takes (the media process gives an ``RtpBatch``: the RTP legs) run as one batch each
        # tick; the rest (virtual phones, and every leg without a batch) leg by leg. Either way gives the
        # same audio; running RTP legs leg by leg exists to measure the difference (bench/rtp_leg.py).
        self.batch = batch
        self._other_legs: dict[str, AudioLeg] = {}  # the legs run leg by leg
        self._batch_slots: tuple[int, int, NDArray[np.intp]] = (-1, -1, _NO_SLOTS)
        self._version = 0  # changes with every instruction and every leg added or removed
        self._speakers: tuple[tuple[int, int], list[tuple[str, list[str]]], NDArray[np.intp]] = (
            (-1, -1), [], np.zeros(0, dtype=np.intp))
        self.talkers: dict[str, TalkerDetector[str]] = {}
        self.stats = TickStats()
        self._running = False
        # url_policy: where media URLs may be fetched from; the openers: the media process's WebSocket and UDP
        # sides of streams and forks
        self.actions = ActionRunner(self, url_policy, stream_opener, fork_opener)
        # Called at the start of every tick, before anything is mixed: the media process drains the API's
        # instructions here instead of being woken for each one (``process.MediaWorker``).
        self.before_tick: Callable[[], None] = lambda: None

    # -- legs ---------------------------------------------------------------------------------------

    def add_leg(self, cid: str, leg: AudioLeg) -> None:
        self._version += 1
        old = self.legs.pop(cid, None)
        if self.batch is not None:
            self.batch.discard(cid)
        self._other_legs.pop(cid, None)
        if old is not None:
            old.close()
        self.legs[cid] = leg
        if self.batch is None or not self.batch.take(cid, leg):
            self._other_legs[cid] = leg
        self._ensure_port(cid)
        self._refresh_leg(cid)

    def remove_leg(self, cid: str) -> None:
        leg = self.legs.pop(cid, None)
        if leg is None:
            return
        self._version += 1
        if self.batch is not None:
            self.batch.discard(cid)
        self._other_legs.pop(cid, None)
        self.actions.leg_gone(cid)
        self._refresh_leg(cid)
        try:
            leg.close()
        except Exception:  # its sockets are the leg's to close; the mixer's port is ours
            log.exception("closing leg %s failed", cid)
        if cid in self._ports:
            self.mixer.remove_port(cid)
            self._ports.discard(cid)

    def dtmf_from(self, cid: str) -> Callable[[DtmfDigit], None]:
        """The callback a leg calls for each digit it receives (on the media loop)."""

        def received(d: DtmfDigit) -> None:
            self.on_fact(m.DtmfReceived(cid, d.digit))
            self.actions.digit(cid, d.digit)

        return received

    # -- instructions from the control plane --------------------------------------------------------

    def apply(self, ops: list[m.MediaOp]) -> None:
        self._version += 1
        for op in ops:
            try:
                self._apply(op)
            except Exception:
                log.exception("media op %r failed", op)

    def _apply(self, op: m.MediaOp) -> None:
        if self.actions.apply(op):
            return
        match op:
            case m.Park(call_control_id=cid):
                self._place(cid, topo.Parked())
            case m.Bridge(a=a, b=b):
                self._place(a, topo.Bridged(b))
                self._place(b, topo.Bridged(a))
            case m.Supervise(call_control_id=cid, target=target, role=role):
                self._place(cid, topo.Supervising(target, role))
            case m.HoldInQueue(call_control_id=cid, queue_id=qid):
                self._place(cid, topo.Queued(qid))
            case m.ConferenceMix(conference_id=conf_id) as mix:
                self.conferences[conf_id] = mix
                for member in mix.members:
                    self._place(member.call_control_id, topo.Conferenced(conf_id), refresh=False)
                self._refresh(f"conference:{conf_id}")
                if mix.beep:
                    self._beep(conf_id, mix)
            case m.MemberFlags(conference_id=conf_id) as flags:
                if conf_id in self.conferences:
                    self.conferences[conf_id] = topo.with_flags(self.conferences[conf_id], flags)
                    self._refresh(f"conference:{conf_id}")
            case m.ConferenceClosed(conference_id=conf_id):
                self.actions.conference_closed(conf_id)
                self.conference_plays.pop(conf_id, None)
                self.conferences.pop(conf_id, None)
                self.talkers.pop(conf_id, None)
                self._set_edges(f"conference:{conf_id}", set())
            case m.Release(call_control_id=cid) | m.Reject(call_control_id=cid):
                self.actions.streams.forget(cid)
                self.actions.machines.stop(cid)
                self.actions.transcriptions.stop(cid)
                old = self.placements.pop(cid, None)
                if old is not None:
                    self._refresh(topo.group_of(cid, old))
                    self._refresh_supervisors(cid, old)
            case _:
                pass  # signalling-only instructions (Ring, Answer) are for the endpoint drivers

    # -- the tick -----------------------------------------------------------------------------------

    def tick(self, now: float = 0.0) -> None:
        """One 20 ms period: every leg's and source's frame in, the mix, every leg's frame out.

        The batch's legs run as one batch (``RtpBatch``: sockets read, decoded and encoded for all RTP legs
        at once); other legs and the sources frame by frame. Frames are laid out by mixer slot for
        ``Mixer.tick_slots``; the per-port dicts the recorders need are built only while one records."""
        self.actions.before_mix()
        mixer = self.mixer
        mixer.apply()
        slot = mixer.slot_map
        inputs = np.zeros((mixer.capacity, FRAME_SAMPLES), dtype=np.int16)
        recording = self.actions.tapping
        frames: dict[str, Frame | None] = {}
        batch = self.batch
        batch_slots = self._batch_slot_array()
        if batch is not None and len(batch):
            try:
                batch.receive()
                at, got = batch.pull()
            except Exception:
                log.exception("batched legs failed to give frames")
                at, got = [], _NO_FRAMES
            if at:
                inputs[batch_slots[at]] = got
            if recording:
                keys = batch.keys
                frames.update(dict.fromkeys(keys))
                frames.update(zip([keys[i] for i in at], got, strict=True))
        for cid, leg in self._other_legs.items():
            try:
                frame = leg.pull_frame()
            except Exception:
                log.exception("leg %s failed to give a frame", cid)
                continue
            if frame is not None:
                inputs[slot[cid]] = frame
            if recording:
                frames[cid] = frame
        for sid, source in self.sources.items():
            if sid in self._ports:
                frame = source.next_frame()
                inputs[slot[sid]] = frame
                if recording:
                    frames[sid] = frame
        mixer.apply()  # changes queued during the pulls (a digit ending a prompt) take effect now, as before
        if len(inputs) < mixer.capacity:  # the mixer grew: slots keep their places, new ones hear silence
            inputs = np.concatenate([inputs, np.zeros((mixer.capacity - len(inputs), FRAME_SAMPLES), np.int16)])
        out, out_slots = mixer.tick_slots(inputs)
        row_of = np.full(mixer.capacity, -1, dtype=np.intp)
        row_of[out_slots] = np.arange(len(out_slots))
        if batch is not None and len(batch):
            rows = row_of[batch_slots]
            heard = np.zeros((len(rows), FRAME_SAMPLES), dtype=np.int16)
            has = rows >= 0
            heard[has] = out[rows[has]]
            try:
                batch.push(heard)
            except Exception:
                log.exception("batched legs failed to take frames")
        for cid, leg in self._other_legs.items():
            r = row_of[slot[cid]]
            try:
                leg.push_frame(out[r] if r >= 0 else _SILENCE)
            except Exception:
                log.exception("leg %s failed to take a frame", cid)
        outputs: dict[str, Frame] = {}
        if recording:
            outputs = {port: out[row_of[s]] for port, s in slot.items() if row_of[s] >= 0}
        self._finish_oneshots()
        self.actions.after_mix(frames, outputs, now)
        if self.conferences:
            self._detect_talkers()

    def _batch_slot_array(self) -> NDArray[np.intp]:
        """The mixer slot of every leg of the batch, in its order (recomputed only when either changed)."""
        batch = self.batch
        if batch is None:
            return _NO_SLOTS
        mixer_gen, batch_gen, slots = self._batch_slots
        if mixer_gen != self.mixer.generation or batch_gen != batch.generation:
            slot = self.mixer.slot_map
            slots = np.array([slot[k] for k in batch.keys], dtype=np.intp)
            self._batch_slots = (self.mixer.generation, batch.generation, slots)
        return slots

    def _detect_talkers(self) -> None:
        groups, slots = self._speaker_slots()
        levels = self.mixer.levels_at(slots)
        at = 0
        for conf_id, cids in groups:
            mine = levels[at : at + len(cids)]
            at += len(cids)
            detector = self.talkers.get(conf_id)
            if detector is None:
                detector = self.talkers[conf_id] = TalkerDetector()
            current = None
            if detector.current is not None and detector.current in cids:
                current = mine[cids.index(detector.current)]
            if detector.steady(max(mine, default=SILENCE_DBOV), current):
                continue  # the usual tick: the floor stays as it is
            change = detector.update(dict(zip(cids, mine, strict=True)))
            if change is not None and change.current is not None:
                self.on_fact(m.FloorChanged(conf_id, change.current))

    def _speaker_slots(self) -> tuple[list[tuple[str, list[str]]], NDArray[np.intp]]:
        """Who may take the floor in each conference (present, not held, muted, monitoring or whispering)
        and their mixer slots, all conferences' in one array (recomputed only when something changed)."""
        key, groups, slots = self._speakers
        if key != (self._version, self.mixer.generation):
            slot = self.mixer.slot_map
            groups = [
                (conf_id, [
                    mb.call_control_id for mb in mix.members
                    if not (mb.on_hold or mb.muted or mb.supervisor_role in ("monitor", "whisper"))
                    and mb.call_control_id in self.legs
                ])
                for conf_id, mix in self.conferences.items()
            ]
            slots = np.array([slot.get(c, -1) for _, cids in groups for c in cids], dtype=np.intp)
            self._speakers = ((self._version, self.mixer.generation), groups, slots)
        return groups, slots

    async def run(self) -> None:
        """Tick every 20 ms until ``stop``; a tick that is more than 100 ms late is skipped, not caught up.

        The schedule and the lateness figures use ``perf_counter`` (the loop's clock has 1 ms steps)."""
        loop = asyncio.get_running_loop()
        self._running = True
        due = time.perf_counter()
        while self._running:
            started = time.perf_counter()
            late = started - due
            if late > 0.1:
                skipped = int(late / TICK_SECONDS)
                self.stats.skipped += skipped
                due += skipped * TICK_SECONDS
                late = started - due
            try:
                self.before_tick()
                self.tick(loop.time())
            except Exception:
                log.exception("media tick failed")
            self.stats.record(max(0.0, late), time.perf_counter() - started)
            due += TICK_SECONDS
            await asyncio.sleep(max(0.0, due - time.perf_counter()))

    def stop(self) -> None:
        self._running = False

    async def aclose(self) -> None:
        await self.actions.aclose()
        if self.batch is not None:
            self.batch.close()


_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_NO_FRAMES = np.zeros((0, FRAME_SAMPLES), dtype=np.int16)
_NO_SLOTS = np.zeros(0, dtype=np.intp)
