"""Virtual phones that speak (``say=``), play a file (``play=``) or answer as a voicemail (``voicemail``),
against a node through the official SDK: what they say is heard by the other party as speech (its envelope
and spectrum, and the words through the node's transcription), an uploaded media file plays by its name
for a phone called or calling in, and a voicemail's greeting and beep are what answering-machine detection
calls a machine with a beep."""

from __future__ import annotations

import io
import time
from urllib.parse import quote

import httpx
import numpy as np
import soundfile

from callroom.media.tones import sine
from tests.media.audio import is_speech_like, tone_level
from tests.support.media_server import MediaServer
from tests.support.tenant import Tenant

PHRASE = "hello how are you today one two three four five"
WORDS = {"hello", "how", "you", "today", "one", "two", "three", "four", "five"}


def _heard_while(tenant: Tenant, listener: str, seconds: float) -> np.ndarray:
    time.sleep(seconds)
    return tenant.heard(listener, seconds)


def test_a_phone_saying_text_is_heard_as_speech_by_the_other_party(tenant: Tenant) -> None:
    listener = tenant.dial("listener")
    bob = tenant.dial("bob", f"answer_after=0;say={quote(PHRASE)}", wait_answered=False, link_to=listener,
                      bridge_on_answer=True)
    tenant.event("call.bridged", bob)
    heard = _heard_while(tenant, listener, 3.0)
    assert is_speech_like(heard)
    time.sleep(1.0)  # the phrase is over: silence follows
    assert float(np.abs(tenant.heard(listener, 0.5).astype(np.int32)).mean()) < 50
    # the check above tells a tone from speech: a phone with a tone in the same seat fails it
    tone = tenant.dial("tone", "answer_after=0;tone=500", wait_answered=False, link_to=listener,
                       bridge_on_answer=True)
    tenant.event("call.bridged", tone)
    assert not is_speech_like(_heard_while(tenant, listener, 1.0))


def test_the_words_a_phone_says_come_through_the_transcription(tenant: Tenant) -> None:
    voice = quote("espeak.en-us+klatt2")
    cid = tenant.call_in(f"virtual:bob;say={quote(PHRASE)};voice={voice}", answer=False)
    tenant.client.calls.actions.answer(cid, transcription=True,
                                       transcription_config={"transcription_engine": "B",
                                                             "transcription_tracks": "inbound"})
    final = tenant.receiver.wait_for(
        lambda r: r.event_type == "call.transcription" and r.payload.get("call_control_id") == cid
        and r.payload["transcription_data"]["is_final"] is True, timeout=30)[0]
    data = final.payload["transcription_data"]
    assert data.get("transcription_track", "inbound") == "inbound"  # what the phone said, not what it heard
    words = set(str(data["transcript"]).split())
    assert len(words & WORDS) >= len(WORDS) / 2, words


def _tone_wav(hz: float, ms: float) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, sine(hz, ms, amplitude=8000), 8000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _upload_tone(tenant: Tenant, name: str, hz: float, ms: float) -> None:
    resp = httpx.post(f"{tenant.node.base_url}/media", headers={"Authorization": f"Bearer {tenant.api_key}"},
                      files={"media": (f"{name}.wav", _tone_wav(hz, ms), "audio/wav")}, data={"media_name": name})
    assert resp.status_code < 300, resp.text


def test_a_phone_plays_uploaded_media_by_its_name_called_or_calling_in(tenant: Tenant) -> None:
    _upload_tone(tenant, "chime", 700, 1500)
    listener = tenant.dial("listener")
    played = tenant.dial("player", "answer_after=0;play=chime", wait_answered=False, link_to=listener,
                         bridge_on_answer=True)
    tenant.event("call.bridged", played)
    assert tone_level(_heard_while(tenant, listener, 0.5), 700) > 2000
    time.sleep(1.3)
    assert tone_level(tenant.heard(listener, 0.3), 700) < 100  # played once, then silence

    caller = tenant.call_in("virtual:caller;play=chime", answer=False)  # calling in, the same file
    tenant.client.calls.actions.answer(caller)
    tenant.event("call.answered", caller)
    tenant.client.calls.actions.bridge(caller, call_control_id_to_bridge_with=listener)
    tenant.event("call.bridged", caller)
    assert tone_level(_heard_while(tenant, listener, 0.4), 700) > 2000


def test_a_voicemail_greets_and_beeps_and_detection_calls_it_a_machine(tenant: Tenant) -> None:
    greeting = quote("Hi, you have reached the voicemail of Sam Smith. I can't take your call right now. "
                     "Please leave your name, your number and a short message after the tone.")
    cid = tenant.dial("vm", f"answer_after=0;voicemail;say={greeting}",
                      answering_machine_detection="detect_beep")
    detected = tenant.event("call.machine.detection.ended", cid, timeout=15)
    assert detected.payload["result"] == "machine"
    beep = tenant.event("call.machine.greeting.ended", cid, timeout=20)
    assert beep.payload["result"] == "beep_detected"
    assert beep.at - detected.at > 2.0  # the beep came after the greeting, not at its start
    # with the default greeting, a person's "hello" instead is a human
    person = tenant.dial("sam", f"answer_after=0;say={quote('Hello?')}", answering_machine_detection="detect")
    assert tenant.event("call.machine.detection.ended", person, timeout=15).payload["result"] == "human"
    default = tenant.dial("vm2", "answer_after=0;voicemail", answering_machine_detection="detect_beep")
    assert tenant.event("call.machine.detection.ended", default, timeout=15).payload["result"] == "machine"
    assert tenant.event("call.machine.greeting.ended", default, timeout=20).payload["result"] == "beep_detected"


def test_a_phone_plays_a_url_fetched_as_playback_fetches(tenant: Tenant, strict_tenant: Tenant) -> None:
    server = MediaServer()
    try:
        url = server.add("/ring.wav", _tone_wav(900, 1500))
        listener = tenant.dial("listener")
        played = tenant.dial("player", f"answer_after=0;play={quote(url, safe='')}", wait_answered=False,
                             link_to=listener, bridge_on_answer=True)
        tenant.event("call.bridged", played)
        assert tone_level(_heard_while(tenant, listener, 0.5), 900) > 2000
        assert server.hits["/ring.wav"] == 1
        # a node whose URL policy refuses loopback does not fetch it: the phone answers and stays silent
        other = strict_tenant.dial("listener")
        refused = strict_tenant.dial("player", f"answer_after=0;play={quote(url, safe='')}", wait_answered=False,
                                     link_to=other, bridge_on_answer=True)
        strict_tenant.event("call.bridged", refused)
        assert tone_level(_heard_while(strict_tenant, other, 0.8), 900) < 100
        assert server.hits["/ring.wav"] == 1
    finally:
        server.close()
