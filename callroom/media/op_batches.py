"""The instructions that arrive for one tick, with the conference mixes that a later one supersedes left out.

A ``ConferenceMix`` is a conference's whole who-hears-whom as it should be from now on; the media process
applies what arrived since its last tick together. A busy conference (every mute, hold or join sends
one) gets several per tick, of which only the last can be heard: the engine rebuilt the conference's
mesh, and the mixer compiled the change, for each of them (half of the media process's CPU under the API
benchmark). An earlier mix is left out only where that changes nothing but the work: the later one names
all of its legs, nothing between the two touched a leg of the earlier one (a park, bridge, queue or
hang-up of such a leg, or another conference's mix naming it), nothing else came in between that the
engine might tie to the conference (a media action, the conference closed, anything unknown here), and it
asks for no beep.
"""

from __future__ import annotations

from collections.abc import Sequence

from callroom.model import media as m


def _legs_of(op: m.MediaOp) -> tuple[str, ...] | None:
    """The legs an instruction places (None: not a placement, so it may concern anything)."""
    match op:
        case m.Park(call_control_id=cid) | m.Release(call_control_id=cid) | m.Reject(call_control_id=cid):
            return (cid,)
        case m.HoldInQueue(call_control_id=cid) | m.Supervise(call_control_id=cid):
            return (cid,)
        case m.Bridge(a=a, b=b):
            return (a, b)
        case m.ConferenceMix(members=members):
            return tuple(member.call_control_id for member in members)
        case _:
            return None


def without_superseded_mixes(ops: Sequence[m.MediaOp]) -> list[m.MediaOp]:
    """``ops`` in order, less each ``ConferenceMix`` that a later one of the same conference supersedes."""
    keep = [True] * len(ops)
    # Per conference: the index of its latest mix so far that may still be left out, and that mix's legs.
    open_mixes: dict[str, tuple[int, frozenset[str]]] = {}
    for i, op in enumerate(ops):
        legs = _legs_of(op)
        if legs is None:  # anything else: no earlier mix is left out across it
            open_mixes.clear()
            continue
        touched = set(legs)
        conference = op.conference_id if isinstance(op, m.ConferenceMix) else None
        for other, (_j, other_legs) in list(open_mixes.items()):
            if other != conference and touched & other_legs:
                del open_mixes[other]
        if isinstance(op, m.ConferenceMix):
            earlier = open_mixes.get(op.conference_id)
            # A leg the later mix no longer names stays placed in the conference by the earlier one (until
            # whatever moves it, usually right after): only a mix whose legs the later one names goes.
            if earlier is not None and earlier[1] <= touched:
                keep[earlier[0]] = False
            if op.beep is None:
                open_mixes[op.conference_id] = (i, frozenset(touched))
            else:  # its beep must be played: it stays, and so do the mixes before it
                open_mixes.pop(op.conference_id, None)
    return [op for op, kept in zip(ops, keep, strict=True) if kept]
