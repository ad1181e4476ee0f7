"""Call-control commands on legs (dial, answer, reject, hangup, bridge) and far-end facts about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callroom.control.context import Ctx
from callroom.control.guards import answered_call, get_call, live_call, reject
from callroom.control.legs import (
    SIP_TO_CAUSE,
    bridge_pair,
    end_leg,
    hangup_source_for_local,
    hangup_source_for_remote,
    move,
)
from callroom.errors import CommandRejected, NotFound
from callroom.model import media as m
from callroom.model.records import Call, new_call_control_id, new_uuid
from callroom.model.states import CallEvent, CallState
from callroom.timefmt import iso

REJECT_CAUSES = {
    "CALL_REJECTED": ("call_rejected", 603),
    "USER_BUSY": ("user_busy", 486),
    "NOT_FOUND": ("not_found", 404),
    "TEMPORARILY_UNAVAILABLE": ("unspecified", 480),
}



@dataclass(slots=True)
class DialRequest:
    connection_id: str
    from_: str
    to: str
    client_state: str | None = None
    timeout_secs: int = 30
    time_limit_secs: int = 14400
    webhook_url: str | None = None
    webhook_url_method: str = "POST"
    conference_config: dict[str, Any] | None = None
    link_to: str | None = None
    bridge_on_answer: bool = False
    park_after_unbridge: str | None = None


def dial(ctx: Ctx, req: DialRequest) -> Call:
    app = ctx.app(req.connection_id)
    if app is None:
        raise CommandRejected(
            "10015", "Invalid value", f"No call control application with id {req.connection_id!r}.",
            "/connection_id",
        )
    if not app.active:
        raise CommandRejected("10015", "Invalid value", "This application is not active.", "/connection_id")
    if not req.to.startswith(ctx.dialable):
        raise reject(
            "90108",
            f"This node can dial {' and '.join(repr(p + '...') for p in ctx.dialable)}; "
            "phone numbers need a SIP trunk, which is not configured.",
            "/to",
        )
    session_id = new_uuid()
    if req.link_to:
        linked = ctx.tx.get_call(ctx.account_id, req.link_to)
        if linked is None:
            raise CommandRejected("90015", "Invalid Call Control ID", "link_to names no call.", "/link_to")
        session_id = linked.call_session_id
    call = Call(
        call_control_id=new_call_control_id(),
        call_leg_id=new_uuid(),
        call_session_id=session_id,
        account_id=ctx.account_id,
        connection_id=req.connection_id,
        direction="outgoing",
        from_=req.from_,
        to=req.to,
        state=CallState.RINGING,
        created_at=ctx.now,
        node_id=ctx.node_id,
        endpoint=req.to,
        client_state=req.client_state,
        timeout_secs=req.timeout_secs,
        time_limit_secs=req.time_limit_secs,
        webhook_url=req.webhook_url,
        webhook_url_method=req.webhook_url_method,
        conference_config=req.conference_config,
        link_to=req.link_to,
        bridge_on_answer=req.bridge_on_answer,
        park_after_unbridge=req.park_after_unbridge,
    )
    ctx.tx.insert_call(call)
    ctx.command_result = call.call_control_id
    ctx.emit_call(
        "call.initiated", call, direction="outgoing", state="bridging", start_time=iso(call.created_at),
        custom_headers=[],
    )
    ctx.schedule("dial_timeout", call.call_control_id, ctx.now + req.timeout_secs)
    ctx.media.append(m.Ring(call.call_control_id, call.endpoint, call.from_, call.to, req.timeout_secs))
    return call


def incoming(ctx: Ctx, *, connection_id: str, from_: str, to: str, endpoint: str) -> Call:
    """A far end calls in (a SIP INVITE or a virtual phone): a ringing leg the application must answer."""
    app = ctx.app(connection_id)
    if app is None or not app.active:
        raise NotFound(f"No active application {connection_id!r} to take this call.")
    call = Call(
        call_control_id=new_call_control_id(),
        call_leg_id=new_uuid(),
        call_session_id=new_uuid(),
        account_id=ctx.account_id,
        connection_id=connection_id,
        direction="incoming",
        from_=from_,
        to=to,
        state=CallState.RINGING,
        created_at=ctx.now,
        node_id=ctx.node_id,
        endpoint=endpoint,
    )
    ctx.tx.insert_call(call)
    ctx.emit_call(
        "call.initiated", call, direction="incoming", state="parked", start_time=iso(call.created_at),
        custom_headers=[], caller_id_name=from_,
    )
    if app.first_command_timeout:
        ctx.schedule("first_command", call.call_control_id, ctx.now + app.first_command_timeout_secs)
    if ctx.ring_timeout_secs > 0:
        ctx.schedule("ring_timeout", call.call_control_id, ctx.now + ctx.ring_timeout_secs)
    return call


def _touch(ctx: Ctx, call: Call, client_state: str | None) -> None:
    ctx.cancel("first_command", call.call_control_id)
    if client_state is not None:
        call.client_state = client_state


def answer(
    ctx: Ctx, call_control_id: str, *, client_state: str | None, webhook_url: str | None, webhook_url_method: str | None
) -> None:
    call = live_call(ctx, call_control_id)
    if call.direction != "incoming" or call.state is not CallState.RINGING:
        raise reject("90107", "Only a ringing incoming call can be answered.")
    _touch(ctx, call, client_state)
    ctx.cancel("ring_timeout", call.call_control_id)
    if webhook_url is not None:
        call.webhook_url = webhook_url
    if webhook_url_method is not None:
        call.webhook_url_method = webhook_url_method
    _answered(ctx, call)
    ctx.media.append(m.Answer(call.call_control_id))


def _answered(ctx: Ctx, call: Call) -> None:
    move(call, CallEvent.ANSWER)
    call.answered_at = ctx.now
    ctx.tx.update_call(call)
    ctx.cancel("dial_timeout", call.call_control_id)
    ctx.schedule("time_limit", call.call_control_id, ctx.now + call.time_limit_secs)
    ctx.emit_call("call.answered", call, state="answered", start_time=iso(call.created_at), custom_headers=[])


def reject_call(ctx: Ctx, call_control_id: str, *, cause: str, client_state: str | None) -> None:
    call = live_call(ctx, call_control_id)
    if call.direction != "incoming" or call.state is not CallState.RINGING:
        raise reject("90107", "Only a ringing incoming call can be rejected.")
    _touch(ctx, call, client_state)
    hangup_cause, sip_status = REJECT_CAUSES[cause]
    end_leg(ctx, call, cause=hangup_cause, source="callee", sip_cause=str(sip_status), release=False)
    ctx.media.append(m.Reject(call.call_control_id, sip_status))


def hangup(ctx: Ctx, call_control_id: str, *, client_state: str | None,
           quality: dict[str, Any] | None = None) -> None:  # fmt: skip
    """``quality``: the leg's call_quality_stats, when the media plane has them (SIP legs)."""
    call = live_call(ctx, call_control_id)
    _touch(ctx, call, client_state)
    cause = "originator_cancel" if call.state is CallState.RINGING and call.direction == "outgoing" else (
        "normal_clearing"
    )
    end_leg(ctx, call, cause=cause, source=hangup_source_for_local(call), quality=quality)


def bridge(
    ctx: Ctx,
    call_control_id: str,
    other_id: str,
    *,
    client_state: str | None,
    park_after_unbridge: str | None,
    hold_after_unbridge: bool | None,
    prevent_double_bridge: bool,
) -> None:
    a = answered_call(ctx, call_control_id)
    if other_id == call_control_id:
        raise CommandRejected("10015", "Invalid value", "A call cannot be bridged with itself.", "/call_control_id")
    b = answered_call(ctx, other_id, pointer="/call_control_id")
    if prevent_double_bridge and b.state is CallState.BRIDGED:
        raise reject("90107", "The target call is already bridged.", "/call_control_id")
    for leg in (a, b):
        if leg.state is CallState.CONFERENCED:
            raise reject("90104", "A conference participant cannot be bridged; leave the conference first.")
    _touch(ctx, a, client_state)
    if park_after_unbridge is not None:
        a.park_after_unbridge = park_after_unbridge
    if hold_after_unbridge is not None:
        a.hold_after_unbridge = hold_after_unbridge
    bridge_pair(ctx, a, b)


# -- far-end facts (reported by the media plane) -----------------------------------------------------


def remote_answered(ctx: Ctx, call_control_id: str) -> None:
    from callroom.control import conferences

    call = get_call(ctx, call_control_id)
    if call.state is not CallState.RINGING or call.direction != "outgoing":
        return
    _answered(ctx, call)
    if call.conference_config:
        conferences.join_from_dial(ctx, call, call.conference_config)
    elif call.bridge_on_answer and call.link_to:
        other = ctx.tx.get_call(ctx.account_id, call.link_to, lock=True)
        if other is not None and other.is_alive and other.state is not CallState.RINGING:
            bridge_pair(ctx, call, other)


def remote_failed(ctx: Ctx, call_control_id: str, sip_status: int) -> None:
    """An outgoing leg was refused (busy, declined, not found, unreachable)."""
    call = get_call(ctx, call_control_id)
    if not call.is_alive:
        return
    cause = SIP_TO_CAUSE.get(sip_status, "unspecified")
    end_leg(ctx, call, cause=cause, source="callee", sip_cause=str(sip_status), release=False)


def remote_hangup(
    ctx: Ctx, call_control_id: str, sip_cause: str = "unspecified", quality: dict[str, Any] | None = None
) -> None:
    call = get_call(ctx, call_control_id)
    if not call.is_alive:
        return
    cause = "originator_cancel" if call.state is CallState.RINGING and call.direction == "incoming" else (
        "normal_clearing"
    )
    end_leg(ctx, call, cause=cause, source=hangup_source_for_remote(call), sip_cause=sip_cause, release=False,
            quality=quality)


def on_timer(ctx: Ctx, kind: str, call_control_id: str) -> None:
    call = ctx.tx.get_call(ctx.account_id, call_control_id, lock=True)
    if call is None or not call.is_alive:
        return
    if kind == "dial_timeout" and call.state is CallState.RINGING:
        end_leg(ctx, call, cause="timeout", source="callee", sip_cause="487")
    elif kind == "time_limit":
        end_leg(ctx, call, cause="time_limit", source=hangup_source_for_local(call))
    elif kind in ("first_command", "ring_timeout") and call.state is CallState.RINGING:
        # Nobody took the call: the caller hears 480 Temporarily Unavailable, as the webhook says.
        end_leg(ctx, call, cause="timeout", source="callee", sip_cause="480", release=False)
        ctx.media.append(m.Reject(call.call_control_id, 480))


def media_timeout(ctx: Ctx, call_control_id: str, quality: dict[str, Any] | None = None) -> None:
    """The far end of an answered leg sent nothing for the node's RTP timeout: the media plane hung it up."""
    call = get_call(ctx, call_control_id)
    if call.is_alive:
        end_leg(ctx, call, cause="timeout", source="unknown", release=False, quality=quality)


def dtmf_received(ctx: Ctx, call_control_id: str, digit: str) -> None:
    """A digit from the far end (RFC 4733 or in-band): ``call.dtmf.received``."""
    call = ctx.tx.get_call(ctx.account_id, call_control_id)
    if call is not None and call.is_alive:
        ctx.emit_call("call.dtmf.received", call, digit=digit)


def node_restarted(ctx: Ctx, call: Call) -> None:
    """This leg belonged to a node process that died: its media is gone, so the leg is over."""
    if call.is_alive:
        end_leg(ctx, call, cause="unspecified", source="unknown", release=False)
