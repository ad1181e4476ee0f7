"""An application's speech as Telnyx's examples write it: provider voice names (Polly, Azure, Telnyx) are
spoken by the local voice of their language and gender; an unknown one is refused by name."""

from __future__ import annotations

import time

import numpy as np
import pytest
import telnyx

from tests.support.tenant import Tenant


def test_speak_and_gather_using_speak_with_telnyx_voice_names(tenant: Tenant) -> None:
    cid = tenant.call_in()
    tenant.client.calls.actions.speak(cid, payload="Thank you for calling.", voice="AWS.Polly.Joanna-Neural")
    tenant.event("call.speak.started", cid)
    time.sleep(0.5)
    assert float(np.abs(tenant.heard(cid, 0.4).astype(float)).mean()) > 200  # speech, not silence
    assert tenant.event("call.speak.ended", cid).payload["status"] == "completed"

    tenant.client.calls.actions.gather_using_speak(cid, payload="Press one for sales.", voice="Telnyx.KokoroTTS.af",
                                                   maximum_digits=1)  # fmt: skip
    tenant.receiver.wait_for(lambda r: r.event_type == "call.speak.started" and r.payload["call_control_id"] == cid,
                             count=2)  # fmt: skip
    tenant.press(cid, "1")
    ended = tenant.event("call.gather.ended", cid)
    assert (ended.payload["digits"], ended.payload["status"]) == ("1", "valid")

    conf = tenant.client.conferences.create(call_control_id=cid, name="voices")
    assert conf.data is not None
    tenant.client.conferences.actions.speak(conf.data.id, payload="Welcome.", voice="Azure.en-US-JennyNeural")
    assert tenant.event("conference.speak.ended", conference_id=conf.data.id).payload["status"] == "completed"


@pytest.mark.parametrize("voice", ["Polly.Nobody", "Azure.en-US-NobodyNeural", "ElevenLabs.v3.Adam"])
def test_an_unknown_voice_is_refused_by_name(tenant: Tenant, voice: str) -> None:
    cid = tenant.dial("voices")
    with pytest.raises(telnyx.UnprocessableEntityError) as refused:
        tenant.client.calls.actions.speak(cid, payload="Hello", voice=voice)
    error = refused.value.body["errors"][0]  # type: ignore[index]
    assert error["code"] == "10015" and error["source"] == {"pointer": "/voice"} and voice in error["detail"]
