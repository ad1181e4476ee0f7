"""The media engine: legs and sources as mixer ports, placed by the control plane, mixed every 20 ms.

It runs in its own process (see ``callroom/media_worker``) so that HTTP and database work never delay a tick.
The control plane's instructions (``callroom.model.media``) arrive through ``apply``; legs are
added when their audio exists (an RTP session set up, a virtual phone answered); facts (DTMF, floor
changes) go back through ``on_fact``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from callroom.media import topology as topo
from callroom.media.actions import ActionRunner
from callroom.media.forks import ForkOpener
from callroom.media.mixer import SILENCE_DBOV, Mixer
from callroom.media.ports import FRAME_SAMPLES, AudioLeg, DtmfDigit, Frame, LegBatch
from callroom.media.streams import StreamOpener
from callroom.media.talkers import TalkerDetector
from callroom.media.tones import ComfortNoise, FrameSource, HoldMusic, SamplePlayer, enter_beep, exit_beep
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


class MediaEngine:
    def __init__(self, on_fact: Callable[[m.MediaFact], None] = lambda _f: None, *, batch: LegBatch | None = None,
                 url_policy: AddressPolicy = UNRESTRICTED, stream_opener: StreamOpener | None = None,
                 fork_opener: ForkOpener | None = None) -> None:  # fmt: skip
        self.on_fact = on_fact
        self.mixer: Mixer[str] = Mixer(capacity=64, adaptive_gain=True)
        self.legs: dict[str, AudioLeg] = {}
        # The legs it takes (the media process gives an ``RtpBatch``: the RTP legs) run as one batch each
        # tick; the rest (virtual phones, and every leg without a batch) leg by leg. Either way gives the
        # same audio; running RTP legs leg by leg exists to measure the difference (bench/rtp_leg.py).
        self.batch = batch
        self._other_legs: dict[str, AudioLeg] = {}  # the legs run leg by leg
        self._batch_slots: tuple[int, int, NDArray[np.intp]] = (-1, -1, _NO_SLOTS)
        self._version = 0  # changes with every instruction and every leg added or removed
        self._speakers: tuple[tuple[int, int], list[tuple[str, list[str]]], NDArray[np.intp]] = (
            (-1, -1), [], np.zeros(0, dtype=np.intp))
        self.sources: dict[str, FrameSource] = {}
        self.placements: dict[str, topo.Placement] = {}
        self.supervisors: dict[str, set[str]] = {}  # a supervised leg -> the legs supervising it
        self.conferences: dict[str, m.ConferenceMix] = {}
        self.group_meshes: dict[str, topo.Mesh] = {}
        self.talkers: dict[str, TalkerDetector[str]] = {}
        self.oneshots: dict[str, tuple[SamplePlayer, str]] = {}  # source id -> (player, group)
        self.stats = TickStats()
        self._ports: set[str] = set()
        self._beep_ids = itertools.count()
        self._running = False
        self.conference_plays: dict[str, set[str]] = {}  # conference id -> playback source ports
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

    # -- playback sources ---------------------------------------------------------------------------

    def attach_player(self, port: str, source: FrameSource, cids: tuple[str, ...], conference_id: str | None) -> None:
        self.sources[port] = source
        self._ensure_port(port)
        if conference_id:
            self.conference_plays.setdefault(conference_id, set()).add(port)
            self._refresh(f"conference:{conference_id}")
        else:
            self._set_edges(f"play:{port}", {(port, c) for c in cids if c in self.legs})

    def detach(self, port: str) -> None:
        for conf_id, ports in list(self.conference_plays.items()):
            if port in ports:
                ports.discard(port)
                self._refresh(f"conference:{conf_id}")
        self._set_edges(f"play:{port}", set())
        self.sources.pop(port, None)
        if port in self._ports:
            self.mixer.remove_port(port)
            self._ports.discard(port)

    def attach_oneshot(self, player: SamplePlayer, cids: tuple[str, ...], conference_id: str | None) -> None:
        sid = f"src:beep:{next(self._beep_ids)}"
        self.sources[sid] = player
        group = f"beep:{sid}"
        self.oneshots[sid] = (player, group)
        targets = set(cids)
        if conference_id and conference_id in self.conferences:
            targets |= {mb.call_control_id for mb in self.conferences[conference_id].members if not mb.on_hold}
        self._set_edges(group, {(sid, t) for t in targets & set(self.legs)})

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

    def _place(self, cid: str, placement: topo.Placement, refresh: bool = True) -> None:
        old = self.placements.get(cid)
        self.placements[cid] = placement
        if old is not None and old != placement:
            self._refresh(topo.group_of(cid, old))
        if refresh:
            self._refresh(topo.group_of(cid, placement))
        self._refresh_supervisors(cid, old)

    def _refresh_supervisors(self, cid: str, old: topo.Placement | None) -> None:
        """The legs supervising ``cid``, or the leg it was or is bridged with, hear (and are heard) anew."""
        now = self.placements.get(cid)
        watched = {cid} | {p.other for p in (old, now) if isinstance(p, topo.Bridged)}
        if isinstance(old, topo.Supervising) and old != now:
            self.supervisors.get(old.target, set()).discard(cid)
        if isinstance(now, topo.Supervising):
            self.supervisors.setdefault(now.target, set()).add(cid)
        for target in watched:
            for leg in list(self.supervisors.get(target, ())):
                self._refresh(f"supervise:{leg}")

    def _refresh_leg(self, cid: str) -> None:
        placement = self.placements.get(cid)
        if placement is not None:
            self._refresh(topo.group_of(cid, placement))

    def _refresh(self, group: str) -> None:
        kind, _, key = group.partition(":")
        present = set(self.legs)
        edges: set[topo.Edge] = set()
        if kind == "bridge":
            a, b = key.split("|")
            if self.placements.get(a) == topo.Bridged(b) and self.placements.get(b) == topo.Bridged(a):
                edges = topo.bridge_edges(a, b, present)
        elif kind == "supervise":
            watching = self.placements.get(key)
            bridged = self.placements.get(watching.target) if isinstance(watching, topo.Supervising) else None
            if isinstance(watching, topo.Supervising) and bridged is not None:  # (a released call: nothing)
                partner = bridged.other if isinstance(bridged, topo.Bridged) else None
                edges = topo.supervisor_edges(key, watching.target, partner, watching.role, present)
        elif kind == "queue-leg":
            if isinstance(self.placements.get(key), topo.Queued):
                edges = topo.queue_edges(key, present)
        elif kind == "conference":
            mix = self.conferences.get(key)
            if mix is not None:
                inside = {c for c in present if self.placements.get(c) == topo.Conferenced(key)}
                mesh = topo.conference_mesh(mix, inside)
                plays = self.conference_plays.get(key, ())
                if plays:  # a playback to the conference: heard by its listeners
                    mesh = topo.Mesh(mesh.talkers, mesh.listeners,
                                     mesh.edges | {(port, c) for port in plays for c in mesh.listeners})
                self._set_mesh(group, mesh)
                return
        self._set_edges(group, edges)

    def _set_edges(self, group: str, edges: set[topo.Edge]) -> None:
        self._set_mesh(group, topo.Mesh.of(edges))

    def _set_mesh(self, group: str, new: topo.Mesh) -> None:
        """Queue on the mixer the difference between ``group``'s edges and ``new``: the talker x listener
        blocks that joined or left as block operations (O(N) for a join to a conference of N), the other
        edges one by one."""
        old = self.group_meshes.get(group, topo.NO_MESH)
        mixer, ports = self.mixer, self._ports
        for src, dst in old.edges - new.edges:
            if src in ports and dst in ports:
                mixer.disconnect(src, dst)
        gone_talkers = [p for p in old.talkers - new.talkers if p in ports]
        gone_listeners = [p for p in old.listeners - new.listeners if p in ports]
        if gone_talkers and old.listeners:
            mixer.disconnect_block(gone_talkers, [p for p in old.listeners if p in ports])
        if gone_listeners:
            staying = [p for p in old.talkers & new.talkers if p in ports]
            if staying:
                mixer.disconnect_block(staying, gone_listeners)
        new_talkers = new.talkers - old.talkers
        new_listeners = new.listeners - old.listeners
        for port in new_talkers | new_listeners:
            self._ensure_port(port)
        if new_talkers and new.listeners:
            mixer.connect_block(new_talkers, new.listeners)
        if new_listeners:
            kept = new.talkers - new_talkers
            if kept:
                mixer.connect_block(kept, new_listeners)
        for src, dst in new.edges - old.edges:
            self._ensure_port(src)
            self._ensure_port(dst)
            mixer.connect(src, dst)
        if new.talkers or new.listeners or new.edges:
            self.group_meshes[group] = new
        else:
            self.group_meshes.pop(group, None)

    def _ensure_port(self, port: str) -> None:
        if port in self._ports:
            return
        if port.startswith("src:") and port not in self.sources:
            self.sources[port] = self._make_source(port)
        self.mixer.add_port(port)
        self._ports.add(port)

    def _make_source(self, port: str) -> FrameSource:
        if port == topo.COMFORT_NOISE:
            return ComfortNoise()
        if port.startswith("src:hold:") and port != topo.DEFAULT_HOLD:
            kind, _, value = port[len("src:hold:") :].partition(":")
            if kind in ("url", "file"):
                return self.actions.looping(m.AudioSpec(kind, value), fallback=HoldMusic())
        return HoldMusic()

    def _beep(self, conf_id: str, mix: m.ConferenceMix) -> None:
        sid = f"src:beep:{conf_id}:{next(self._beep_ids)}"
        player = SamplePlayer(enter_beep() if mix.beep == "enter" else exit_beep())
        self.sources[sid] = player
        group = f"beep:{sid}"
        self.oneshots[sid] = (player, group)
        hearers = {mb.call_control_id for mb in mix.members if not mb.on_hold} & set(self.legs)
        self._set_edges(group, {(sid, h) for h in hearers})

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

    def _finish_oneshots(self) -> None:
        for sid, (player, group) in list(self.oneshots.items()):
            if player.finished:
                self._set_edges(group, set())
                del self.oneshots[sid]
                self.sources.pop(sid, None)
                if sid in self._ports:
                    self.mixer.remove_port(sid)
                    self._ports.discard(sid)

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
