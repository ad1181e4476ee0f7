"""Calls that software listens to: media streams to a WebSocket server (``streaming_start``/``stop``, and
``stream_url`` on dial and answer), forks of a call's RTP to UDP targets (``fork_start``/``stop``), and
answering-machine detection on dial, live transcription (``transcription_start``/``stop``, and
``transcription`` on dial and answer); and the webhooks sent when the media plane reports on them.

Each stream, fork, detection and transcription is a media job of the call (kind ``stream``, ``fork``,
``amd``, ``transcription``): its
webhooks carry the call's ids and client_state whenever the media plane reports, even across an API
restart. A dialled call's stream and detection are handed to the media plane with the dial: they start
when the call's audio exists, at the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from callroom.control.guards import answered, reject
from callroom.control.webhooks import emit_call
from callroom.control.world import Steps, World
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import Call, MediaJob, new_uuid
from callroom.model.states import CallState

# Telnyx's premium detections are answered with the standard one: their results are mapped onto
# call.machine.detection.ended (human_residence / human_business -> human, machine -> machine, silence and
# fax_detected -> not_sure) and call.machine.greeting.ended (beep_detected), sent under those names.
AMD_MODES = {"detect": "detect", "detect_words": "detect_words", "detect_beep": "detect_beep",
             "greeting_end": "greeting_end", "premium": "detect_beep",
             "premium_ios_call_screening_detection": "detect_beep"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class StreamRequest:
    url: str
    track: str = "inbound_track"
    codec: str = "PCMU"
    bidirectional: bool = False
    bidirectional_codec: str = "PCMU"
    bidirectional_rate: int = 8000
    target_legs: str = "self"
    auth_token: str | None = None
    custom_parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    tracks: str = "inbound"  # inbound | outbound | both
    interim_results: bool = False
    engine: str = "Telnyx"  # Telnyx's engine name as asked; all are served by the local recogniser


@dataclass(frozen=True, slots=True)
class Listening:
    """What a dial or an answer asks for besides the call: a stream, a detection, a transcription."""

    stream: StreamRequest | None = None
    amd_mode: str | None = None
    amd_config: tuple[tuple[str, int], ...] = ()
    transcription: TranscriptionRequest | None = None


def _job(w: World, kind: str, call: Call, **data: object) -> MediaJob:
    job = MediaJob(id=new_uuid(), account_id=w.account_id, kind=kind, scope="call", created_at=w.now,
                   updated_at=w.now, call_control_id=call.call_control_id, data=dict(data))  # fmt: skip
    w.insert(job)
    return job


def _touch(w: World, call: Call, client_state: str | None) -> None:
    if client_state is not None:
        call.client_state = client_state
        w.update(call)


def _start_stream(w: World, call: Call, req: StreamRequest) -> None:
    play_to: tuple[str, ...] = (call.call_control_id,)
    if req.bidirectional and req.target_legs != "self":
        partner = call.bridged_with if call.state is CallState.BRIDGED else None
        if partner is None:
            raise reject("90107", "stream_bidirectional_target_legs other than self needs a bridged call.",
                         "/stream_bidirectional_target_legs")
        play_to = (partner,) if req.target_legs == "opposite" else (call.call_control_id, partner)
    job = _job(w, "stream", call, stream_url=req.url, track=req.track)
    w.media.append(m.StartStream(
        job.id, call.call_control_id, req.url, req.track, req.codec, req.bidirectional, req.bidirectional_codec,
        req.bidirectional_rate, play_to, req.auth_token, req.custom_parameters, call.client_state,
        call.call_session_id, call.from_, call.to,
    ))  # fmt: skip


def listen_on(w: World, call: Call, listening: Listening) -> None:
    """A dialled or answered call's stream and detection (started by the media plane at the answer)."""
    if listening.stream is not None:
        _start_stream(w, call, listening.stream)
    if listening.amd_mode is not None and listening.amd_mode in AMD_MODES:
        job = _job(w, "amd", call, mode=listening.amd_mode)
        w.media.append(m.DetectMachine(job.id, call.call_control_id, AMD_MODES[listening.amd_mode],
                                       listening.amd_config))
    if listening.transcription is not None:
        _start_transcription(w, call, listening.transcription)


def _start_transcription(w: World, call: Call, req: TranscriptionRequest) -> None:
    job = _job(w, "transcription", call, tracks=req.tracks, engine=req.engine, interim_results=req.interim_results)
    w.media.append(m.StartTranscription(job.id, call.call_control_id, req.tracks, req.interim_results))


def transcription_start(w: World, cid: str, req: TranscriptionRequest, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(cid), r.OpenJobs("transcription", call_control_id=cid))
    call = answered(w, cid)
    _touch(w, call, client_state)
    for job in w.result(r.OpenJobs("transcription", call_control_id=cid)):  # a new one replaces it
        _done(w, job)
    _start_transcription(w, call, req)


def transcription_stop(w: World, cid: str, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(cid), r.OpenJobs("transcription", call_control_id=cid))
    call = answered(w, cid)
    jobs = w.result(r.OpenJobs("transcription", call_control_id=cid))
    if not jobs:
        raise reject("90107", "No transcription in progress on this call.")
    _touch(w, call, client_state)
    for job in jobs:
        _done(w, job)
    w.media.append(m.StopTranscription(call.call_control_id))


def _done(w: World, job: MediaJob) -> None:
    job.status = "done"
    job.updated_at = w.now
    w.update(job)


def streaming_start(w: World, cid: str, req: StreamRequest, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(cid))
    call = answered(w, cid)
    _touch(w, call, client_state)
    _start_stream(w, call, req)


def streaming_stop(w: World, cid: str, stream_id: str | None, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(cid), r.OpenJobs("stream", call_control_id=cid))
    call = answered(w, cid)
    _touch(w, call, client_state)
    jobs = [j for j in w.result(r.OpenJobs("stream", call_control_id=cid)) if stream_id in (None, j.id)]
    if not jobs:
        raise reject("90107", "No stream in progress on this call.", "/stream_id" if stream_id else None)
    for job in jobs:
        w.media.append(m.StopStream(call.call_control_id, job.id))


def fork_start(w: World, cid: str, rx: str | None, tx: str | None, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(cid), r.OpenJobs("fork", call_control_id=cid))
    call = answered(w, cid)
    if w.result(r.OpenJobs("fork", call_control_id=cid)):
        raise reject("90107", "The call is already forked; stop it first.")
    _touch(w, call, client_state)
    job = _job(w, "fork", call, rx=rx, tx=tx)
    w.media.append(m.StartFork(job.id, call.call_control_id, rx, tx))
    emit_call(w, "call.fork.started", call, stream_type="decrypted")


def fork_stop(w: World, cid: str, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(cid), r.OpenJobs("fork", call_control_id=cid))
    call = answered(w, cid)
    jobs = w.result(r.OpenJobs("fork", call_control_id=cid))
    if not jobs:
        raise reject("90107", "The call is not forked.")
    _touch(w, call, client_state)
    for job in jobs:
        job.status = "done"
        job.updated_at = w.now
        w.update(job)
    w.media.append(m.StopFork(call.call_control_id))
    emit_call(w, "call.fork.stopped", call, stream_type="decrypted")


# -- what the media plane reports ----------------------------------------------------------------------


def _call_of(w: World, job_id: str) -> Steps[tuple[MediaJob | None, Call | None]]:
    yield from w.load(r.JobById(job_id))
    job: MediaJob | None = w.result(r.JobById(job_id))
    if job is None or job.call_control_id is None:
        return job, None
    yield from w.load(r.CallById(job.call_control_id, lock=False))
    return job, w.call(job.call_control_id)


def stream_started(w: World, job_id: str) -> Steps[None]:
    job, call = yield from _call_of(w, job_id)
    if job is None or call is None:
        return
    job.status = "active"
    job.updated_at = w.now
    w.update(job)
    emit_call(w, "streaming.started", call, stream_url=job.data.get("stream_url"))


def stream_ended(w: World, job_id: str, failure: str | None) -> Steps[None]:
    job, call = yield from _call_of(w, job_id)
    if job is None:
        return
    job.status = "done"
    job.updated_at = w.now
    w.update(job)
    if call is None:
        return
    if failure is None:
        emit_call(w, "streaming.stopped", call, stream_url=job.data.get("stream_url"))
        return
    emit_call(w, "streaming.failed", call, failure_reason=failure, stream_id=job.id, stream_type="websocket",
              stream_params={"stream_url": job.data.get("stream_url"), "track": job.data.get("track")})


def machine_detection(w: World, job_id: str, kind: str, result: str) -> Steps[None]:
    job, call = yield from _call_of(w, job_id)
    if job is None or call is None:
        return
    # done with its last verdict: the greeting's end, or a detection after which none comes
    if kind == "greeting" or AMD_MODES.get(str(job.data.get("mode")), "detect") == "detect" or result != "machine":
        job.status = "done"
        job.updated_at = w.now
        w.update(job)
    event = "call.machine.detection.ended" if kind == "detection" else "call.machine.greeting.ended"
    emit_call(w, event, call, result=result)


def transcribed(w: World, fact: m.Transcribed) -> Steps[None]:
    """A result of a transcription still running (one stopped reports nothing more)."""
    job, call = yield from _call_of(w, fact.job_id)
    if job is None or call is None or job.status == "done":
        return
    data: dict[str, object] = {"transcript": fact.transcript, "confidence": fact.confidence,
                               "is_final": fact.is_final}
    if job.data.get("tracks") == "both":
        data["transcription_track"] = fact.track
    emit_call(w, "call.transcription", call, transcription_data=data)
