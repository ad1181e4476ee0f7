"""What dial and answer do with the options Telnyx gives them, through the official SDK against a node with
virtual phones: ``to`` as a list (simultaneous ring), ``record`` from the answer, ``audio_url`` played and
``send_digits_on_answer`` sent once answered; options callroom does not carry out are refused (422), never
accepted in silence. Every webhook is checked against the SDK's types when a test ends."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile
import telnyx
from numpy.typing import NDArray

from tests.media.audio import tone_level
from tests.support.media_server import MediaServer
from tests.support.tenant import Tenant

HEARD = 1500.0


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    server = MediaServer()
    yield server
    server.close()


def _tone_wav(freq: float, seconds: float) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    buf = io.BytesIO()
    soundfile.write(buf, (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16), 8000, format="WAV")
    return buf.getvalue()


def _phone(name: str, options: str) -> str:
    return f"virtual:{name}-{uuid.uuid4().hex[:8]};{options}"


def _dial(tenant: Tenant, to: str | list[str], **kwargs: Any) -> str:
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111", to=to, **kwargs)
    assert resp.data is not None
    return resp.data.call_control_id


def _recording(tenant: Tenant, url: str) -> NDArray[np.int16]:
    resp = httpx.get(url, headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert resp.status_code == 200
    audio, rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
    assert rate == 8000
    return np.asarray(audio, dtype=np.int16)


def test_simultaneous_ring_the_first_to_answer_wins(tenant: Tenant) -> None:
    slow, fast, busy = _phone("slow", "answer_after=3"), _phone("fast", "answer_after=0.5"), _phone("busy", "busy")
    first = _dial(tenant, [slow, fast, busy])
    legs = {to: tenant.event("call.initiated", None, to=to).payload["call_control_id"] for to in (slow, fast, busy)}
    assert legs[slow] == first  # the dial answers with its first destination's leg
    tenant.event("call.answered", legs[fast])
    cancelled = tenant.event("call.hangup", legs[slow])
    assert (cancelled.payload["hangup_cause"], cancelled.payload["sip_hangup_cause"]) == ("originator_cancel", "487")
    assert tenant.event("call.hangup", legs[busy]).payload["hangup_cause"] == "user_busy"
    time.sleep(3.5)  # past the moment the slow phone would have answered
    assert "call.answered" not in tenant.events(legs[slow])
    status = tenant.client.calls.retrieve_status(legs[fast])
    assert status.data is not None and status.data.is_alive


def test_record_from_answer_holds_the_calls_audio(tenant: Tenant) -> None:
    cid = _dial(tenant, _phone("rec", "answer_after=0;tone=500"), record="record-from-answer", record_format="wav",
                record_channels="single")  # fmt: skip
    tenant.event("call.answered", cid)
    time.sleep(1.0)
    tenant.client.calls.actions.hangup(cid)
    saved = tenant.event("call.recording.saved", cid)
    assert saved.payload["format"] == "wav" and saved.payload["channels"] == "single"
    assert tone_level(_recording(tenant, saved.payload["recording_urls"]["wav"]), 500) > HEARD


def test_record_max_length_ends_the_recording(tenant: Tenant) -> None:
    cid = _dial(tenant, _phone("rec", "answer_after=0;tone=500"), record="record-from-answer", record_format="mp3",
                record_max_length=1)  # fmt: skip
    saved = tenant.event("call.recording.saved", cid, timeout=15)
    assert saved.payload["format"] == "mp3" and saved.payload["channels"] == "dual"
    status = tenant.client.calls.retrieve_status(cid)
    assert status.data is not None and status.data.is_alive  # the recording ended, not the call


def test_record_timeout_secs_ends_the_recording_after_silence_that_follows_speech(tenant: Tenant) -> None:
    cid = _dial(tenant, _phone("quiet", "answer_after=0"), record="record-from-answer", record_format="wav",
                record_channels="single", record_timeout_secs=1)  # fmt: skip
    tenant.event("call.answered", cid)
    time.sleep(1.5)  # silence before anyone spoke does not count
    assert "call.recording.saved" not in tenant.events(cid)
    tenant.press(cid, "5")  # the phone's user makes a sound (a key's tones), then is silent
    saved = tenant.event("call.recording.saved", cid)
    status = tenant.client.calls.retrieve_status(cid)
    assert status.data is not None and status.data.is_alive  # the recording ended, not the call
    audio = _recording(tenant, saved.payload["recording_urls"]["wav"])
    assert tone_level(audio, 770) > 100 and tone_level(audio, 1336) > 100  # "5": 770 Hz + 1336 Hz


def test_answer_with_record_starts_a_recording(tenant: Tenant) -> None:
    cid = tenant.call_in("virtual:caller;tone=600", answer=False)
    tenant.client.calls.actions.answer(cid, record="record-from-answer", record_format="wav")
    tenant.event("call.answered", cid)
    time.sleep(1.0)
    tenant.client.calls.actions.hangup(cid)
    saved = tenant.event("call.recording.saved", cid)
    audio = _recording(tenant, saved.payload["recording_urls"]["wav"])
    assert audio.ndim == 2  # dual by default, as on Telnyx
    assert tone_level(np.ascontiguousarray(audio[:, 0]), 600) > HEARD


def test_audio_url_is_played_to_the_callee_on_answer(tenant: Tenant, media: MediaServer) -> None:
    url = media.add(f"/answer-{uuid.uuid4().hex[:6]}.wav", _tone_wav(850, 2.0))
    cid = _dial(tenant, _phone("hears", "answer_after=0"), audio_url=url)
    tenant.event("call.answered", cid)
    started = tenant.event("call.playback.started", cid)
    assert started.payload["media_url"] == url
    time.sleep(0.6)
    assert tone_level(tenant.heard(cid, 0.4), 850) > HEARD
    assert tenant.event("call.playback.ended", cid).payload["status"] == "completed"


def test_send_digits_on_answer_reaches_the_callee(tenant: Tenant) -> None:
    cid = _dial(tenant, _phone("keys", "answer_after=0"), send_digits_on_answer="1")
    tenant.event("call.answered", cid)
    time.sleep(0.5)
    heard = tenant.heard(cid, 3.0)  # the digit is in there somewhere, however late this webhook came
    windows = [heard[i : i + 1600] for i in range(0, len(heard) - 1600, 400)]
    # DTMF "1" is 697 Hz and 1209 Hz together
    assert max(min(tone_level(x, 697), tone_level(x, 1209)) for x in windows) > 800


@pytest.mark.parametrize(("option", "value"), [
    ("route_to_mobile", True), ("preferred_codecs", "G722"), ("webhook_urls", {"call.answered": ["https://example.com"]}),
    ("sip_transport_protocol", "TLS"), ("media_encryption", "SRTP"),
])  # fmt: skip
def test_dial_options_not_carried_out_are_refused(tenant: Tenant, option: str, value: object) -> None:
    with pytest.raises(telnyx.UnprocessableEntityError) as refused:
        tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111",
                                 to=_phone("never", "answer_after=0"), extra_body={option: value})  # fmt: skip
    error = refused.value.body["errors"][0]  # type: ignore[index]
    assert error["code"] == "10015" and error["source"]["pointer"] == f"/{option}"
    assert not tenant.events()  # nothing was dialled


def test_options_that_ask_for_nothing_are_accepted(tenant: Tenant) -> None:
    cid = _dial(tenant, _phone("plain", "answer_after=0"), extra_body={"privacy": "none", "sip_region": "US",
                                                                      "record_timeout_secs": 0})  # fmt: skip
    tenant.event("call.answered", cid)
    ringing = tenant.call_in(answer=False)
    with pytest.raises(telnyx.UnprocessableEntityError) as refused:
        tenant.client.calls.actions.answer(ringing, extra_body={"preferred_codecs": "PCMA"})
    assert refused.value.body["errors"][0]["source"]["pointer"] == "/preferred_codecs"  # type: ignore[index]


def test_prevent_double_bridge_leaves_a_bridged_link_to_alone(tenant: Tenant) -> None:
    caller = tenant.call_in()
    first = tenant.dial("first")
    tenant.client.calls.actions.bridge(caller, call_control_id_to_bridge_with=first)
    tenant.event("call.bridged", caller)
    second = _dial(tenant, _phone("second", "answer_after=0"), link_to=caller, bridge_on_answer=True,
                   prevent_double_bridge=True)  # fmt: skip
    tenant.event("call.answered", second)
    time.sleep(0.5)
    assert "call.bridged" not in tenant.events(second) and "call.hangup" not in tenant.events(first)
    third = _dial(tenant, _phone("third", "answer_after=0"), link_to=caller, bridge_on_answer=True)
    tenant.event("call.bridged", third)
    tenant.event("call.hangup", first)  # without it, the caller's bridge is replaced
