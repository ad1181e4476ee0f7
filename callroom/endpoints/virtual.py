"""Virtual phones: far ends that live inside the node, for developing and testing applications locally.

Dial ``virtual:<name>`` and options after semicolons decide how the phone behaves:

    virtual:alice                       answers after 0.5 s
    virtual:alice;answer_after=2        answers after 2 s
    virtual:bob;busy                    refuses with 486 Busy Here      (also: reject -> 603, notfound -> 404,
                                                                          unavailable -> 480)
    virtual:carol;noanswer              rings until the dial's timeout_secs
    virtual:dave;hangup_after=10        hangs up 10 s after answering

A virtual phone can also call *in* (``POST /virtual/calls`` or ``callroom phone call``), which gives the
application a ``call.initiated`` exactly as a SIP caller would. Virtual legs and SIP legs are the same
thing to the control plane: both are driven through media instructions and report far-end facts.
Audio for virtual phones arrives with the media engine; today they exchange signalling only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from callroom.control import calls
from callroom.control import media_ops as m
from callroom.control.service import Control, remote_fact

log = logging.getLogger(__name__)

REFUSALS = {"busy": 486, "reject": 603, "notfound": 404, "unavailable": 480}


@dataclass(frozen=True, slots=True)
class VirtualSpec:
    name: str
    answer_after: float = 0.5
    refuse_with: int | None = None
    never_answer: bool = False
    hangup_after: float | None = None

    @classmethod
    def parse(cls, endpoint: str) -> VirtualSpec:
        if not endpoint.startswith("virtual:"):
            raise ValueError(f"not a virtual phone: {endpoint!r}")
        name, *options = endpoint[len("virtual:") :].split(";")
        answer_after, refuse, never, hangup_after = 0.5, None, False, None
        for opt in options:
            key, _, value = opt.strip().partition("=")
            if key == "answer_after":
                answer_after = float(value)
            elif key == "hangup_after":
                hangup_after = float(value)
            elif key == "noanswer":
                never = True
            elif key in REFUSALS:
                refuse = REFUSALS[key]
            elif key:
                raise ValueError(f"unknown virtual phone option {key!r}")
        return cls(name or "phone", answer_after, refuse, never, hangup_after)


@dataclass(slots=True)
class VirtualLeg:
    call_control_id: str
    spec: VirtualSpec
    connected_to: str = "ringing"
    handles: list[asyncio.TimerHandle] = field(default_factory=list)


class VirtualPhones:
    """The in-process far ends; applies the media instructions that concern virtual legs."""

    def __init__(self) -> None:
        self.control: Control | None = None
        self.legs: dict[str, VirtualLeg] = {}

    def bind(self, control: Control) -> None:
        self.control = control

    def apply(self, ops: list[m.MediaOp]) -> None:
        for op in ops:
            self._apply(op)

    def _apply(self, op: m.MediaOp) -> None:
        loop = asyncio.get_running_loop()
        match op:
            case m.Ring(call_control_id=cid, endpoint=endpoint) if endpoint.startswith("virtual:"):
                spec = VirtualSpec.parse(endpoint)
                leg = VirtualLeg(cid, spec)
                self.legs[cid] = leg
                if spec.refuse_with is not None:
                    leg.handles.append(loop.call_later(0.05, self._refuse, cid, spec.refuse_with))
                elif not spec.never_answer:
                    leg.handles.append(loop.call_later(spec.answer_after, self._answer, cid))
            case m.Answer(call_control_id=cid) if cid in self.legs:
                self._connected(cid, "parked")
            case m.Release(call_control_id=cid) | m.Reject(call_control_id=cid):
                self._forget(cid)
            case m.Park(call_control_id=cid):
                self._connected(cid, "parked")
            case m.Bridge(a=a, b=b):
                self._connected(a, f"bridge:{b}")
                self._connected(b, f"bridge:{a}")
            case m.HoldInQueue(call_control_id=cid, queue_id=qid):
                self._connected(cid, f"queue:{qid}")
            case m.ConferenceMix(conference_id=conf_id, members=members):
                for member in members:
                    state = "held" if member.on_hold else "muted" if member.muted else member.supervisor_role
                    self._connected(member.call_control_id, f"conference:{conf_id}:{state}")
            case _:
                pass

    def incoming(self, call_control_id: str, endpoint: str) -> None:
        """Track a virtual phone that called in."""
        self.legs[call_control_id] = VirtualLeg(call_control_id, VirtualSpec.parse(endpoint))

    def _connected(self, cid: str, where: str) -> None:
        leg = self.legs.get(cid)
        if leg is not None:
            leg.connected_to = where

    def _forget(self, cid: str) -> None:
        leg = self.legs.pop(cid, None)
        if leg is not None:
            for handle in leg.handles:
                handle.cancel()

    def _answer(self, cid: str) -> None:
        leg = self.legs.get(cid)
        if leg is None or self.control is None:
            return
        leg.connected_to = "parked"
        remote_fact(self.control, cid, lambda ctx: calls.remote_answered(ctx, cid))
        if leg.spec.hangup_after is not None:
            leg.handles.append(asyncio.get_running_loop().call_later(leg.spec.hangup_after, self.hang_up, cid))

    def _refuse(self, cid: str, status: int) -> None:
        self._forget(cid)
        if self.control is not None:
            remote_fact(self.control, cid, lambda ctx: calls.remote_failed(ctx, cid, status))

    def hang_up(self, cid: str) -> None:
        """The virtual phone hangs up (its user put the receiver down)."""
        self._forget(cid)
        if self.control is not None:
            remote_fact(self.control, cid, lambda ctx: calls.remote_hangup(ctx, cid, "200"))
