"""Every webhook callroom sends, as the official SDK parses it: a call-centre day (calls in and out, a queue,
a bridge, IVR media, a conference with playback, speech, recording and a talker) produces every event type
the node emits, and each one must come out of ``client.webhooks.unwrap`` as the SDK's model of that event.
(Every test with a ``tenant`` checks its own webhooks the same way when it ends: ``tests/conftest.py``.)"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile

from tests.support.media_server import MediaServer
from tests.support.sdk_events import sdk_models
from tests.support.tenant import Tenant

EMITTED = {
    "call.initiated", "call.answered", "call.bridged", "call.hangup", "call.enqueued", "call.dequeued",
    "call.dtmf.received", "call.gather.ended", "call.playback.started", "call.playback.ended",
    "call.speak.started", "call.speak.ended", "call.recording.saved",
    "conference.created", "conference.ended", "conference.floor.changed", "conference.participant.joined",
    "conference.participant.left", "conference.playback.started", "conference.playback.ended",
    "conference.speak.started", "conference.speak.ended", "conference.participant.playback.started",
    "conference.participant.playback.ended", "conference.participant.speak.started",
    "conference.participant.speak.ended", "conference.recording.saved",
}  # fmt: skip


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    server = MediaServer()
    yield server
    server.close()


def _beep() -> bytes:
    t = np.arange(4000) / 8000
    buf = io.BytesIO()
    soundfile.write(buf, (6000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16), 8000, format="WAV")
    return buf.getvalue()


def test_the_sdk_models_every_event_the_node_emits() -> None:
    assert set(sdk_models()) >= EMITTED


def test_every_webhook_unwraps_as_its_own_type(tenant: Tenant, media: MediaServer) -> None:
    url = media.add("/types-beep.wav", _beep())
    c = tenant.client
    # a caller waits in a queue, an agent takes it, the caller presses keys, hears a prompt and a voice
    caller = tenant.call_in()
    c.calls.actions.enqueue(caller, queue_name="types-q")
    tenant.event("call.enqueued", caller)
    agent = tenant.dial("agent")
    tenant.dequeue(agent, "types-q")
    tenant.event("call.bridged", caller)
    c.calls.actions.start_recording(agent, format="wav", channels="single")
    c.calls.actions.start_playback(caller, audio_url=url)
    tenant.event("call.playback.ended", caller)
    c.calls.actions.speak(caller, payload="Thank you", voice="female")
    tenant.event("call.speak.ended", caller)
    c.calls.actions.stop_recording(agent)
    tenant.event("call.recording.saved", agent)
    c.calls.actions.gather_using_audio(caller, audio_url=url, maximum_digits=2, terminating_digit="#")
    tenant.press(caller, "12")
    tenant.event("call.gather.ended", caller)
    tenant.event("call.dtmf.received", caller)
    c.calls.actions.hangup(agent)
    tenant.event("call.hangup", caller)

    # a conference with a talker, audio to all and to one, a recording, ended through the API
    host = tenant.dial("host")
    talker = tenant.dial("talker", "answer_after=0;tone=600")
    conf = c.conferences.create(call_control_id=host, name="types-room")
    assert conf.data is not None
    cid = conf.data.id
    c.conferences.actions.join(cid, call_control_id=talker)
    tenant.event("conference.floor.changed", conference_id=cid)
    c.conferences.actions.record_start(cid, format="wav")
    c.conferences.actions.play(cid, audio_url=url)
    tenant.event("conference.playback.ended", conference_id=cid)
    c.conferences.actions.play(cid, audio_url=url, call_control_ids=[talker])
    tenant.event("conference.participant.playback.ended", talker)
    c.conferences.actions.speak(cid, payload="Hello", voice="male")
    tenant.event("conference.speak.ended", conference_id=cid)
    c.conferences.actions.speak(cid, payload="Hi", voice="male", call_control_ids=[talker])
    tenant.event("conference.participant.speak.ended", talker)
    state = base64.b64encode(b"room-saved").decode()
    c.conferences.actions.record_stop(cid, client_state=state)
    saved = tenant.event("conference.recording.saved", conference_id=cid)
    assert saved.payload["client_state"] == state  # the record_stop's state, not the conference's creation's
    c.conferences.actions.end_conference(cid)
    ended = tenant.event("conference.ended", conference_id=cid)
    host_leg = c.calls.retrieve_status(host).data
    assert host_leg is not None and ended.payload["call_leg_id"] == host_leg.call_leg_id
    tenant.event("call.hangup", talker)

    seen = {r.event_type for r in tenant._mine()}
    assert seen == EMITTED
    for received in tenant._mine():
        event = tenant.typed(received)
        assert type(event) is sdk_models()[received.event_type]
    floor = next(tenant.typed(r) for r in tenant._mine() if r.event_type == "conference.floor.changed")
    assert floor.payload.conference_id == cid


def test_conference_send_dtmf_client_state_reaches_later_webhooks(tenant: Tenant) -> None:
    host, guest = tenant.dial("dtmf-host"), tenant.dial("dtmf-guest")
    conf = tenant.client.conferences.create(call_control_id=host, name="dtmf-state")
    assert conf.data is not None
    tenant.client.conferences.actions.join(conf.data.id, call_control_id=guest)
    state = base64.b64encode(b"tones-sent").decode()
    tenant.client.conferences.actions.send_dtmf(conf.data.id, digits="1#", client_state=state)
    tenant.client.conferences.actions.speak(conf.data.id, payload="Done", voice="female")
    assert tenant.event("conference.speak.started", conference_id=conf.data.id).payload["client_state"] == state
    tenant.client.conferences.actions.end_conference(conf.data.id)
    assert tenant.event("conference.ended", conference_id=conf.data.id).payload["client_state"] == state
