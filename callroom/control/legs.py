"""Moving one call leg between its states, with the webhooks and media instructions each move causes.

These are the shared building blocks of the commands: ending a leg (and what that does to its bridge
partner, its queue and its conference), bridging two legs, unbridging, parking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callroom.control.context import Ctx
from callroom.model import media as m
from callroom.model.records import Call
from callroom.model.states import CALL_TRANSITIONS, CallEvent, CallState, DequeueReason, next_state
from callroom.timefmt import iso

if TYPE_CHECKING:
    from callroom.control import queues

# Telnyx hangup_cause for each SIP status a leg can end with.
SIP_TO_CAUSE = {
    404: "not_found",
    480: "no_answer",
    486: "user_busy",
    487: "originator_cancel",
    600: "user_busy",
    603: "call_rejected",
}

def move(call: Call, event: CallEvent) -> None:
    call.state = next_state("call", CALL_TRANSITIONS, call.state, event)


def end_leg(
    ctx: Ctx,
    call: Call,
    *,
    cause: str,
    source: str,
    sip_cause: str = "unspecified",
    release: bool = True,
    quality: dict[str, Any] | None = None,
) -> None:
    """The leg is over: leave its queue/conference/bridge, mark it ended, tell the app and the media.
    ``quality``: the media's ``call_quality_stats`` for the leg, when it has them."""
    # Imported here: conferences and queues call back into this module.
    from callroom.control import conferences, queues

    if call.state is CallState.ENDED:
        return
    if call.state is CallState.QUEUED:
        queues.leave_on_hangup(ctx, call)
    elif call.state is CallState.CONFERENCED and call.conference_id:
        conferences.leg_hung_up(ctx, call)
    elif call.state is CallState.BRIDGED and call.bridged_with:
        partner_id = call.bridged_with
        call.bridged_with = None
        partner = ctx.tx.get_call(ctx.account_id, partner_id, lock=True)
        if partner is not None and partner.state is CallState.BRIDGED:
            after_unbridge(ctx, partner)
    move(call, CallEvent.HANGUP)
    call.ended_at = ctx.now
    call.hangup_cause = cause
    call.hangup_source = source
    call.sip_hangup_cause = sip_cause
    call.bridged_with = None
    call.conference_id = None
    call.queue_id = None
    ctx.tx.update_call(call)
    for kind in ("dial_timeout", "time_limit", "first_command", "ring_timeout"):
        ctx.cancel(kind, call.call_control_id)
    ctx.emit_call(
        "call.hangup",
        call,
        hangup_cause=cause,
        hangup_source=source,
        sip_hangup_cause=sip_cause,
        start_time=iso(call.created_at),
        end_time=iso(call.ended_at),
        state="hangup",
        **({"call_quality_stats": quality} if quality else {}),
    )
    if release:
        ctx.media.append(m.Release(call.call_control_id))


def after_unbridge(ctx: Ctx, call: Call) -> None:
    """The other side of ``call``'s bridge went away: park it if asked to, otherwise hang it up."""
    call.bridged_with = None
    if call.park_after_unbridge == "self" or call.hold_after_unbridge:
        move(call, CallEvent.UNBRIDGE)
        ctx.tx.update_call(call)
        ctx.media.append(m.Park(call.call_control_id))
    else:
        end_leg(ctx, call, cause="normal_clearing", source=hangup_source_for_local(call))


def leave_current_bridge(ctx: Ctx, call: Call) -> None:
    """Before ``call`` goes somewhere else: release its bridge partner (parked or hung up)."""
    if call.state is CallState.BRIDGED and call.bridged_with:
        partner = ctx.tx.get_call(ctx.account_id, call.bridged_with, lock=True)
        call.bridged_with = None
        if partner is not None and partner.state is CallState.BRIDGED:
            after_unbridge(ctx, partner)


def bridge_pair(ctx: Ctx, a: Call, b: Call, *, head: queues.Head | None = None) -> None:
    """Connect two answered legs; each gets ``call.bridged``. (``head``: a queue's head entry the
    caller has already read, when one of the legs is being dequeued.)"""
    from callroom.control import queues

    for leg in (a, b):
        if leg.state is CallState.QUEUED:
            queues.remove_from_queue(ctx, leg, DequeueReason.BRIDGED, park=False, head=head)
        elif leg.state is CallState.BRIDGED and leg.bridged_with not in (a.call_control_id, b.call_control_id):
            leave_current_bridge(ctx, leg)
    for leg, other in ((a, b), (b, a)):
        move(leg, CallEvent.BRIDGE)
        leg.bridged_with = other.call_control_id
        ctx.tx.update_call(leg)
    ctx.media.append(m.Bridge(a.call_control_id, b.call_control_id))
    ctx.emit_call("call.bridged", a)
    ctx.emit_call("call.bridged", b)


def hangup_source_for_local(call: Call) -> str:
    """Who ended the call when *we* end it: we are the caller on outgoing legs, the callee on incoming."""
    return "caller" if call.direction == "outgoing" else "callee"


def hangup_source_for_remote(call: Call) -> str:
    return "callee" if call.direction == "outgoing" else "caller"
