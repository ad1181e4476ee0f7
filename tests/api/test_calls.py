"""Call legs through the official SDK: dial, incoming, answer, reject, hangup, bridge, command_id, errors."""

from __future__ import annotations

import base64

import pytest
import telnyx

from tests.support.tenant import Tenant


def test_dial_virtual_phone_answers_and_hangs_up(tenant: Tenant) -> None:
    resp = tenant.client.calls.dial(
        connection_id=tenant.connection_id, from_="+15550001111", to="virtual:alice;answer_after=0.2"
    )
    assert resp.data is not None
    assert resp.data.is_alive is False  # dialling is asynchronous, as on Telnyx
    assert resp.data.call_control_id.startswith("v3:")
    cid = resp.data.call_control_id
    initiated = tenant.event("call.initiated", cid)
    assert initiated.payload["direction"] == "outgoing"
    assert initiated.payload["to"] == "virtual:alice;answer_after=0.2"
    answered = tenant.event("call.answered", cid)
    assert answered.payload["state"] == "answered"
    assert answered.at - initiated.at >= 0.15  # the phone really rang before answering

    status = tenant.client.calls.retrieve_status(cid)
    assert status.data is not None and status.data.is_alive is True

    tenant.client.calls.actions.hangup(cid)
    hangup = tenant.event("call.hangup", cid)
    assert hangup.payload["hangup_cause"] == "normal_clearing"
    assert hangup.payload["hangup_source"] == "caller"
    assert tenant.events(cid) == ["call.initiated", "call.answered", "call.hangup"]
    status = tenant.client.calls.retrieve_status(cid)
    assert status.data is not None and status.data.is_alive is False
    assert status.data.end_time is not None


@pytest.mark.parametrize(
    ("option", "cause", "sip"),
    [("busy", "user_busy", "486"), ("reject", "call_rejected", "603"), ("notfound", "not_found", "404")],
)
def test_dial_refused(tenant: Tenant, option: str, cause: str, sip: str) -> None:
    cid = tenant.dial("bob", option, wait_answered=False)
    hangup = tenant.event("call.hangup", cid)
    assert hangup.payload["hangup_cause"] == cause
    assert hangup.payload["sip_hangup_cause"] == sip
    assert hangup.payload["hangup_source"] == "callee"
    assert "call.answered" not in tenant.events(cid)


def test_dial_no_answer_times_out(tenant: Tenant) -> None:
    cid = tenant.dial("carol", "noanswer", wait_answered=False, timeout_secs=5)
    hangup = tenant.event("call.hangup", cid, timeout=10)
    assert hangup.payload["hangup_cause"] == "timeout"
    initiated = tenant.event("call.initiated", cid)
    assert 4.5 <= hangup.at - initiated.at < 8


def test_virtual_phone_hangs_up_after(tenant: Tenant) -> None:
    cid = tenant.dial("dave", "answer_after=0;hangup_after=0.3")
    hangup = tenant.event("call.hangup", cid)
    assert hangup.payload["hangup_source"] == "callee"


def test_incoming_call_answered_and_client_state_echoed(tenant: Tenant) -> None:
    cid = tenant.call_in(answer=False)
    initiated = tenant.event("call.initiated", cid)
    assert initiated.payload["direction"] == "incoming"
    assert initiated.payload["state"] == "parked"
    state = base64.b64encode(b"ivr-step-1").decode()
    tenant.client.calls.actions.answer(cid, client_state=state)
    answered = tenant.event("call.answered", cid)
    assert answered.payload["client_state"] == state
    tenant.phone_hangs_up(cid)
    hangup = tenant.event("call.hangup", cid)
    assert hangup.payload["hangup_source"] == "caller"
    assert hangup.payload["client_state"] == state


def test_reject_incoming(tenant: Tenant) -> None:
    cid = tenant.call_in(answer=False)
    tenant.client.calls.actions.reject(cid, cause="USER_BUSY")
    hangup = tenant.event("call.hangup", cid)
    assert hangup.payload["hangup_cause"] == "user_busy"
    assert hangup.payload["sip_hangup_cause"] == "486"


def test_bridge_and_hangup_takes_the_other_leg_down(tenant: Tenant) -> None:
    a = tenant.call_in()
    b = tenant.dial("agent")
    tenant.client.calls.actions.bridge(a, call_control_id_to_bridge_with=b)
    tenant.event("call.bridged", a)
    tenant.event("call.bridged", b)
    tenant.phone_hangs_up(b)
    tenant.event("call.hangup", b)
    other = tenant.event("call.hangup", a)
    assert other.payload["hangup_cause"] == "normal_clearing"


def test_bridge_park_after_unbridge_keeps_leg(tenant: Tenant) -> None:
    a = tenant.call_in()
    b = tenant.dial("agent")
    tenant.client.calls.actions.bridge(a, call_control_id_to_bridge_with=b, park_after_unbridge="self")
    tenant.event("call.bridged", a)
    tenant.phone_hangs_up(b)
    tenant.event("call.hangup", b)
    status = tenant.client.calls.retrieve_status(a)
    assert status.data is not None and status.data.is_alive is True
    assert "call.hangup" not in tenant.events(a)


def test_command_id_repeat_is_not_executed_twice(tenant: Tenant) -> None:
    first = tenant.client.calls.dial(
        connection_id=tenant.connection_id, from_="+1555", to="virtual:x;answer_after=0", command_id="dial-1"
    )
    again = tenant.client.calls.dial(
        connection_id=tenant.connection_id, from_="+1555", to="virtual:x;answer_after=0", command_id="dial-1"
    )
    assert first.data is not None and again.data is not None
    assert first.data.call_control_id == again.data.call_control_id
    cid = first.data.call_control_id
    tenant.event("call.answered", cid)
    tenant.client.calls.actions.hangup(cid, command_id="h1")
    tenant.client.calls.actions.hangup(cid, command_id="h1")  # acknowledged, not an error, nothing done
    tenant.event("call.hangup", cid)
    assert tenant.events(cid).count("call.hangup") == 1
    assert len([r for r in tenant._mine() if r.event_type == "call.initiated"]) == 1


def test_errors_have_telnyx_codes_and_pointers(tenant: Tenant) -> None:
    with pytest.raises(telnyx.UnprocessableEntityError) as unknown:
        tenant.client.calls.actions.hangup("v3:nope")
    assert unknown.value.body["errors"][0]["code"] == "90015"  # type: ignore[index]

    cid = tenant.dial("e")
    tenant.client.calls.actions.hangup(cid)
    tenant.event("call.hangup", cid)
    with pytest.raises(telnyx.UnprocessableEntityError) as ended:
        tenant.client.calls.actions.hangup(cid)
    assert ended.value.body["errors"][0]["code"] == "90018"  # type: ignore[index]

    with pytest.raises(telnyx.UnprocessableEntityError) as bad_state:
        tenant.client.calls.actions.answer(tenant.dial("f"), client_state="not base64!!")
    error = bad_state.value.body["errors"][0]  # type: ignore[index]
    assert error["source"]["pointer"] == "/client_state"

    with pytest.raises(telnyx.UnprocessableEntityError) as bad_enum:
        tenant.client.calls.actions.reject(tenant.call_in(answer=False), cause="MAYBE")  # type: ignore[arg-type]
    assert bad_enum.value.body["errors"][0]["source"]["pointer"] == "/cause"  # type: ignore[index]

    with pytest.raises(telnyx.UnprocessableEntityError) as unanswered:
        cid = tenant.call_in(answer=False)
        tenant.client.calls.actions.enqueue(cid, queue_name="q")
    assert unanswered.value.body["errors"][0]["code"] == "90034"  # type: ignore[index]


def test_authentication_and_isolation(tenant: Tenant, node: object) -> None:
    bad = telnyx.Telnyx(api_key="KEYwrong", base_url=tenant.node.base_url, max_retries=0)
    with pytest.raises(telnyx.AuthenticationError) as exc:
        bad.queues.list()
    assert exc.value.body["errors"][0]["code"] == "10009"  # type: ignore[index]

    cid = tenant.dial("mine")
    other_key = tenant.node.new_key("someone-else")
    other = telnyx.Telnyx(api_key=other_key, base_url=tenant.node.base_url, max_retries=0)
    with pytest.raises(telnyx.NotFoundError):
        other.calls.retrieve_status(cid)
    with pytest.raises(telnyx.UnprocessableEntityError):
        other.calls.actions.hangup(cid)
    status = tenant.client.calls.retrieve_status(cid)
    assert status.data is not None and status.data.is_alive is True
    with pytest.raises(telnyx.NotFoundError):
        other.call_control_applications.retrieve(tenant.connection_id)


def test_every_webhook_verifies_with_the_sdk(tenant: Tenant) -> None:
    cid = tenant.dial("g")
    tenant.client.calls.actions.hangup(cid)
    tenant.event("call.hangup", cid)
    mine = tenant._mine()
    assert len(mine) >= 3
    for r in mine:
        event = tenant.client.webhooks.unwrap(r.body, headers=r.headers, key=tenant.node.public_key)
        assert getattr(event, "data", None) is not None
        assert r.headers["user-agent"] == "telnyx-webhooks"
    tampered = mine[0].body.replace("call.", "calls.")
    with pytest.raises(ValueError, match="Signature verification failed"):
        tenant.client.webhooks.unwrap(tampered, headers=mine[0].headers, key=tenant.node.public_key)
