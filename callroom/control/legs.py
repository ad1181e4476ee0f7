"""One call leg's moves through its lifecycle table, and the end of a leg that is in nothing any more.

The lowest layer of the commands: it knows calls, not queues, conferences or bridges (``hangup.end_leg``
takes a leg out of those first, then finishes it here).
"""

from __future__ import annotations

from typing import Any

from callroom.control.webhooks import emit_call
from callroom.control.world import Steps, World
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import Call
from callroom.model.states import CALL_TRANSITIONS, CallEvent, CallState, allowed, next_state
from callroom.timefmt import iso

# Telnyx hangup_cause for each SIP status a leg can end with.
SIP_TO_CAUSE = {
    # A trunk that refuses us (credentials, caller ID, a number we may not call) rejected the call.
    401: "call_rejected",
    403: "call_rejected",
    407: "call_rejected",
    404: "not_found",
    408: "timeout",
    410: "not_found",
    484: "not_found",
    480: "no_answer",
    486: "user_busy",
    487: "originator_cancel",
    488: "call_rejected",  # Not Acceptable Here: no media both ends accept (codecs, SRTP or plain RTP)
    600: "user_busy",
    603: "call_rejected",
}

CALL_TIMERS = ("dial_timeout", "time_limit", "first_command", "ring_timeout")


def move(call: Call, event: CallEvent) -> None:
    """Through the call table: the new state, or the table's refusal."""
    call.state = next_state("call", CALL_TRANSITIONS, call.state, event)


def check(call: Call, event: CallEvent) -> None:
    """Whether the call's table allows ``event`` now (its refusal if not), without moving."""
    allowed("call", CALL_TRANSITIONS, call.state, event)


def finish(w: World, call: Call, *, cause: str, source: str, sip_cause: str = "unspecified", release: bool = True,
           quality: dict[str, Any] | None = None) -> None:  # fmt: skip
    """The leg is over (it is in no queue, conference or bridge any more): ended, its timers cancelled,
    ``call.hangup``, and (``release``) the media plane told to end it. ``quality``: the media's
    ``call_quality_stats`` for the leg, when it has them."""
    if call.state is CallState.ENDED:
        return
    move(call, CallEvent.HANGUP)
    call.ended_at = w.now
    call.hangup_cause = cause
    call.hangup_source = source
    call.sip_hangup_cause = sip_cause
    call.bridged_with = None
    call.conference_id = None
    call.queue_id = None
    w.update(call)
    w.cancel(CALL_TIMERS, call.call_control_id)
    emit_call(
        w, "call.hangup", call, hangup_cause=cause, hangup_source=source, sip_hangup_cause=sip_cause,
        start_time=iso(call.created_at), end_time=iso(call.ended_at), state="hangup",
        **({"call_quality_stats": quality} if quality else {}),
    )
    if release:
        w.media.append(m.Release(call.call_control_id))
    ringing_for_it = (call.plan or {}).get("transfer_to")
    if ringing_for_it:  # its transfer's leg is cancelled at once, by a timer (this layer reads nothing)
        w.schedule("transfer_cancel", str(ringing_for_it), w.now)


def park(w: World, call: Call, event: CallEvent) -> None:
    """Back to parked (left a queue, a conference or a bridge), hearing nothing."""
    move(call, event)
    w.update(call)
    w.media.append(m.Park(call.call_control_id))


def hangup_source_for_local(call: Call) -> str:
    """Who ended the call when *we* end it: we are the caller on outgoing legs, the callee on incoming."""
    return "caller" if call.direction == "outgoing" else "callee"


def hangup_source_for_remote(call: Call) -> str:
    return "callee" if call.direction == "outgoing" else "caller"


def leave_bridge(w: World, call: Call) -> Steps[None]:
    """Before ``call`` goes somewhere else: its bridge partner is let go (parked if it asked to be, otherwise
    hung up)."""
    if call.state is not CallState.BRIDGED or not call.bridged_with:
        return
    yield from w.load(r.CallById(call.bridged_with))
    partner = w.call(call.bridged_with)
    call.bridged_with = None
    if partner is not None and partner.state is CallState.BRIDGED:
        unbridged(w, partner)


def unbridged(w: World, call: Call) -> None:
    """The other side of ``call``'s bridge went away: park it if asked to, otherwise hang it up."""
    call.bridged_with = None
    if call.park_after_unbridge == "self" or call.hold_after_unbridge:
        park(w, call, CallEvent.UNBRIDGE)
    else:
        finish(w, call, cause="normal_clearing", source=hangup_source_for_local(call))
