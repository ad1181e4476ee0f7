"""Answering-machine detection on dial, through the official SDK against a node with virtual phones that
answer as a person does (a short "hello", then silence) or as a voicemail does (a long greeting of many
bursts, then a beep or silence): the verdicts arrive as call.machine.detection.ended and
call.machine.greeting.ended, with the call's ids and client_state."""

from __future__ import annotations

import base64

import pytest
import telnyx

from tests.support.tenant import Tenant

SPEECH = "tone=500+900"  # two tones at once: voice-like, but no beep
GREETING = "/".join(["400/120"] * 8)  # eight words of a voicemail greeting, 4 s


def _verdicts(tenant: Tenant, cid: str) -> list[tuple[str, str]]:
    return [(r.event_type, r.payload["result"]) for r in tenant.receiver.delivered(tenant.path)
            if r.body and r.payload.get("call_control_id") == cid and r.event_type.startswith("call.machine.")]


def test_a_person_saying_hello_is_human(tenant: Tenant) -> None:
    state = base64.b64encode(b"campaign-7").decode()
    cid = tenant.dial("person", f"answer_after=0;{SPEECH};cadence=600", answering_machine_detection="detect",
                      client_state=state)
    ended = tenant.event("call.machine.detection.ended", cid)
    assert ended.payload["result"] == "human" and ended.payload["client_state"] == state
    assert ended.payload["from"] == "+15550001111"
    tenant.client.calls.actions.hangup(cid)
    tenant.event("call.hangup", cid)
    assert _verdicts(tenant, cid) == [("call.machine.detection.ended", "human")]


def test_a_voicemail_greeting_is_a_machine_and_its_beep_ends_it(tenant: Tenant) -> None:
    cid = tenant.dial("voicemail", f"answer_after=0;{SPEECH};cadence={GREETING};beep=1000",
                      answering_machine_detection="detect_beep")
    assert tenant.event("call.machine.detection.ended", cid).payload["result"] == "machine"
    assert tenant.event("call.machine.greeting.ended", cid).payload["result"] == "beep_detected"
    # after the beep the application leaves its message
    tenant.client.calls.actions.speak(cid, payload="Your appointment is tomorrow.", voice="female")
    tenant.event("call.speak.ended", cid)
    assert _verdicts(tenant, cid) == [("call.machine.detection.ended", "machine"),
                                      ("call.machine.greeting.ended", "beep_detected")]


def test_greeting_end_without_a_beep_ends_with_the_silence(tenant: Tenant) -> None:
    cid = tenant.dial("voicemail", f"answer_after=0;{SPEECH};cadence={GREETING}",
                      answering_machine_detection="greeting_end",
                      answering_machine_detection_config={"greeting_silence_duration_millis": 1000})
    assert tenant.event("call.machine.detection.ended", cid).payload["result"] == "machine"
    assert tenant.event("call.machine.greeting.ended", cid).payload["result"] == "ended"


def test_config_and_premium_are_honoured(tenant: Tenant) -> None:
    silent = tenant.dial("silent", "answer_after=0", answering_machine_detection="premium",
                         answering_machine_detection_config={"initial_silence_millis": 1000})
    assert tenant.event("call.machine.detection.ended", silent).payload["result"] == "machine"
    words = tenant.dial("short", f"answer_after=0;{SPEECH};cadence=300/150/300", answering_machine_detection="detect",
                        answering_machine_detection_config={"maximum_number_of_words": 1})
    assert tenant.event("call.machine.detection.ended", words).payload["result"] == "machine"
    with pytest.raises(telnyx.UnprocessableEntityError):
        tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111", to="virtual:x",
                                 answering_machine_detection="guess")  # type: ignore[arg-type]
