"""Commands that only a SIP leg can carry out: ``send_sip_info`` (an INFO in the call's dialog) and ``refer``
(a REFER asking the far end to call someone else, RFC 3515), with the ``call.refer.*`` webhooks its
answer and NOTIFYs lead to.

A REFER's course is kept in the leg's plan (``refer``: ``pending`` until the far end accepts it, then
``started``), so that ``call.refer.started`` comes once and ``call.refer.completed`` or
``call.refer.failed`` once, at the first final status: the REFER's own refusal, or the sipfrag of a NOTIFY
(``sip_notify_response``).
"""

from __future__ import annotations

from urllib.parse import quote

from callroom.control.guards import answered, reject
from callroom.control.webhooks import emit_call
from callroom.control.world import Steps, World
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import Call

SIP_ENDPOINTS = ("sip:", "sip-in:")  # an outgoing SIP leg's endpoint, an incoming one's


def _sip_leg(w: World, call_control_id: str, command: str, client_state: str | None) -> Call:
    call = answered(w, call_control_id)
    if not call.endpoint.startswith(SIP_ENDPOINTS):
        raise reject("90107", f"{command} needs a SIP leg; this call's far end is {call.endpoint.split(':')[0]}.")
    if client_state is not None:
        call.client_state = client_state
        w.update(call)
    return call


def send_sip_info(w: World, call_control_id: str, *, content_type: str, body: str,
                  client_state: str | None) -> Steps[None]:  # fmt: skip
    yield from w.load(r.CallById(call_control_id))
    call = _sip_leg(w, call_control_id, "send_sip_info", client_state)
    w.media.append(m.SipRequestInDialog(call.call_control_id, "INFO", content_type, body))


def refer_to(sip_address: str, headers: tuple[tuple[str, str], ...]) -> str:
    """The Refer-To value: the address, with ``headers`` as URI headers (RFC 3261 §19.1.1), which the far end
    puts on the INVITE it sends there."""
    if not headers:
        return f"<{sip_address}>"
    query = "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in headers)
    return f"<{sip_address}?{query}>"


def refer(w: World, call_control_id: str, *, sip_address: str, headers: tuple[tuple[str, str], ...],
          client_state: str | None) -> Steps[None]:  # fmt: skip
    yield from w.load(r.CallById(call_control_id))
    call = _sip_leg(w, call_control_id, "refer", client_state)
    if (call.plan or {}).get("refer"):
        raise reject("90107", "A REFER of this call is under way already.")
    call.plan = {**(call.plan or {}), "refer": "pending"}
    w.update(call)
    w.media.append(m.SipRequestInDialog(call.call_control_id, "REFER",
                                        headers=(("Refer-To", refer_to(sip_address, headers)),)))


def refer_progress(w: World, call_control_id: str, phase: str, status: int) -> Steps[None]:
    """The media plane's news of a REFER: accepted, a NOTIFY's status, or failed."""
    yield from w.load(r.CallById(call_control_id))
    call = w.call(call_control_id)
    course = (call.plan or {}).get("refer") if call is not None else None
    if call is None or not course:
        return
    final = phase == "failed" or (phase == "notified" and status >= 200)
    if course == "pending" and phase != "failed":
        emit_call(w, "call.refer.started", call, **({"sip_notify_response": status} if phase == "notified" else {}))
        course = "started"
    if final:
        event = "call.refer.completed" if phase == "notified" and status < 300 else "call.refer.failed"
        emit_call(w, event, call, sip_notify_response=status)
        course = None
    call.plan = {k: v for k, v in (call.plan or {}).items() if k != "refer"} | ({"refer": course} if course else {})
    w.update(call)
