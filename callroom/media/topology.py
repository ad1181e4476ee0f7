"""Who hears whom: turning the control plane's placements of legs into mixer edges. Pure, no I/O.

A leg is in exactly one place at a time: parked (hears nothing, heard by no one), bridged to one other
leg, supervising a leg and its bridge, waiting in a queue (hears the queue's hold audio), or a member of
a conference. Each place yields
a set of edges ``(src, dst)`` meaning "dst hears src" (a conference's as a ``Mesh``: talkers, listeners
and the other edges); the engine diffs the edges of the places that changed and queues only the
difference on the mixer.

Conference rules (Telnyx's supervisor roles as edges):

* ``none`` / ``barge``: heard by every member not on hold, hears every member that speaks to it;
* ``monitor``: hears everyone, heard by no one;
* ``whisper``: hears everyone, heard only by its ``whisper_to`` targets (no targets: as monitor);
* muted: hears as usual, heard by no one;
* on hold (by the API, or because the conference has not started): hears only the hold audio,
  heard by no one;
* comfort noise (when enabled) is heard by every member not on hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from callroom.model.media import ConferenceMember, ConferenceMix, MemberFlags

Edge = tuple[str, str]

DEFAULT_HOLD = "src:hold:default"
COMFORT_NOISE = "src:comfort-noise"


def hold_source(audio: str | None) -> str:
    """The source id of a hold audio (a URL or media name), or the built-in hold music."""
    return f"src:hold:{audio}" if audio else DEFAULT_HOLD


@dataclass(frozen=True, slots=True)
class Parked:
    pass


@dataclass(frozen=True, slots=True)
class Bridged:
    other: str


@dataclass(frozen=True, slots=True)
class Supervising:
    target: str
    role: str  # barge | whisper | monitor


@dataclass(frozen=True, slots=True)
class Queued:
    queue_id: str


@dataclass(frozen=True, slots=True)
class Conferenced:
    conference_id: str


Placement = Parked | Bridged | Supervising | Queued | Conferenced


def group_of(leg: str, placement: Placement) -> str:
    """The group whose edges a leg's placement belongs to."""
    match placement:
        case Bridged(other=other):
            return "bridge:" + "|".join(sorted((leg, other)))
        case Queued():
            return f"queue-leg:{leg}"
        case Supervising():
            return f"supervise:{leg}"
        case Conferenced(conference_id=cid):
            return f"conference:{cid}"
        case _:
            return f"parked:{leg}"


def bridge_edges(a: str, b: str, present: set[str]) -> set[Edge]:
    if a in present and b in present:
        return {(a, b), (b, a)}
    return set()


def supervisor_edges(supervisor: str, target: str, partner: str | None, role: str, present: set[str]) -> set[Edge]:
    """A supervisor hears ``target`` and its bridge ``partner``; barge: both hear it, whisper: ``target``
    only, monitor: no one."""
    if supervisor not in present or target not in present:
        return set()
    watched = [target] + ([partner] if partner is not None and partner in present else [])
    edges = {(leg, supervisor) for leg in watched}
    if role == "barge":
        edges |= {(supervisor, leg) for leg in watched}
    elif role == "whisper":
        edges.add((supervisor, target))
    return edges


def queue_edges(leg: str, present: set[str]) -> set[Edge]:
    return {(DEFAULT_HOLD, leg)} if leg in present else set()


@dataclass(frozen=True, slots=True)
class Mesh:
    """A place's edges in two parts: every ``talker`` heard by every ``listener`` but itself, plus ``edges``.

    A conference of N is N x N edges; kept as its two sets, a join or leave changes O(N) of them and the
    engine applies the difference as block operations on the mixer instead of diffing N x N pairs."""

    talkers: frozenset[str] = frozenset()
    listeners: frozenset[str] = frozenset()
    edges: frozenset[Edge] = frozenset()

    @classmethod
    def of(cls, edges: set[Edge]) -> Mesh:
        return cls(edges=frozenset(edges))

    def expand(self) -> set[Edge]:
        """Every edge, one by one."""
        return {(t, h) for t in self.talkers for h in self.listeners if t != h} | self.edges


NO_MESH = Mesh()


def conference_mesh(mix: ConferenceMix, present: set[str]) -> Mesh:
    members = [m for m in mix.members if m.call_control_id in present]
    listeners = frozenset(m.call_control_id for m in members if not m.on_hold)
    talkers: set[str] = set()
    edges: set[Edge] = set()
    for m in members:
        if m.on_hold:
            edges.add((hold_source(m.hold_audio or mix.hold_audio), m.call_control_id))
            continue
        if mix.comfort_noise:
            edges.add((COMFORT_NOISE, m.call_control_id))
        if m.muted or m.supervisor_role == "monitor":
            continue
        if m.supervisor_role == "whisper":
            edges |= {(m.call_control_id, h) for h in set(m.whisper_to) & listeners if h != m.call_control_id}
        else:
            talkers.add(m.call_control_id)
    return Mesh(frozenset(talkers), listeners, frozenset(edges))


def conference_edges(mix: ConferenceMix, present: set[str]) -> set[Edge]:
    """Every edge of a conference (``conference_mesh`` expanded)."""
    return conference_mesh(mix, present).expand()


def with_flags(mix: ConferenceMix, flags: MemberFlags) -> ConferenceMix:
    """``mix`` with the members ``flags`` names muted or held as it says (the beep of ``mix`` not again)."""
    named = set(flags.call_control_ids)

    def changed(member: ConferenceMember) -> ConferenceMember:
        if member.call_control_id not in named:
            return member
        muted = member.muted if flags.muted is None else flags.muted
        if flags.on_hold is None:
            return replace(member, muted=muted)
        audio = flags.hold_audio if flags.on_hold and flags.hold_audio is not None else member.hold_audio
        return replace(member, muted=muted, on_hold=flags.on_hold or not mix.started, hold_audio=audio)

    return replace(mix, members=tuple(changed(member) for member in mix.members), beep=None)
