"""Call-control commands on legs (dial, answer, reject, hangup) and far-end facts about them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from callroom.control import bridges, conferences, links
from callroom.control.guards import live, reject
from callroom.control.hangup import end_leg
from callroom.control.legs import SIP_TO_CAUSE, hangup_source_for_local, hangup_source_for_remote, move
from callroom.control.trunking import through_trunk
from callroom.control.virtual_far_end import virtual_speech
from callroom.control.webhooks import emit_call
from callroom.control.world import Steps, World
from callroom.errors import CommandRejected, NotFound
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.numbers import is_number
from callroom.model.records import Application, Call, new_call_control_id, new_uuid
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
    ring_also: tuple[str, ...] = ()  # more destinations, rung at the same time (a dial's ``to`` as a list)
    supervise: str | None = None  # a call the new leg supervises once it answers, with ``supervisor_role``
    supervisor_role: str = "barge"
    headers: tuple[tuple[str, str], ...] = ()  # custom_headers and sip_headers: put on a SIP INVITE
    credentials: tuple[str, str] | None = field(default=None, repr=False)  # sip_auth_username/password
    prevent_double_bridge: bool = False  # with bridge_on_answer: not when link_to is bridged by then
    from_display_name: str | None = None  # the SIP From's display name
    anonymous: bool = False  # privacy: id
    on_answer: links.OnAnswer = field(default_factory=links.OnAnswer)


def dial(w: World, req: DialRequest) -> Steps[Call]:
    """Dial ``to`` (and ``ring_also``: every destination rings at once, the first to answer wins and the
    others are cancelled); the first leg is the command's result."""
    yield from w.load(r.AppById(req.connection_id), *([r.CallById(req.link_to, lock=False)] if req.link_to else []),
                      *([r.CallById(req.supervise, lock=False)] if req.supervise else []),
                      *req.on_answer.reads())  # fmt: skip
    app: Application | None = w.result(r.AppById(req.connection_id))
    if app is None:
        raise CommandRejected(
            "10015", "Invalid value", f"No call control application with id {req.connection_id!r}.",
            "/connection_id",
        )
    if not app.active:
        raise CommandRejected("10015", "Invalid value", "This application is not active.", "/connection_id")
    targets = (req.to, *req.ring_also)
    endpoints = [_far_end(w, to, app=app, from_=req.from_) for to in targets]
    if req.conference_config is not None and not (req.conference_config.get("id")
                                                  or req.conference_config.get("conference_name")):
        raise CommandRejected("10015", "Invalid value", "conference_config names no conference: give its id or "
                              "a conference_name (created when the call answers if it does not exist).",
                              "/conference_config")
    speech = []
    for i, endpoint in enumerate(endpoints):
        speech.append((yield from virtual_speech(w, endpoint, "/to" if len(targets) == 1 else f"/to/{i}")))
    session_id = new_uuid()
    if req.link_to:
        linked = w.call(req.link_to)
        if linked is None:
            raise CommandRejected("90015", "Invalid Call Control ID", "link_to names no call.", "/link_to")
        session_id = linked.call_session_id
    plan = req.on_answer.plan(w)
    if req.prevent_double_bridge:
        plan["prevent_double_bridge"] = True
    if req.supervise:
        live(w, req.supervise, pointer="/supervise_call_control_id")
        plan.update(supervise=req.supervise, role=req.supervisor_role)
    ids = [new_call_control_id() for _ in targets]
    legs = []
    for cid, to, endpoint, says in zip(ids, targets, endpoints, speech, strict=True):
        group = {"ring_group": [other for other in ids if other != cid]} if len(ids) > 1 else {}
        call = Call(
            call_control_id=cid, call_leg_id=new_uuid(), call_session_id=session_id,
            account_id=w.account_id, connection_id=req.connection_id, direction="outgoing", from_=req.from_, to=to,
            state=CallState.RINGING, created_at=w.now, node_id=w.node_id, endpoint=endpoint,
            client_state=req.client_state, timeout_secs=req.timeout_secs, time_limit_secs=req.time_limit_secs,
            webhook_url=req.webhook_url, webhook_url_method=req.webhook_url_method,
            conference_config=req.conference_config, link_to=req.link_to, bridge_on_answer=req.bridge_on_answer,
            park_after_unbridge=req.park_after_unbridge, plan={**plan, **group} or None,
        )  # fmt: skip
        w.insert(call)
        emit_call(w, "call.initiated", call, direction="outgoing", state="bridging",
                  start_time=iso(call.created_at), custom_headers=[])
        w.schedule("dial_timeout", call.call_control_id, w.now + req.timeout_secs)
        w.media.append(m.Ring(call.call_control_id, call.endpoint, call.from_, call.to, req.timeout_secs,
                              req.headers, req.credentials, req.from_display_name, req.anonymous, says))
        legs.append(call)
    w.command_result = legs[0].call_control_id
    return legs[0]


def _far_end(w: World, to: str, *, app: Application | None = None, from_: str = "") -> str:
    """What rings when ``to`` is dialled: a number through the node's number plan (the call keeps the number as
    its ``to``), else through the SIP trunk the application's outbound settings choose; anything else as it
    is; 90108 when this node cannot ring it."""
    endpoint = to
    if is_number(to):
        planned = w.numbers.endpoint_for(to)
        if planned is None and app is not None:
            planned = through_trunk(w, app, to, from_)
        if planned is None:
            raise reject("90108", f"{to} is not in this node's number plan (--number, --number-plan), and phone "
                         "numbers need a SIP trunk, which is not configured (callroom trunks add, /v2/trunks; "
                         "an application chooses one with outbound.outbound_voice_profile_id).", "/to")
        endpoint = planned
    if not endpoint.startswith(w.dialable):
        raise reject(
            "90108",
            f"This node can dial {' and '.join(repr(p + '...') for p in w.dialable)}"
            + (f" ({to} is planned as {endpoint})" if endpoint != to else "")
            + "; phone numbers need a SIP trunk, which is not configured.",
            "/to",
        )
    return endpoint


def incoming(w: World, *, connection_id: str, from_: str, to: str, endpoint: str,
             headers: tuple[tuple[str, str], ...] = ()) -> Steps[Call]:  # fmt: skip
    """A far end calls in (a SIP INVITE or a virtual phone): a ringing leg the application must answer.
    ``headers``: the INVITE's X- headers (``custom_headers`` of ``call.initiated``) and User-to-User
    (``sip_headers``)."""
    yield from w.load(r.AppById(connection_id))
    app: Application | None = w.result(r.AppById(connection_id))
    if app is None or not app.active:
        raise NotFound(f"No active application {connection_id!r} to take this call.")
    call = Call(
        call_control_id=new_call_control_id(), call_leg_id=new_uuid(), call_session_id=new_uuid(),
        account_id=w.account_id, connection_id=connection_id, direction="incoming", from_=from_, to=to,
        state=CallState.RINGING, created_at=w.now, node_id=w.node_id, endpoint=endpoint,
    )  # fmt: skip
    w.insert(call)
    uui = [{"name": "User-to-User", "value": v} for n, v in headers if n.lower() == "user-to-user"]
    emit_call(w, "call.initiated", call, direction="incoming", state="parked", start_time=iso(call.created_at),
              custom_headers=[{"name": n, "value": v} for n, v in headers if n.lower().startswith("x-")],
              caller_id_name=from_, **({"sip_headers": uui} if uui else {}))
    if app.first_command_timeout:
        w.schedule("first_command", call.call_control_id, w.now + app.first_command_timeout_secs)
    if w.ring_timeout_secs > 0:
        w.schedule("ring_timeout", call.call_control_id, w.now + w.ring_timeout_secs)
    return call


def _touch(w: World, call: Call, client_state: str | None) -> None:
    w.cancel("first_command", call.call_control_id)
    if client_state is not None:
        call.client_state = client_state


def update_client_state(w: World, call_control_id: str, client_state: str) -> Steps[None]:
    """``client_state_update``: the state the call's later webhooks carry; nothing else changes."""
    yield from w.load(r.CallById(call_control_id))
    call = live(w, call_control_id)
    call.client_state = client_state
    w.update(call)


def answer(w: World, call_control_id: str, *, client_state: str | None, webhook_url: str | None,
           webhook_url_method: str | None, record: dict[str, Any] | None = None,
           headers: tuple[tuple[str, str], ...] = ()) -> Steps[None]:  # fmt: skip
    """``record``: a recording from the answer on (its options as ``links.OnAnswer``'s); ``headers``
    (custom_headers, sip_headers) go on a SIP leg's 200."""
    yield from w.load(r.CallById(call_control_id))
    call = live(w, call_control_id)
    if call.direction != "incoming" or call.state is not CallState.RINGING:
        raise reject("90107", "Only a ringing incoming call can be answered.")
    _touch(w, call, client_state)
    w.cancel("ring_timeout", call.call_control_id)
    if webhook_url is not None:
        call.webhook_url = webhook_url
    if webhook_url_method is not None:
        call.webhook_url_method = webhook_url_method
    _answered(w, call)
    w.media.append(m.Answer(call.call_control_id, headers))
    if record:
        yield from links.record_from_answer(w, call, record)


def _answered(w: World, call: Call) -> None:
    move(call, CallEvent.ANSWER)
    call.answered_at = w.now
    w.update(call)
    w.cancel("dial_timeout", call.call_control_id)
    w.schedule("time_limit", call.call_control_id, w.now + call.time_limit_secs)
    emit_call(w, "call.answered", call, state="answered", start_time=iso(call.created_at), custom_headers=[])


def reject_call(w: World, call_control_id: str, *, cause: str, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(call_control_id))
    call = live(w, call_control_id)
    if call.direction != "incoming" or call.state is not CallState.RINGING:
        raise reject("90107", "Only a ringing incoming call can be rejected.")
    _touch(w, call, client_state)
    hangup_cause, sip_status = REJECT_CAUSES[cause]
    yield from end_leg(w, call, cause=hangup_cause, source="callee", sip_cause=str(sip_status), release=False)
    w.media.append(m.Reject(call.call_control_id, sip_status))


def hangup(w: World, call_control_id: str, *, client_state: str | None,
           quality: dict[str, Any] | None = None) -> Steps[None]:  # fmt: skip
    """``quality``: the leg's call_quality_stats, when the media plane has them (SIP legs)."""
    yield from w.load(r.CallById(call_control_id), r.BridgePartner(call_control_id))
    call = live(w, call_control_id)
    _touch(w, call, client_state)
    cause = "originator_cancel" if call.state is CallState.RINGING and call.direction == "outgoing" else (
        "normal_clearing"
    )
    yield from end_leg(w, call, cause=cause, source=hangup_source_for_local(call), quality=quality)


# -- far-end facts (reported by the media plane) -----------------------------------------------------


def _found(w: World, call_control_id: str) -> Call | None:
    return w.call(call_control_id)


def remote_answered(w: World, call_control_id: str) -> Steps[None]:
    yield from w.load(r.CallById(call_control_id))
    call = _found(w, call_control_id)
    if call is None or call.state is not CallState.RINGING or call.direction != "outgoing":
        return
    _answered(w, call)
    if (yield from links.answered(w, call)):
        return
    if call.conference_config:
        yield from conferences.join_from_dial(w, call, call.conference_config)
    elif call.bridge_on_answer and call.link_to:
        yield from w.load(r.CallById(call.link_to), r.BridgePartner(call.link_to))
        other = w.call(call.link_to)
        double = (other is not None and other.state is CallState.BRIDGED
                  and bool((call.plan or {}).get("prevent_double_bridge")))  # fmt: skip
        if other is not None and other.is_alive and other.state is not CallState.RINGING and not double:
            yield from bridges.pair(w, call, other)


def remote_failed(w: World, call_control_id: str, sip_status: int) -> Steps[None]:
    """An outgoing leg was refused (busy, declined, not found, unreachable)."""
    yield from w.load(r.CallById(call_control_id))
    call = _found(w, call_control_id)
    if call is None or not call.is_alive:
        return
    cause = SIP_TO_CAUSE.get(sip_status, "unspecified")
    yield from end_leg(w, call, cause=cause, source="callee", sip_cause=str(sip_status), release=False)


def remote_hangup(w: World, call_control_id: str, sip_cause: str = "unspecified",
                  quality: dict[str, Any] | None = None) -> Steps[None]:  # fmt: skip
    yield from w.load(r.CallById(call_control_id), r.BridgePartner(call_control_id))
    call = _found(w, call_control_id)
    if call is None or not call.is_alive:
        return
    cause = "originator_cancel" if call.state is CallState.RINGING and call.direction == "incoming" else (
        "normal_clearing"
    )
    yield from end_leg(w, call, cause=cause, source=hangup_source_for_remote(call), sip_cause=sip_cause,
                       release=False, quality=quality)


def on_timer(w: World, kind: str, call_control_id: str) -> Steps[None]:
    yield from w.load(r.CallById(call_control_id), r.BridgePartner(call_control_id))
    call = _found(w, call_control_id)
    if call is None or not call.is_alive:
        return
    if kind == "dial_timeout" and call.state is CallState.RINGING:
        yield from end_leg(w, call, cause="timeout", source="callee", sip_cause="487")
    elif kind == "time_limit":
        yield from end_leg(w, call, cause="time_limit", source=hangup_source_for_local(call))
    elif kind == "transfer_cancel" and call.state is CallState.RINGING and (call.plan or {}).get("transfer_of"):
        # the call this leg was ringing for ended (hung up from a bridge, a conference that ended ...)
        yield from end_leg(w, call, cause="originator_cancel", source="caller", sip_cause="487")
    elif kind in ("first_command", "ring_timeout") and call.state is CallState.RINGING:
        # Nobody took the call: the caller hears 480 Temporarily Unavailable, as the webhook says.
        yield from end_leg(w, call, cause="timeout", source="callee", sip_cause="480", release=False)
        w.media.append(m.Reject(call.call_control_id, 480))


def media_timeout(w: World, call_control_id: str, quality: dict[str, Any] | None = None) -> Steps[None]:
    """The far end of an answered leg sent nothing for the node's RTP timeout: the media plane hung it up."""
    yield from w.load(r.CallById(call_control_id), r.BridgePartner(call_control_id))
    call = _found(w, call_control_id)
    if call is not None and call.is_alive:
        yield from end_leg(w, call, cause="timeout", source="unknown", release=False, quality=quality)


def dtmf_received(w: World, call_control_id: str, digit: str) -> Steps[None]:
    """A digit from the far end (RFC 4733 or in-band): ``call.dtmf.received``."""
    yield from w.load(r.CallById(call_control_id, lock=False))
    call = w.call(call_control_id)
    if call is not None and call.is_alive:
        emit_call(w, "call.dtmf.received", call, digit=digit)


def node_drained(w: World, call_control_id: str) -> Steps[None]:
    """The node carrying this leg stops and its grace period is over: it hangs the leg up as the API's hangup
    would (a BYE or a CANCEL, ``normal_clearing``), leaving its queue, conference or bridge."""
    yield from w.load(r.CallById(call_control_id), r.BridgePartner(call_control_id))
    call = _found(w, call_control_id)
    if call is not None and call.is_alive:
        yield from end_leg(w, call, cause="normal_clearing", source=hangup_source_for_local(call))


def node_restarted(w: World, call_control_id: str) -> Steps[None]:
    """This leg belonged to a node process that died: its media is gone, so the leg is over."""
    yield from w.load(r.CallById(call_control_id), r.BridgePartner(call_control_id))
    call = _found(w, call_control_id)
    if call is not None and call.is_alive:
        yield from end_leg(w, call, cause="unspecified", source="unknown", release=False)
