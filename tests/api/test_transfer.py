"""``transfer`` through the official SDK against a node with virtual phones: a new leg rings while the caller
hears the ringback; once it answers the caller is bridged to it (out of its queue, conference or bridge);
when it fails the caller is left as it was. Every webhook is checked against the SDK's types when a test ends
(``tests/conftest.py``)."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
import telnyx

from tests.media.audio import tone_level
from tests.support.tenant import Tenant

HEARD = 1500.0


def _state(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _phone(options: str) -> str:
    return f"virtual:agent-{uuid.uuid4().hex[:8]};{options}"


def _transfer(tenant: Tenant, cid: str, to: str, **kwargs: Any) -> str:
    """Transfer ``cid`` to ``to``; the new leg's call_control_id, from its ``call.initiated``."""
    resp = tenant.client.calls.actions.transfer(cid, to=to, **kwargs)
    assert resp.data is not None and resp.data.result == "ok"
    initiated = tenant.event("call.initiated", None, to=to)
    assert initiated.payload["direction"] == "outgoing" and initiated.payload["state"] == "bridging"
    leg: str = initiated.payload["call_control_id"]
    return leg


def _bridged(tenant: Tenant, a: str, b: str) -> None:
    assert tenant.event("call.bridged", a).payload["call_control_id"] == a
    assert tenant.event("call.bridged", b).payload["call_control_id"] == b


def test_transferred_caller_and_new_leg_hear_each_other(tenant: Tenant) -> None:
    caller = tenant.call_in("virtual:caller;tone=500")
    to = _phone("answer_after=0;tone=900")
    leg = _transfer(tenant, caller, to, from_="+15550009999", target_leg_client_state=_state("agent"),
                    client_state=_state("caller"))
    answered = tenant.event("call.answered", leg)
    assert answered.payload["client_state"] == _state("agent") and answered.payload["from"] == "+15550009999"
    _bridged(tenant, caller, leg)
    assert tenant.event("call.bridged", caller).payload["client_state"] == _state("caller")
    time.sleep(0.7)
    assert tone_level(tenant.heard(caller, 0.5), 900) > HEARD
    assert tone_level(tenant.heard(leg, 0.5), 500) > HEARD
    tenant.client.calls.actions.hangup(caller)
    tenant.event("call.hangup", leg)  # the bridge ends with the caller: the new leg is hung up too
    assert tenant.events(leg) == ["call.initiated", "call.answered", "call.bridged", "call.hangup"]


def test_the_caller_hears_ringback_while_the_new_leg_rings(tenant: Tenant) -> None:
    caller = tenant.call_in()
    leg = _transfer(tenant, caller, _phone("answer_after=4;tone=900"))
    time.sleep(1.0)
    ringing = tenant.heard(caller, 1.5)  # (the ringback's first 2 s of tone are in it, however late we look)
    windows = [ringing[i : i + 2400] for i in range(0, len(ringing) - 2400, 400)]
    assert max(min(tone_level(x, 440), tone_level(x, 480)) for x in windows) > 800
    _bridged(tenant, caller, leg)
    time.sleep(0.7)
    assert tone_level(tenant.heard(caller, 0.5), 900) > HEARD


def test_no_ringback_without_early_media(tenant: Tenant) -> None:
    caller = tenant.call_in()
    _transfer(tenant, caller, _phone("answer_after=3"), early_media=False)
    time.sleep(0.8)
    assert tone_level(tenant.heard(caller, 0.5), 440) < 200


def test_a_failed_transfer_leaves_the_caller_as_it_was(tenant: Tenant) -> None:
    caller = tenant.call_in("virtual:caller;tone=500")
    busy = _transfer(tenant, caller, _phone("busy"))
    hangup = tenant.event("call.hangup", busy)
    assert (hangup.payload["hangup_cause"], hangup.payload["sip_hangup_cause"]) == ("user_busy", "486")
    status = tenant.client.calls.retrieve_status(caller)
    assert status.data is not None and status.data.is_alive
    assert "call.bridged" not in tenant.events(caller) and "call.hangup" not in tenant.events(caller)
    # the caller can be transferred again, and this time it works
    leg = _transfer(tenant, caller, _phone("answer_after=0;tone=700"))
    _bridged(tenant, caller, leg)


def test_a_transfer_not_answered_in_time_ends_with_timeout(tenant: Tenant) -> None:
    caller = tenant.call_in()
    leg = _transfer(tenant, caller, _phone("noanswer"), timeout_secs=5)
    hangup = tenant.event("call.hangup", leg, timeout=15)
    assert hangup.payload["hangup_cause"] == "timeout"
    status = tenant.client.calls.retrieve_status(caller)
    assert status.data is not None and status.data.is_alive


def test_a_caller_that_hangs_up_takes_the_ringing_leg_with_it(tenant: Tenant) -> None:
    caller = tenant.call_in()
    leg = _transfer(tenant, caller, _phone("answer_after=30"))
    tenant.phone_hangs_up(caller)
    hangup = tenant.event("call.hangup", leg)
    assert (hangup.payload["hangup_cause"], hangup.payload["sip_hangup_cause"]) == ("originator_cancel", "487")


def test_a_bridged_call_is_transferred_and_its_partner_let_go(tenant: Tenant) -> None:
    caller = tenant.call_in("virtual:caller;tone=500")
    first = tenant.dial("first-agent")
    tenant.client.calls.actions.bridge(caller, call_control_id_to_bridge_with=first)
    _bridged(tenant, caller, first)
    leg = _transfer(tenant, caller, _phone("answer_after=1;tone=900"))
    tenant.event("call.hangup", first)  # the first agent was not asked to stay: hung up
    _bridged(tenant, caller, leg)
    time.sleep(0.7)
    assert tone_level(tenant.heard(leg, 0.5), 500) > HEARD


def test_a_queued_call_leaves_its_queue_when_the_transfer_answers(tenant: Tenant) -> None:
    caller = tenant.call_in("virtual:caller;tone=500")
    tenant.client.calls.actions.enqueue(caller, queue_name="support")
    tenant.event("call.enqueued", caller)
    leg = _transfer(tenant, caller, _phone("answer_after=1;tone=900"))
    assert tenant.event("call.dequeued", caller).payload["reason"] == "bridged"
    _bridged(tenant, caller, leg)
    time.sleep(0.7)
    assert tone_level(tenant.heard(caller, 0.5), 900) > HEARD


def test_a_conference_participant_leaves_when_the_transfer_answers(tenant: Tenant) -> None:
    caller = tenant.call_in("virtual:caller;tone=500")
    other = tenant.dial("other", "answer_after=0;tone=700")
    conf = tenant.client.conferences.create(call_control_id=other, name=f"room-{uuid.uuid4().hex[:6]}")
    assert conf.data is not None
    tenant.client.conferences.actions.join(conf.data.id, call_control_id=caller)
    tenant.event("conference.participant.joined", caller)
    leg = _transfer(tenant, caller, _phone("answer_after=1;tone=900"))
    assert tenant.event("conference.participant.left", caller).payload["conference_id"] == conf.data.id
    _bridged(tenant, caller, leg)
    time.sleep(0.7)
    heard = tenant.heard(caller, 0.5)
    assert tone_level(heard, 900) > HEARD and tone_level(heard, 700) < 300


def test_transfer_refusals(tenant: Tenant) -> None:
    ringing = tenant.call_in(answer=False)
    with pytest.raises(telnyx.UnprocessableEntityError) as not_answered:
        tenant.client.calls.actions.transfer(ringing, to=_phone("answer_after=0"))
    assert not_answered.value.body["errors"][0]["code"] == "90034"  # type: ignore[index]
    caller = tenant.call_in()
    with pytest.raises(telnyx.UnprocessableEntityError) as mute_dtmf:
        tenant.client.calls.actions.transfer(caller, to=_phone("answer_after=0"), mute_dtmf="both")
    assert mute_dtmf.value.body["errors"][0]["source"]["pointer"] == "/mute_dtmf"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError) as wrong_phone:
        tenant.client.calls.actions.transfer(caller, to="virtual:x;tonne=5")
    assert wrong_phone.value.body["errors"][0]["source"]["pointer"] == "/to"  # type: ignore[index]
    _transfer(tenant, caller, _phone("answer_after=30"))
    with pytest.raises(telnyx.UnprocessableEntityError) as twice:
        tenant.client.calls.actions.transfer(caller, to=_phone("answer_after=0"))
    assert twice.value.body["errors"][0]["code"] == "90107"  # type: ignore[index]


def test_the_new_legs_webhooks_go_to_its_webhook_url(tenant: Tenant) -> None:
    caller = tenant.call_in()
    to = _phone("answer_after=0")
    elsewhere = tenant.path + "-transfers"
    tenant.client.calls.actions.transfer(caller, to=to, webhook_url=tenant.receiver.url(elsewhere))
    initiated = tenant.receiver.wait_for(lambda r: r.path == elsewhere and r.event_type == "call.initiated")[0]
    leg = initiated.payload["call_control_id"]
    tenant.receiver.wait_for(lambda r: r.path == elsewhere and r.event_type == "call.bridged")
    tenant.event("call.bridged", caller)  # the caller's own go where they always went
    assert leg not in {r.payload.get("call_control_id") for r in tenant.receiver.delivered(tenant.path)}
    for received in tenant.receiver.delivered(elsewhere):
        tenant.typed(received)
