"""The call commands of a call-centre application, through the official SDK against a node with virtual
phones: client_state_update, gather without a prompt and gather_stop, record_pause / record_resume on a
call, and a connection's active calls. Every webhook is checked against the SDK's types when a test ends
(``tests/conftest.py``)."""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import pytest
import soundfile
import telnyx
from numpy.typing import NDArray

from tests.media.audio import tone_level
from tests.support.tenant import Tenant

HEARD = 1500.0
SILENT = 150.0


def _state(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_update_client_state_is_carried_by_later_webhooks(tenant: Tenant) -> None:
    cid = tenant.dial("state", client_state=_state("dialled"))
    resp = tenant.client.calls.actions.update_client_state(cid, client_state=_state("in-menu"))
    assert resp.data is not None and resp.data.result == "ok"
    status = tenant.client.calls.retrieve_status(cid)
    assert status.data is not None and status.data.client_state == _state("in-menu")
    tenant.client.calls.actions.hangup(cid)
    assert tenant.event("call.hangup", cid).payload["client_state"] == _state("in-menu")
    with pytest.raises(telnyx.UnprocessableEntityError) as ended:
        tenant.client.calls.actions.update_client_state(cid, client_state=_state("late"))
    assert ended.value.body["errors"][0]["code"] == "90018"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError) as not_b64:
        tenant.client.calls.actions.update_client_state(tenant.dial("other"), client_state="not base64!")
    assert not_b64.value.body["errors"][0]["source"]["pointer"] == "/client_state"  # type: ignore[index]


def test_gather_collects_valid_digits_until_the_terminating_one(tenant: Tenant) -> None:
    cid = tenant.call_in()
    tenant.client.calls.actions.gather(cid, minimum_digits=2, maximum_digits=6, terminating_digit="#",
                                       valid_digits="123#", gather_id="menu-1", client_state=_state("menu"))
    tenant.press(cid, "1923#")  # 9 is not a valid digit here: ignored
    ended = tenant.event("call.gather.ended", cid)
    assert (ended.payload["digits"], ended.payload["status"]) == ("123", "valid")
    assert ended.payload["gather_id"] == "menu-1" and ended.payload["client_state"] == _state("menu")
    assert "call.playback.started" not in tenant.events(cid) and "call.speak.started" not in tenant.events(cid)


def test_gather_ends_at_maximum_digits_and_after_the_inter_digit_pause(tenant: Tenant) -> None:
    cid = tenant.call_in()
    tenant.client.calls.actions.gather(cid, maximum_digits=3)
    tenant.press(cid, "456")
    first = tenant.event("call.gather.ended", cid)
    assert (first.payload["digits"], first.payload["status"]) == ("456", "valid")
    tenant.client.calls.actions.gather(cid, minimum_digits=1, inter_digit_timeout_millis=500)
    tenant.press(cid, "8")
    second = tenant.receiver.wait_for(lambda r: r.event_type == "call.gather.ended"
                                      and r.payload["call_control_id"] == cid, count=2)[1]  # fmt: skip
    assert (second.payload["digits"], second.payload["status"]) == ("8", "valid")


def test_gather_times_out_and_too_few_digits_are_invalid(tenant: Tenant) -> None:
    cid = tenant.call_in()
    tenant.client.calls.actions.gather(cid, timeout_millis=500)
    ended = tenant.event("call.gather.ended", cid)
    assert (ended.payload["digits"], ended.payload["status"]) == ("", "timeout")
    tenant.client.calls.actions.gather(cid, minimum_digits=3, terminating_digit="*")
    tenant.press(cid, "12*")
    invalid = tenant.receiver.wait_for(lambda r: r.event_type == "call.gather.ended"
                                       and r.payload["call_control_id"] == cid, count=2)[1]  # fmt: skip
    assert (invalid.payload["digits"], invalid.payload["status"]) == ("12", "invalid")
    with pytest.raises(telnyx.UnprocessableEntityError) as bad:
        tenant.client.calls.actions.gather(cid, minimum_digits=5, maximum_digits=2)
    assert bad.value.body["errors"][0]["source"]["pointer"] == "/minimum_digits"  # type: ignore[index]


def test_stop_gather_ends_it_with_the_digits_so_far(tenant: Tenant) -> None:
    cid = tenant.call_in()
    tenant.client.calls.actions.gather(cid, maximum_digits=10, inter_digit_timeout_millis=60000)
    tenant.press(cid, "7")
    tenant.event("call.dtmf.received", cid, digit="7")
    tenant.client.calls.actions.stop_gather(cid, client_state=_state("stopped"))
    ended = tenant.event("call.gather.ended", cid)
    assert (ended.payload["digits"], ended.payload["status"]) == ("7", "cancelled")
    assert ended.payload["client_state"] == _state("stopped")
    with pytest.raises(telnyx.UnprocessableEntityError) as nothing:
        tenant.client.calls.actions.stop_gather(cid)
    assert nothing.value.body["errors"][0]["code"] == "90107"  # type: ignore[index]


def _recording(tenant: Tenant, url: str) -> NDArray[np.int16]:
    resp = httpx.get(url, headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert resp.status_code == 200
    audio, rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
    assert rate == 8000
    return np.asarray(audio, dtype=np.int16)


def test_pause_and_resume_recording_leave_out_what_was_said_meanwhile(tenant: Tenant) -> None:
    cid = tenant.dial("rec", "answer_after=0;tone=500")
    tenant.client.calls.actions.start_recording(cid, format="wav", channels="single")
    time.sleep(0.5)
    tenant.client.calls.actions.pause_recording(cid, client_state=_state("paused"))
    # while paused the phone hears speech: the phone hears it, the recording must not
    tenant.client.calls.actions.speak(cid, payload="This part is not recorded.", voice="female")
    tenant.event("call.speak.started", cid)
    time.sleep(0.5)
    assert float(np.abs(tenant.heard(cid, 0.4).astype(float)).mean()) > 200
    tenant.event("call.speak.ended", cid)
    tenant.client.calls.actions.resume_recording(cid)
    time.sleep(0.5)
    tenant.client.calls.actions.stop_recording(cid, client_state=_state("saved"))
    saved = tenant.event("call.recording.saved", cid)
    assert saved.payload["client_state"] == _state("saved")
    audio = _recording(tenant, saved.payload["recording_urls"]["wav"])
    assert tone_level(audio, 500) > HEARD  # the phone's tone, before and after the pause
    # speech has most of its energy well away from 500 Hz: what remains there is the tone alone
    residue = audio.astype(np.float64) - np.mean(audio)
    spectrum = np.abs(np.fft.rfft(residue))
    freqs = np.fft.rfftfreq(len(residue), 1 / 8000)
    speech_band = spectrum[(freqs > 700) & (freqs < 3500)].sum()
    assert speech_band < 0.05 * spectrum.sum()
    with pytest.raises(telnyx.UnprocessableEntityError) as none:
        tenant.client.calls.actions.pause_recording(cid)
    assert none.value.body["errors"][0]["code"] == "90107"  # type: ignore[index]


def test_active_calls_of_a_connection(tenant: Tenant) -> None:
    a = tenant.dial("a1", client_state=_state("a"))
    b = tenant.call_in()
    gone = tenant.dial("a2")
    tenant.client.calls.actions.hangup(gone)
    tenant.event("call.hangup", gone)
    listed = list(tenant.client.connections.list_active_calls(tenant.connection_id, page_size=1))
    assert sorted(c.call_control_id for c in listed) == sorted([a, b])  # both pages, the ended call left out
    first = next(c for c in listed if c.call_control_id == a)
    assert first.record_type == "call" and first.client_state == _state("a") and first.call_duration >= 0
    a_leg = tenant.client.calls.retrieve_status(a).data
    assert a_leg is not None and (first.call_leg_id, first.call_session_id) == (a_leg.call_leg_id,
                                                                                a_leg.call_session_id)
    with pytest.raises(telnyx.NotFoundError):
        list(tenant.client.connections.list_active_calls("no-such-connection"))
