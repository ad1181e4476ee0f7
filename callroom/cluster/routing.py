"""Which node carries out each media instruction. Pure: instructions and placements in, a batch per node out.

A call's instructions go to the node its leg lives on; a conference's (its mix, its playback and recording)
to its home, the node that mixes it; a media job's (pause or stop a recording) to the node running it. A
bridge goes to the node of its first call, which links it to the second over relay legs when that one
lives elsewhere. An instruction naming calls on several nodes is split, one per node, when it can be (stop
playback, send DTMF); one that cannot (a playback to both calls of a bridge across nodes: one job, one
``call.playback.ended``) is refused with ``Unroutable``, before anything is committed.

Ids without a placement are the asking node's own (what it has just created, or a single node's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from callroom.errors import CallroomError
from callroom.model import media as m


class Unroutable(CallroomError):
    """An instruction the cluster cannot carry out where its calls live; ``option`` names what asked for it."""

    def __init__(self, option: str, detail: str) -> None:
        self.option = option
        self.detail = detail
        super().__init__(detail)


def route(ops: Sequence[m.MediaOp], placements: Mapping[str, str], here: str) -> dict[str, list[m.MediaOp]]:
    """The instructions for each node, each node's in their original order."""
    out: dict[str, list[m.MediaOp]] = {}

    def node(key: str | None) -> str:
        return placements.get(key, here) if key else here

    def to(where: str, op: m.MediaOp) -> None:
        out.setdefault(where, []).append(op)

    for op in ops:
        match op:
            case (m.ConferenceMix(conference_id=conf) | m.MemberFlags(conference_id=conf)
                  | m.ConferenceClosed(conference_id=conf)):
                to(node(conf), op)
            case m.Play(conference_id=conf) | m.StartRecording(conference_id=conf) if conf:
                to(node(conf), op)
            case m.StopPlay(conference_id=conf) if conf:
                to(node(conf), op)
                if op.call_control_ids:
                    for where, cids in _by_node(op.call_control_ids, node).items():
                        to(where, replace(op, call_control_ids=cids, conference_id=None))
            case m.Play(call_control_ids=cids):
                nodes = {node(c) for c in cids}
                if len(nodes) > 1:
                    raise Unroutable("target_legs", "Playing one audio to calls on different nodes (both legs of a "
                                     "bridge across nodes) is not supported; play to each call.")  # fmt: skip
                to(nodes.pop() if nodes else here, op)
            case m.StopPlay(call_control_ids=cids) | m.SendDtmf(call_control_ids=cids):
                for where, mine in _by_node(cids, node).items():
                    to(where, replace(op, call_control_ids=mine))
            case m.StartRecording(call_control_id=cid):
                to(node(cid), op)
            case m.ControlRecording(job_id=job):
                to(node(job), op)
            case m.Bridge(a=a):
                to(node(a), op)
            case (m.Ring(call_control_id=cid) | m.Answer(call_control_id=cid) | m.Reject(call_control_id=cid)
                  | m.Release(call_control_id=cid) | m.Park(call_control_id=cid)
                  | m.HoldInQueue(call_control_id=cid) | m.Supervise(call_control_id=cid)
                  | m.SipRequestInDialog(call_control_id=cid) | m.Gather(call_control_id=cid)
                  | m.StopGather(call_control_id=cid) | m.StartStream(call_control_id=cid)
                  | m.StopStream(call_control_id=cid) | m.StartFork(call_control_id=cid)
                  | m.StopFork(call_control_id=cid) | m.DetectMachine(call_control_id=cid)
                  | m.StartTranscription(call_control_id=cid) | m.StopTranscription(call_control_id=cid)):
                to(node(cid), op)
    return out


def _by_node(cids: Sequence[str], node: Callable[[str], str]) -> dict[str, tuple[str, ...]]:
    grouped: dict[str, list[str]] = {}
    for cid in cids:
        grouped.setdefault(node(cid), []).append(cid)
    return {where: tuple(mine) for where, mine in grouped.items()}


def named(op: m.MediaOp) -> tuple[str, ...]:
    """The calls an instruction places somewhere in the engine (parks, bridges, queues, hangs up), whose
    relay legs toward another node it replaces. A conference's members are not here: ``relays.py``
    compares a mix's members with the relays it has."""
    match op:
        case m.Park(call_control_id=cid) | m.HoldInQueue(call_control_id=cid) | m.Release(call_control_id=cid):
            return (cid,)
        case m.Reject(call_control_id=cid):
            return (cid,)
        case m.Bridge(a=a, b=b):
            return (a, b)
    return ()
