"""Live transcription through the official SDK against a node: a phrase spoken with espeak-ng is played to a
virtual phone from an uploaded WAV, and the call's transcription of what the phone hears (the outbound
track) arrives as call.transcription webhooks, interim ones first when asked; transcription_stop stops them,
and transcription on answer works the same way."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import httpx
import pytest
import telnyx

from tests.support.tenant import Tenant

PHRASE = "hello how are you today one two three four five"
CONTENT_WORDS = {"hello", "how", "you", "today", "one", "two", "three", "four", "five"}


@pytest.fixture(scope="module")
def phrase_wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = Path(tmp_path_factory.mktemp("speech")) / "phrase.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+klatt2", "-s", "130", "-w", str(path), PHRASE], check=True)
    return path.read_bytes()


def _upload(tenant: Tenant, wav: bytes) -> None:
    resp = httpx.post(f"{tenant.node.base_url}/media", headers={"Authorization": f"Bearer {tenant.api_key}"},
                      files={"media": ("phrase.wav", wav, "audio/wav")}, data={"media_name": "phrase.wav"})
    assert resp.status_code < 300, resp.text


def _results(tenant: Tenant, cid: str) -> list[dict[str, object]]:
    return [r.payload["transcription_data"] for r in tenant.receiver.delivered(tenant.path)
            if r.body and r.event_type == "call.transcription" and r.payload.get("call_control_id") == cid]


def _final_words(tenant: Tenant, cid: str) -> set[str]:
    return {w for d in _results(tenant, cid) if d["is_final"] for w in str(d["transcript"]).split()}


def test_what_the_phone_hears_is_transcribed_with_interim_results(tenant: Tenant, phrase_wav: bytes) -> None:
    _upload(tenant, phrase_wav)
    state = base64.b64encode(b"agent-assist").decode()
    cid = tenant.call_in()
    tenant.client.calls.actions.start_transcription(
        cid, transcription_engine="Google", transcription_tracks="outbound", client_state=state,
        transcription_engine_config={"transcription_engine": "Google", "language": "en", "interim_results": True})
    tenant.client.calls.actions.start_playback(cid, media_name="phrase.wav")
    tenant.event("call.playback.ended", cid, timeout=20)
    final = tenant.receiver.wait_for(
        lambda r: r.event_type == "call.transcription" and r.payload.get("call_control_id") == cid
        and r.payload["transcription_data"]["is_final"] is True, timeout=30)[0]
    assert final.payload["client_state"] == state
    data = final.payload["transcription_data"]
    assert 0.0 <= data["confidence"] <= 1.0
    results = _results(tenant, cid)
    assert results[0]["is_final"] is False  # an interim result came before the final one
    heard = _final_words(tenant, cid)
    assert len(heard & CONTENT_WORDS) >= len(CONTENT_WORDS) / 2, heard
    tenant.check_typed()  # every webhook parses as the SDK's own type
    typed = tenant.typed(final)
    assert typed.data.payload.transcription_data.transcript == data["transcript"]

    tenant.client.calls.actions.stop_transcription(cid)
    count = len(_results(tenant, cid))
    tenant.client.calls.actions.start_playback(cid, media_name="phrase.wav")
    tenant.event("call.playback.ended", cid, timeout=20)
    tenant.client.calls.actions.hangup(cid)
    tenant.event("call.hangup", cid)
    assert len(_results(tenant, cid)) == count  # nothing more once stopped
    with pytest.raises(telnyx.UnprocessableEntityError):  # nothing to stop now: the call is gone
        tenant.client.calls.actions.stop_transcription(cid)


def test_transcription_on_answer_and_its_refusals(tenant: Tenant, phrase_wav: bytes) -> None:
    _upload(tenant, phrase_wav)
    cid = tenant.call_in(answer=False)
    tenant.client.calls.actions.answer(cid, transcription=True,
                                       transcription_config={"transcription_engine": "B",
                                                             "transcription_tracks": "outbound"})
    tenant.event("call.answered", cid)
    tenant.client.calls.actions.start_playback(cid, media_name="phrase.wav")
    tenant.receiver.wait_for(
        lambda r: r.event_type == "call.transcription" and r.payload.get("call_control_id") == cid
        and r.payload["transcription_data"]["is_final"] is True, timeout=30)
    assert all(d["is_final"] for d in _results(tenant, cid))  # no interim results unless asked
    assert len(_final_words(tenant, cid) & CONTENT_WORDS) >= 1
    with pytest.raises(telnyx.UnprocessableEntityError) as french:
        tenant.client.calls.actions.start_transcription(
            cid, transcription_engine="Telnyx",
            transcription_engine_config={"transcription_engine": "Telnyx", "language": "fr"})
    assert "'fr'" in french.value.body["errors"][0]["detail"]  # type: ignore[index]


def test_transcription_on_dial_starts_at_the_answer(tenant: Tenant, phrase_wav: bytes) -> None:
    _upload(tenant, phrase_wav)
    cid = tenant.dial("listener", "answer_after=0", transcription=True,
                      transcription_config={"transcription_engine": "Deepgram", "transcription_tracks": "both"})
    tenant.client.calls.actions.start_playback(cid, media_name="phrase.wav")
    final = tenant.receiver.wait_for(
        lambda r: r.event_type == "call.transcription" and r.payload.get("call_control_id") == cid
        and r.payload["transcription_data"]["is_final"] is True, timeout=30)[0]
    assert final.payload["transcription_data"]["transcription_track"] == "outbound"  # the phone says nothing
