"""Ending a leg wherever it is: out of its queue, its conference or its bridge first, then finished."""

from __future__ import annotations

from typing import Any

from callroom.control import conferences, links, queues
from callroom.control.legs import finish, unbridged
from callroom.control.world import Steps, World
from callroom.model import reads as r
from callroom.model.records import Call
from callroom.model.states import CallState


def end_leg(w: World, call: Call, *, cause: str, source: str, sip_cause: str = "unspecified", release: bool = True,
            quality: dict[str, Any] | None = None) -> Steps[None]:  # fmt: skip
    """The leg is over: it leaves its queue (``call.dequeued``, unless kept after hangup), its conference
    (``conference.participant.left``, and the conference may end) or its bridge (the partner is parked or
    hung up), then ``call.hangup``; ``release``: the media plane is told to end it."""
    if call.state is CallState.ENDED:
        return
    yield from links.ending(w, call)
    if call.state is CallState.QUEUED:
        yield from queues.leave_on_hangup(w, call)
    elif call.state is CallState.CONFERENCED and call.conference_id:
        yield from conferences.leg_hung_up(w, call)
    elif call.state is CallState.BRIDGED and call.bridged_with:
        partner_id = call.bridged_with
        call.bridged_with = None
        yield from w.load(r.CallById(partner_id))
        partner = w.call(partner_id)
        if partner is not None and partner.state is CallState.BRIDGED:
            unbridged(w, partner)
    finish(w, call, cause=cause, source=source, sip_cause=sip_cause, release=release, quality=quality)
