"""``transfer``: a new outbound leg for an answered call, bridged to it once it answers.

The new leg rings ``to`` (a SIP URI, a virtual phone or a number of the node's plan, as a dial would); the
call meanwhile stays where it is (parked, bridged, queued or in a conference) and hears the ringback over
it: the built-in tone, or ``audio_url`` / ``media_name`` (none with ``early_media`` false). When the new leg
answers, the call leaves where it was and the two are bridged (``call.answered`` for the new leg,
``call.bridged`` for both; ``links.py``). When it fails (busy, declined, not answered in ``timeout_secs``)
the call is left as it was and the new leg's ``call.hangup`` says why. A call that ends while its transfer
rings takes the ringing leg with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callroom.control.calls import _far_end
from callroom.control.guards import answered, reject
from callroom.control.links import RINGBACK, OnAnswer, ringback_job
from callroom.control.media_actions import Source, audio_spec
from callroom.control.virtual_far_end import virtual_speech
from callroom.control.webhooks import emit_call
from callroom.control.world import Steps, World
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.numbers import is_number
from callroom.model.records import Call, new_call_control_id, new_uuid
from callroom.model.states import CallState
from callroom.timefmt import iso


@dataclass(slots=True)
class TransferRequest:
    to: str
    from_: str | None = None
    client_state: str | None = None
    target_leg_client_state: str | None = None
    timeout_secs: int = 30
    time_limit_secs: int = 14400
    audio_url: str | None = None
    media_name: str | None = None
    early_media: bool = True
    webhook_url: str | None = None
    webhook_url_method: str = "POST"
    park_after_unbridge: str | None = None
    on_answer: OnAnswer = field(default_factory=OnAnswer)  # what the new leg gets once it answers
    headers: tuple[tuple[str, str], ...] = ()  # custom_headers and sip_headers: put on a SIP INVITE
    credentials: tuple[str, str] | None = field(default=None, repr=False)  # sip_auth_username/password
    from_display_name: str | None = None  # the SIP From's display name
    anonymous: bool = False  # privacy: id


def transfer(w: World, call_control_id: str, req: TransferRequest) -> Steps[Call]:
    media = (r.MediaByName(req.media_name),) if req.media_name else ()
    yield from w.load(r.CallById(call_control_id), *media, *req.on_answer.reads())
    call = answered(w, call_control_id)
    ringing_id = (call.plan or {}).get("transfer_to")
    if ringing_id:
        yield from w.load(r.CallById(str(ringing_id), lock=False))
        ringing = w.call(str(ringing_id))
        if ringing is not None and ringing.state is CallState.RINGING:
            raise reject("90107", f"A transfer of this call is ringing already ({ringing_id}).")
    app = None
    if is_number(req.to):  # (a trunk's number: the application's outbound settings choose the trunk)
        yield from w.load(r.AppById(call.connection_id))
        app = w.result(r.AppById(call.connection_id))
    endpoint = _far_end(w, req.to, app=app, from_=req.from_ or call.to)
    speech = yield from virtual_speech(w, endpoint, "/to")
    ringback = (audio_spec(w, Source(req.audio_url, req.media_name)) if req.audio_url or req.media_name
                else m.AudioSpec(RINGBACK, ""))  # fmt: skip
    leg = Call(
        call_control_id=new_call_control_id(), call_leg_id=new_uuid(), call_session_id=call.call_session_id,
        account_id=w.account_id, connection_id=call.connection_id, direction="outgoing",
        from_=req.from_ or call.to, to=req.to, state=CallState.RINGING, created_at=w.now, node_id=w.node_id,
        endpoint=endpoint, client_state=req.target_leg_client_state, timeout_secs=req.timeout_secs,
        time_limit_secs=req.time_limit_secs, webhook_url=req.webhook_url, webhook_url_method=req.webhook_url_method,
        plan={**req.on_answer.plan(w), "transfer_of": call.call_control_id},
    )  # fmt: skip
    w.insert(leg)
    call.plan = {**(call.plan or {}), "transfer_to": leg.call_control_id}
    if req.client_state is not None:
        call.client_state = req.client_state
    if req.park_after_unbridge is not None:
        call.park_after_unbridge = req.park_after_unbridge
    w.update(call)
    w.command_result = leg.call_control_id
    emit_call(w, "call.initiated", leg, direction="outgoing", state="bridging", start_time=iso(leg.created_at),
              custom_headers=[])
    w.schedule("dial_timeout", leg.call_control_id, w.now + req.timeout_secs)
    w.media.append(m.Ring(leg.call_control_id, leg.endpoint, leg.from_, leg.to, req.timeout_secs, req.headers,
                          req.credentials, req.from_display_name, req.anonymous, speech))
    if req.early_media:
        w.media.append(m.Play(ringback_job(leg.call_control_id), ringback, (call.call_control_id,), loop=None,
                              overlay=True, kind=RINGBACK))
    return leg
