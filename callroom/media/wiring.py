"""Who hears whom in the media engine: where the control plane placed each leg (parked, bridged, queued, in a
conference, supervising), each conference's mix and the playbacks to it, kept on the mixer as edges group by
group (a bridge, a conference, a supervisor, a playback, a beep). The rules are ``topology.py``'s; a change
reaches the mixer as the difference from what the group had.

:class:`Wiring` is the base of :class:`~callroom.media.engine.MediaEngine`, which places legs as the
control plane's instructions arrive and runs the tick.
"""

from __future__ import annotations

import itertools

from callroom.media import topology as topo
from callroom.media.actions import ActionRunner
from callroom.media.mixer import Mixer
from callroom.media.ports import AudioLeg
from callroom.media.tones import ComfortNoise, FrameSource, HoldMusic, SamplePlayer, enter_beep, exit_beep
from callroom.model import media as m


class Wiring:
    """The legs and sources as mixer ports, and the edges between them that placements call for."""

    actions: ActionRunner  # the engine's (hold music from a URL or a file is one of its players)

    def __init__(self) -> None:
        self.mixer: Mixer[str] = Mixer(capacity=64, adaptive_gain=True)
        self.legs: dict[str, AudioLeg] = {}
        self.sources: dict[str, FrameSource] = {}
        self.placements: dict[str, topo.Placement] = {}
        self.supervisors: dict[str, set[str]] = {}  # a supervised leg -> the legs supervising it
        self.conferences: dict[str, m.ConferenceMix] = {}
        self.group_meshes: dict[str, topo.Mesh] = {}
        self.oneshots: dict[str, tuple[SamplePlayer, str]] = {}  # source id -> (player, group)
        self._ports: set[str] = set()
        self._beep_ids = itertools.count()
        self.conference_plays: dict[str, set[str]] = {}  # conference id -> playback source ports

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

    # -- placements as edges ------------------------------------------------------------------------

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

    def _finish_oneshots(self) -> None:
        for sid, (player, group) in list(self.oneshots.items()):
            if player.finished:
                self._set_edges(group, set())
                del self.oneshots[sid]
                self.sources.pop(sid, None)
                if sid in self._ports:
                    self.mixer.remove_port(sid)
                    self._ports.discard(sid)
