"""Virtual phones: far ends that live inside the node, for developing and testing applications locally.

Dial ``virtual:<name>`` with options after semicolons (``virtual:alice;answer_after=2``, ``virtual:bob;busy``,
``tone=500``, ``say=Hello``, ``play=greeting``, ``voicemail``; the address and its options are
``model/virtual_phone.py``'s) to decide how the phone behaves.

A virtual phone can also call *in* (``POST /virtual/calls`` or ``callroom phone call``), which gives the
application a ``call.initiated`` exactly as a SIP caller would. Once connected, a virtual phone is a
leg of the media engine like any RTP leg: it sends its tone or says what it was given (and in-band DTMF
when its user presses keys) and records everything it hears, which ``GET /virtual/calls/{id}/heard.wav`` returns.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from callroom.control import calls
from callroom.control.service import Control, remote_fact
from callroom.endpoints.media_process import MediaProcess
from callroom.model import media as m
from callroom.model.messages import AddVirtualLeg, PressKeys, RemoveLeg
from callroom.model.virtual_phone import VirtualSpec

log = logging.getLogger(__name__)

@dataclass(slots=True)
class VirtualLeg:
    call_control_id: str
    spec: VirtualSpec
    connected_to: str = "ringing"
    audio: bool = False  # its audio leg exists in the media process
    member: m.ConferenceMember | None = None  # as its conference's mix (or a flag change since) has it
    handles: list[asyncio.TimerHandle] = field(default_factory=list)
    speech: m.AudioSpec | None = None  # what it says once answered (its say= or play=, as the control resolved it)


class VirtualPhones:
    """The in-process far ends; applies the media instructions that concern virtual legs."""

    def __init__(self, media: MediaProcess | None = None) -> None:
        self.control: Control | None = None
        self.media = media
        self.legs: dict[str, VirtualLeg] = {}

    def bind(self, control: Control) -> None:
        self.control = control

    def apply(self, ops: list[m.MediaOp]) -> None:
        for op in ops:
            self._apply(op)

    def _apply(self, op: m.MediaOp) -> None:
        loop = asyncio.get_running_loop()
        match op:
            case m.Ring(call_control_id=cid, endpoint=endpoint, speech=speech) if endpoint.startswith("virtual:"):
                spec = VirtualSpec.parse(endpoint)
                leg = VirtualLeg(cid, spec, speech=speech)
                self.legs[cid] = leg
                if spec.refuse_with is not None:
                    leg.handles.append(loop.call_later(0.05, self._refuse, cid, spec.refuse_with))
                elif not spec.never_answer:
                    leg.handles.append(loop.call_later(spec.answer_after, self._answer, cid))
            case m.Answer(call_control_id=cid) if cid in self.legs:
                self._connect_audio(cid)
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
                    self._member(conf_id, member)
            case m.MemberFlags(conference_id=conf_id, call_control_ids=cids, muted=muted, on_hold=on_hold):
                for cid in cids:
                    was = self.legs[cid].member if cid in self.legs else None
                    if was is not None:
                        self._member(conf_id, replace(was, muted=was.muted if muted is None else muted,
                                                      on_hold=was.on_hold if on_hold is None else on_hold))
            case _:
                pass

    def _member(self, conference_id: str, member: m.ConferenceMember) -> None:
        leg = self.legs.get(member.call_control_id)
        if leg is None:
            return
        leg.member = member
        state = "held" if member.on_hold else "muted" if member.muted else member.supervisor_role
        leg.connected_to = f"conference:{conference_id}:{state}"

    def incoming(self, call_control_id: str, endpoint: str, speech: m.AudioSpec | None = None) -> None:
        """Track a virtual phone that called in (``speech``: what it says once answered)."""
        self.legs[call_control_id] = VirtualLeg(call_control_id, VirtualSpec.parse(endpoint), speech=speech)

    def press(self, cid: str, digits: str, duration_ms: int = 100) -> bool:
        """The phone's user presses keys (sent in-band, as tones in its audio)."""
        leg = self.legs.get(cid)
        if leg is None or not leg.audio or self.media is None:
            return False
        self.media.send(PressKeys(cid, digits, duration_ms))
        return True

    async def heard(self, cid: str, seconds: float | None) -> NDArray[np.int16] | None:
        """What the phone heard (the last ``seconds``), from its audio leg in the media process."""
        leg = self.legs.get(cid)
        if leg is None or not leg.audio or self.media is None:
            return None
        return await self.media.heard(cid, seconds)

    def _connect_audio(self, cid: str) -> None:
        leg = self.legs[cid]
        leg.connected_to = "parked"
        if self.media is None or leg.audio:
            return
        leg.audio = True
        self.media.send(AddVirtualLeg(cid, leg.spec.tone_hz, leg.spec.cadence_ms, leg.spec.beep_hz, leg.speech))

    def _connected(self, cid: str, where: str) -> None:
        leg = self.legs.get(cid)
        if leg is not None:
            leg.connected_to = where
            leg.member = None

    def _forget(self, cid: str) -> None:
        leg = self.legs.pop(cid, None)
        if leg is None:
            return
        for handle in leg.handles:
            handle.cancel()
        if leg.audio and self.media is not None:
            self.media.send(RemoveLeg(cid))

    def _answer(self, cid: str) -> None:
        leg = self.legs.get(cid)
        if leg is None or self.control is None:
            return
        self._connect_audio(cid)
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
