"""Play, speak, record, gather and send DTMF through the official SDK, checked in the audio itself and
in the timing of the webhooks."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import soundfile
import telnyx

from callroom.audio.encode import encode_mp3
from callroom.audio.fetch import FETCH_FAILED
from callroom.media.tones import sine
from callroom.model import signed_links
from callroom.rtp.dtmf import DtmfDetector
from tests.media.audio import tone_level
from tests.support.media_server import MediaServer
from tests.support.node import free_port
from tests.support.tenant import Tenant

HEARD = 1500.0
SILENT = 150.0


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    server = MediaServer()
    yield server
    server.close()


def _tone_wav(freq: float, seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    x = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    buf = io.BytesIO()
    soundfile.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_playback_is_heard_and_events_span_its_duration(tenant: Tenant, media: MediaServer) -> None:
    url = media.add("/beep-1s.wav", _tone_wav(1000, 1.0))
    cid = tenant.dial("listener")
    tenant.client.calls.actions.start_playback(cid, audio_url=url)
    started = tenant.event("call.playback.started", cid)
    assert started.payload["media_url"] == url
    time.sleep(0.5)
    assert tone_level(tenant.heard(cid, 0.3), 1000) > HEARD
    ended = tenant.event("call.playback.ended", cid)
    assert ended.payload["status"] == "completed"
    assert 0.85 <= ended.at - started.at <= 1.6
    time.sleep(0.3)
    assert tone_level(tenant.heard(cid, 0.2), 1000) < SILENT  # over: silence again


def test_loop_and_stop(tenant: Tenant, media: MediaServer) -> None:
    url = media.add("/loop.wav", _tone_wav(700, 0.3))
    cid = tenant.dial("l")
    tenant.client.calls.actions.start_playback(cid, audio_url=url, loop="infinity")
    tenant.event("call.playback.started", cid)
    time.sleep(1.0)
    assert tone_level(tenant.heard(cid, 0.3), 700) > HEARD
    tenant.client.calls.actions.stop_playback(cid)
    assert tenant.event("call.playback.ended", cid).payload["status"] == "cancelled"


def test_bad_media_fails_cleanly(tenant: Tenant, media: MediaServer) -> None:
    html = media.add("/page.html", b"<html><body>not audio</body></html>", "text/html")
    missing = media.add("/nope.wav", b"")
    del media.files["/nope.wav"]
    cid = tenant.dial("bad")
    tenant.client.calls.actions.start_playback(cid, audio_url=html)
    ended = tenant.event("call.playback.ended", cid)
    assert ended.payload["status"] == "failed" and ended.payload["status_detail"]
    tenant.client.calls.actions.start_playback(cid, audio_url=missing)
    assert tenant.event("call.playback.ended", cid, status="file_not_found")
    status = tenant.client.calls.retrieve_status(cid)
    assert status.data is not None and status.data.is_alive is True  # the call is unharmed
    with pytest.raises(telnyx.UnprocessableEntityError) as unknown_voice:
        tenant.client.calls.actions.speak(cid, payload="hello", voice="Nobody.Voice.x")
    assert unknown_voice.value.body["errors"][0]["source"]["pointer"] == "/voice"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError) as bad_ssml:
        tenant.client.calls.actions.speak(cid, payload="<speak>unclosed", voice="female", payload_type="ssml")
    assert bad_ssml.value.body["errors"][0]["source"]["pointer"] == "/payload"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError):
        tenant.client.calls.actions.speak(cid, payload="x" * 3001, voice="female")


def test_speak_is_heard_for_as_long_as_the_speech(tenant: Tenant) -> None:
    cid = tenant.dial("s")
    tenant.client.calls.actions.speak(cid, payload="Your call is important to us. Please hold.", voice="female",
                                      language="en-US")
    started = tenant.event("call.speak.started", cid)
    time.sleep(0.6)
    level = float(np.abs(tenant.heard(cid, 0.5).astype(float)).mean())
    assert level > 200  # speech, not silence
    ended = tenant.event("call.speak.ended", cid)
    assert ended.payload["status"] == "completed"
    assert 1.2 < ended.at - started.at < 6


def test_call_recording_dual_channel(tenant: Tenant) -> None:
    a = tenant.dial("a", "answer_after=0;tone=500")
    b = tenant.dial("b", "answer_after=0;tone=1300")
    tenant.client.calls.actions.bridge(a, call_control_id_to_bridge_with=b)
    tenant.event("call.bridged", a)
    tenant.client.calls.actions.start_recording(a, format="wav", channels="dual")
    time.sleep(1.2)
    tenant.client.calls.actions.stop_recording(a)
    saved = tenant.event("call.recording.saved", a)
    assert saved.payload["channels"] == "dual"
    url = saved.payload["recording_urls"]["wav"]
    resp = httpx.get(url, headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert resp.status_code == 200
    audio, rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
    assert rate == 8000 and audio.shape[1] == 2 and 0.9 < len(audio) / rate < 1.6
    ch1, ch2 = audio[:, 0], audio[:, 1]
    assert tone_level(ch1, 500) > HEARD and tone_level(ch1, 1300) < SILENT  # channel 1: what A says
    assert tone_level(ch2, 1300) > HEARD and tone_level(ch2, 500) < SILENT  # channel 2: what A hears
    listed = list(tenant.client.recordings.list(filter={"call_control_id": a}))
    assert [r.id for r in listed] == [saved.payload["recording_id"]]
    no_key = httpx.get(url)  # a pre-signed link, as Telnyx's: no key needed for ten minutes
    assert no_key.status_code == 200 and no_key.content == resp.content
    keyed = f"{tenant.node.root_url}/v2/recordings/{saved.payload['recording_id']}/download.wav"
    assert httpx.get(keyed).status_code == 401  # the API's own download (``download_urls``) takes the key


def test_public_recording_links(tenant: Tenant) -> None:
    """``public_recording_urls`` (and ``recording_urls``, the same link) download without an API key for ten
    minutes; a link changed or expired is refused with 403 and a Telnyx error body."""
    a = tenant.dial("pub", "answer_after=0;tone=700")
    tenant.client.calls.actions.start_recording(a, format="wav", channels="single")
    time.sleep(0.6)
    tenant.client.calls.actions.stop_recording(a)
    saved = tenant.event("call.recording.saved", a)
    public = saved.payload["public_recording_urls"]["wav"]
    assert saved.payload["recording_urls"]["wav"] == public and "signature=" in public
    keyed = f"{tenant.node.root_url}/v2/recordings/{saved.payload['recording_id']}/download.wav"
    opened = httpx.get(public)
    assert opened.status_code == 200 and opened.headers["content-type"] == "audio/wav"
    assert opened.content == httpx.get(keyed, headers={"Authorization": f"Bearer {tenant.api_key}"}).content

    rec_id = saved.payload["recording_id"]
    other_id = rec_id[:-1] + ("1" if rec_id[-1] != "1" else "2")
    expired = signed_links.public_url(tenant.node.root_url, tenant.node.node.link_secret, rec_id, "wav",
                                      time.time() - signed_links.LINK_LIFETIME_SECS - 5)
    for url in (public.replace("signature=", "signature=x"), public.replace("expires=", "expires=1"),
                public.replace(f"/{rec_id}/", f"/{other_id}/"), public.replace("public.wav", "public.mp3"),
                public.split("?")[0], expired):  # fmt: skip
        refused = httpx.get(url)
        assert refused.status_code == 403, url
        error = refused.json()["errors"][0]
        assert error["code"] == "10010" and error["title"] == "Authorization failed" and error["detail"]
    assert "expired" in httpx.get(expired).json()["errors"][0]["detail"]
    tenant.client.calls.actions.hangup(a)


def test_conference_recording_mp3_with_three_tones(tenant: Tenant) -> None:
    legs = [tenant.dial(f"p{f}", f"answer_after=0;tone={f}") for f in (500, 900, 1300)]
    conf = tenant.client.conferences.create(call_control_id=legs[0], name="rec", comfort_noise=False)
    assert conf.data is not None
    for leg in legs[1:]:
        tenant.client.conferences.actions.join(conf.data.id, call_control_id=leg)
    time.sleep(0.3)
    tenant.client.conferences.actions.record_start(conf.data.id, format="mp3", channels="dual")
    time.sleep(1.5)
    tenant.client.conferences.actions.record_stop(conf.data.id)
    saved = tenant.event("conference.recording.saved", conference_id=conf.data.id)
    assert saved.payload["format"] == "mp3"
    resp = httpx.get(saved.payload["recording_urls"]["mp3"], headers={"Authorization": f"Bearer {tenant.api_key}"})
    audio, _rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
    assert audio.shape[1] == 2
    creator, others = audio[:, 0], audio[:, 1]
    assert tone_level(creator, 500) > HEARD and tone_level(creator, 900) < SILENT
    assert tone_level(others, 900) > HEARD and tone_level(others, 1300) > HEARD and tone_level(others, 500) < SILENT


def test_gather_digits_from_the_phone(tenant: Tenant, media: MediaServer) -> None:
    url = media.add("/prompt.wav", _tone_wav(440, 0.4))
    cid = tenant.call_in()
    tenant.client.calls.actions.gather_using_audio(cid, audio_url=url, minimum_digits=3, maximum_digits=6,
                                                   terminating_digit="#", inter_digit_timeout_millis=3000)
    tenant.event("call.playback.started", cid)
    tenant.press(cid, "1234#")
    ended = tenant.event("call.gather.ended", cid)
    assert (ended.payload["digits"], ended.payload["status"]) == ("1234", "valid")


def test_gather_times_out_and_speak_prompt(tenant: Tenant) -> None:
    cid = tenant.call_in()
    tenant.client.calls.actions.gather_using_speak(
        cid, payload="Enter your PIN", voice="male", maximum_tries=2, timeout_millis=400)
    assert tenant.event("call.speak.started", cid)
    ended = tenant.event("call.gather.ended", cid, timeout=15)
    assert ended.payload["status"] == "timeout" and ended.payload["digits"] == ""
    # The prompt was spoken twice (two tries) before the gather gave up.
    assert tenant.events(cid).count("call.speak.ended") == 2
    tenant.client.calls.actions.hangup(cid)
    tenant.event("call.hangup", cid)
    with pytest.raises(telnyx.UnprocessableEntityError) as gone:
        tenant.client.calls.actions.gather_using_audio(cid)
    assert gone.value.body["errors"][0]["code"] == "90018"  # type: ignore[index]


def test_send_dtmf_reaches_the_phone_and_conference_speak(tenant: Tenant) -> None:
    cid = tenant.dial("ivr")
    tenant.client.calls.actions.send_dtmf(cid, digits="47*", duration_millis=150)
    time.sleep(1.5)
    heard = tenant.heard(cid, 1.5)
    assert DtmfDetector().process_samples(heard) == "47*"

    a, b = tenant.dial("ca"), tenant.dial("cb")
    conf = tenant.client.conferences.create(call_control_id=a, name="spk", comfort_noise=False)
    assert conf.data is not None
    tenant.client.conferences.actions.join(conf.data.id, call_control_id=b)
    tenant.client.conferences.actions.speak(conf.data.id, payload="Welcome", voice="female", call_control_ids=[b])
    ev = tenant.event("conference.participant.speak.started", b, conference_id=conf.data.id)
    assert ev.payload["creator_call_session_id"]
    time.sleep(0.4)
    assert float(np.abs(tenant.heard(b, 0.3).astype(float)).mean()) > 200
    assert float(np.abs(tenant.heard(a, 0.3).astype(float)).mean()) < 50  # only b was spoken to
    tenant.event("conference.participant.speak.ended", b)

    url_free = tenant.client.conferences.actions.speak(conf.data.id, payload="Hello all", voice="female")
    assert url_free.data is not None
    tenant.event("conference.speak.started", conference_id=conf.data.id)
    tenant.event("conference.speak.ended", conference_id=conf.data.id)


def test_media_upload_and_play_by_name(tenant: Tenant, media: MediaServer) -> None:
    url = media.add("/greeting.mp3", encode_mp3([sine(800, 600, amplitude=8000)]), "audio/mpeg")
    up = tenant.client.media.upload(media_url=url, media_name="greeting")
    assert up.data is not None and up.data.media_name == "greeting"
    assert [m.media_name for m in tenant.client.media.list().data or []] == ["greeting"]
    cid = tenant.dial("m")
    tenant.client.calls.actions.start_playback(cid, media_name="greeting")
    ev = tenant.event("call.playback.started", cid)
    assert ev.payload["media_name"] == "greeting"
    time.sleep(0.35)
    assert tone_level(tenant.heard(cid, 0.25), 800) > HEARD
    with pytest.raises(telnyx.UnprocessableEntityError):
        tenant.client.calls.actions.start_playback(cid, media_name="nope")
    with pytest.raises(telnyx.UnprocessableEntityError):
        tenant.client.media.upload(media_url=media.add("/x.html", b"<html/>", "text/html"), media_name="x")
    tenant.client.media.delete("greeting")
    with pytest.raises(telnyx.NotFoundError):
        tenant.client.media.retrieve("greeting")


def test_media_upload_refuses_bad_bodies_and_stores_nothing(tenant: Tenant, media: MediaServer) -> None:
    url = media.add("/ok.wav", b"", "audio/wav")  # never fetched: every request below is refused first
    headers = {"Authorization": f"Bearer {tenant.api_key}", "content-type": "application/json"}
    cases = [
        (b"", "/media_url", "10004"),
        (b"{not json", "/", "10015"),
        (b"[1, 2]", "/", "10015"),
        (json.dumps({"media_url": url, "ttl_secs": "soon"}).encode(), "/ttl_secs", "10015"),
        (json.dumps({"media_url": url, "ttl_secs": 0}).encode(), "/ttl_secs", "10015"),
        (json.dumps({"media_url": url, "ttl_secs": True}).encode(), "/ttl_secs", "10015"),
    ]
    for raw, pointer, code in cases:
        resp = httpx.post(f"{tenant.node.base_url}/media", content=raw, headers=headers)
        assert resp.status_code == 422, (raw, resp.text)
        error = resp.json()["errors"][0]
        assert (error["source"]["pointer"], error["code"]) == (pointer, code), raw
    assert tenant.client.media.list().data == []


def test_hold_audio_url_is_what_held_participants_hear(tenant: Tenant, media: MediaServer) -> None:
    url = media.add("/hold-600.wav", _tone_wav(600, 2.0))
    host = tenant.dial("host")
    conf = tenant.client.conferences.create(call_control_id=host, name="waiting-room", hold_audio_url=url,
                                            start_conference_on_create=False, comfort_noise=False)
    assert conf.data is not None
    time.sleep(0.8)
    assert tone_level(tenant.heard(host, 0.4), 600) > HEARD  # not started: held, hearing the room's audio
    guest = tenant.dial("guest", "answer_after=0;tone=900")
    tenant.client.conferences.actions.join(conf.data.id, call_control_id=guest, start_conference_on_enter=True)
    time.sleep(0.6)
    now = tenant.heard(host, 0.3)
    assert tone_level(now, 600) < SILENT and tone_level(now, 900) > HEARD  # started: the hold audio stops
    other = media.add("/hold-1100.wav", _tone_wav(1100, 2.0))
    tenant.client.conferences.actions.hold(conf.data.id, call_control_ids=[host], audio_url=other)
    time.sleep(0.8)
    held = tenant.heard(host, 0.3)
    assert tone_level(held, 1100) > HEARD and tone_level(held, 900) < SILENT


def test_conference_recording_one_track_per_participant(tenant: Tenant) -> None:
    freqs = (500, 900, 1300)
    legs = [tenant.dial(f"t{f}", f"answer_after=0;tone={f}") for f in freqs]
    conf = tenant.client.conferences.create(call_control_id=legs[0], name="tracks", comfort_noise=False)
    assert conf.data is not None
    tenant.client.conferences.actions.join(conf.data.id, call_control_id=legs[1])
    tenant.client.conferences.actions.record_start(conf.data.id, format="wav", extra_body={"tracks": "per_participant"})
    time.sleep(0.8)
    tenant.client.conferences.actions.join(conf.data.id, call_control_id=legs[2])  # joins while recording
    time.sleep(0.8)
    tenant.client.conferences.actions.record_stop(conf.data.id)
    saved = tenant.event("conference.recording.saved", conference_id=conf.data.id)
    assert [t["call_control_id"] for t in saved.payload["tracks"]] == legs
    resp = httpx.get(saved.payload["recording_urls"]["wav"], headers={"Authorization": f"Bearer {tenant.api_key}"})
    audio, _rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
    assert audio.shape[1] == 3
    for ch, f in enumerate(freqs):
        track = audio[:, ch]
        others = [g for g in freqs if g != f]
        assert tone_level(track[-4000:], f) > HEARD, f"track {ch + 1} lacks its own tone"
        assert all(tone_level(track[-4000:], g) < SILENT for g in others), f"track {ch + 1} has another's tone"
    assert tone_level(audio[:4000, 2], 1300) < SILENT  # the late joiner's track is silent before it joined
    with pytest.raises(telnyx.UnprocessableEntityError):
        tenant.client.conferences.actions.record_start(conf.data.id, format="mp3",
                                                       extra_body={"tracks": "per_participant"})


def test_conference_media_actions_end_to_end(tenant: Tenant, media: MediaServer) -> None:
    url = media.add("/conf-tone.wav", _tone_wav(1000, 0.6))
    a = tenant.dial("ca", "answer_after=0")
    b = tenant.call_in()
    conf = tenant.client.conferences.create(call_control_id=a, name="media-all", comfort_noise=False)
    assert conf.data is not None
    cid = conf.data.id
    tenant.client.conferences.actions.join(cid, call_control_id=b)

    tenant.client.conferences.actions.play(cid, audio_url=url)  # the whole conference
    started = tenant.event("conference.playback.started", conference_id=cid)
    assert started.payload["media_url"] == url and started.payload["creator_call_session_id"]
    time.sleep(0.35)
    assert tone_level(tenant.heard(a, 0.2), 1000) > HEARD and tone_level(tenant.heard(b, 0.2), 1000) > HEARD
    tenant.event("conference.playback.ended", conference_id=cid)

    tenant.client.conferences.actions.play(cid, audio_url=url, call_control_ids=[b])  # one participant
    tenant.event("conference.participant.playback.started", b, conference_id=cid)
    time.sleep(0.35)
    assert tone_level(tenant.heard(b, 0.2), 1000) > HEARD and tone_level(tenant.heard(a, 0.2), 1000) < SILENT
    tenant.event("conference.participant.playback.ended", b, conference_id=cid)

    tenant.client.conferences.actions.send_dtmf(cid, digits="9#", call_control_ids=[a], duration_millis=150)
    time.sleep(1.0)
    assert DtmfDetector().process_samples(tenant.heard(a, 1.0)) == "9#"

    tenant.client.conferences.actions.gather_dtmf_audio(cid, call_control_id=b, maximum_digits=2,
                                                        terminating_digit="")
    time.sleep(0.2)
    tenant.press(b, "42")
    ended = tenant.event("call.gather.ended", b)
    assert (ended.payload["digits"], ended.payload["status"]) == ("42", "valid")

    tenant.client.conferences.actions.record_start(cid, format="wav", trim="trim-silence")
    time.sleep(0.6)
    tenant.client.conferences.actions.end_conference(cid)  # the recording stops with the conference
    saved = tenant.event("conference.recording.saved", conference_id=cid)
    rec_id = saved.payload["recording_id"]
    got = tenant.client.recordings.retrieve(rec_id)
    assert got.data is not None and got.data.conference_id == cid and got.data.source == "conference"
    tenant.client.recordings.delete(rec_id)
    with pytest.raises(telnyx.NotFoundError):
        tenant.client.recordings.retrieve(rec_id)


def test_a_participant_held_with_a_stored_file_hears_that_file(tenant: Tenant, media: MediaServer) -> None:
    # The file behind hold's media_name is looked up before the flag change commits (the mix is built
    # after the commit, from what the change wrote); unhold brings the room back.
    # 1,900 Hz: where the built-in hold music has no energy (its notes and harmonics are near 494-880 Hz).
    url = media.add("/hold-music.wav", _tone_wav(1900, 3.0), "audio/wav")
    tenant.client.media.upload(media_url=url, media_name="holdtone")
    host, guest = tenant.dial("hh"), tenant.dial("hg")
    conf = tenant.client.conferences.create(call_control_id=host, name="held-by-file")
    assert conf.data is not None
    tenant.client.conferences.actions.join(conf.data.id, call_control_id=guest)
    tenant.client.conferences.actions.hold(conf.data.id, call_control_ids=[guest], media_name="holdtone")
    time.sleep(0.4)
    assert tone_level(tenant.heard(guest, 0.3), 1900) > HEARD
    tenant.client.conferences.actions.unhold(conf.data.id, call_control_ids=[guest])
    time.sleep(0.3)
    assert tone_level(tenant.heard(guest, 0.3), 1900) < SILENT


def test_a_media_url_the_node_refuses_fails_alike_whether_or_not_anything_listens(
    strict_tenant: Tenant, tenant: Tenant, media: MediaServer
) -> None:
    """On a node that refuses loopback URLs: a media server on 127.0.0.1 is never asked, and the failed
    playback says the same for a port that serves the file and for a port nobody listens on (no answer
    to learn the port's state from). A node that allows loopback plays the same URL."""
    served = media.add("/refused.wav", _tone_wav(900, 0.5))
    by_name = served.replace("127.0.0.1", "localhost")  # a name: checked when the media process connects
    closed = f"http://localhost:{free_port()}/refused.wav"
    cid = strict_tenant.dial("refused")
    with pytest.raises(telnyx.UnprocessableEntityError) as literal:
        strict_tenant.client.calls.actions.start_playback(cid, audio_url=served)
    assert literal.value.body["errors"][0]["source"]["pointer"] == "/audio_url"  # type: ignore[index]
    endings = []
    for url in (by_name, closed):
        strict_tenant.client.calls.actions.start_playback(cid, audio_url=url)
        ended = strict_tenant.event("call.playback.ended", cid, media_url=url)
        endings.append((ended.payload["status"], ended.payload["status_detail"]))
    assert endings == [("file_not_found", FETCH_FAILED)] * 2
    assert "call.playback.started" not in strict_tenant.events(cid)
    assert media.hits.get("/refused.wav") is None  # never asked
    allowed = tenant.dial("allowed")
    tenant.client.calls.actions.start_playback(allowed, audio_url=by_name)
    assert tenant.event("call.playback.ended", allowed).payload["status"] == "completed"
    assert media.hits["/refused.wav"] == 1
