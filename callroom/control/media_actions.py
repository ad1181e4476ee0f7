"""Media commands (play, speak, stop, record, gather, send DTMF) for calls and conferences, and the
webhooks sent when the media plane reports that audio really started, ended or was saved.

Each command is checked here (the leg or conference exists and is in a state that allows it; the media name
exists; the voice and language exist), recorded as a media job, and handed to the media plane as an
instruction. Nothing is reported to the application until the media plane says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callroom.audio.tts import installed_voices, resolve_voice, validate_payload
from callroom.control.conferences import unknown_ids
from callroom.control.guards import active_conference, answered, reject
from callroom.control.world import Steps, World
from callroom.errors import CommandRejected, SpeechRequestInvalid
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import Call, Conference, MediaFile, MediaJob, Recording, new_uuid
from callroom.model.states import CallState


@dataclass(frozen=True, slots=True)
class Source:
    """Where audio comes from, as the API gave it."""

    audio_url: str | None = None
    media_name: str | None = None
    payload: str | None = None
    voice: str | None = None
    language: str | None = None
    payload_type: str = "text"


def _media_reads(*sources: Source | None) -> tuple[r.Read, ...]:
    return tuple(r.MediaByName(s.media_name) for s in sources if s is not None and s.media_name and not s.payload)


def audio_spec(w: World, src: Source, pointer: str = "/audio_url") -> m.AudioSpec:
    """The audio as the media plane names it (uploaded media read in the command's batch)."""
    if src.payload is not None:
        check_speech(src)
        return m.AudioSpec("tts", src.payload, src.voice, src.language, src.payload_type)
    if src.media_name:
        media: MediaFile | None = w.result(r.MediaByName(src.media_name))
        if media is None:
            raise CommandRejected("10015", "Invalid value", f"No uploaded media named {src.media_name!r}.",
                                  "/media_name")
        return m.AudioSpec("file", media.path)
    if src.audio_url:
        return m.AudioSpec("url", src.audio_url)
    raise CommandRejected("10004", "Missing required parameter", "audio_url or media_name is required.", pointer)


def check_speech(src: Source) -> None:
    try:
        validate_payload(src.payload or "", "ssml" if src.payload_type == "ssml" else "text")
        resolve_voice(src.voice or "female", src.language, installed_voices())
    except SpeechRequestInvalid as exc:
        raise CommandRejected("10015", "Invalid value", str(exc), f"/{exc.field}") from exc


def _job(w: World, kind: str, scope: str, *, call: Call | None = None, conference: Conference | None = None,
         job_id: str | None = None, **data: Any) -> MediaJob:  # fmt: skip
    job = MediaJob(id=job_id or new_uuid(), account_id=w.account_id, kind=kind, scope=scope, created_at=w.now,
                   updated_at=w.now, call_control_id=call.call_control_id if call else None,
                   conference_id=conference.id if conference else None, data=data)  # fmt: skip
    w.insert(job)
    return job


def _loop(loop: int | str | None) -> int | None:
    return None if loop == "infinity" else int(loop or 1)


def _media_call(w: World, cid: str, client_state: str | None) -> Call:
    call = answered(w, cid)
    if client_state is not None:
        call.client_state = client_state
        w.update(call)
    return call


# -- calls -------------------------------------------------------------------------------------------


def call_play(w: World, cid: str, src: Source, *, loop: int | str | None, overlay: bool, target_legs: str | None,
              client_state: str | None, stop_first: str | None = None) -> Steps[None]:  # fmt: skip
    """``playback_start`` and ``speak``; ``stop_first``: what playing audio to stop before (their ``stop``)."""
    yield from w.load(r.CallById(cid), *_media_reads(src))
    if stop_first:
        call = _media_call(w, cid, None)
        w.media.append(m.StopPlay((call.call_control_id,), which=stop_first, kinds=("playback", "speak")))
    call = _media_call(w, cid, client_state)
    spec = audio_spec(w, src)
    kind = "speak" if spec.kind == "tts" else "playback"
    targets = _target_legs(call, target_legs or "self")
    job = _job(w, kind, "call", call=call, media_url=src.audio_url, media_name=src.media_name, overlay=overlay)
    w.media.append(m.Play(job.id, spec, targets, loop=_loop(loop), overlay=overlay))


def call_stop(w: World, cid: str, *, which: str, kinds: tuple[str, ...], client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(cid))
    call = _media_call(w, cid, client_state)
    w.media.append(m.StopPlay((call.call_control_id,), which=which, kinds=kinds))


def call_send_dtmf(w: World, cid: str, digits: str, duration_millis: int, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(cid))
    call = _media_call(w, cid, client_state)
    w.media.append(m.SendDtmf((call.call_control_id,), digits, duration_millis))


@dataclass(frozen=True, slots=True)
class GatherRequest:
    prompt: Source | None = None
    invalid: Source | None = None
    minimum_digits: int = m.GATHER_MINIMUM_DIGITS
    maximum_digits: int = m.GATHER_MAXIMUM_DIGITS
    terminating_digit: str = m.GATHER_TERMINATING_DIGIT
    valid_digits: str = m.GATHER_VALID_DIGITS
    timeout_millis: int = m.GATHER_TIMEOUT_MILLIS
    inter_digit_timeout_millis: int = m.GATHER_INTER_DIGIT_TIMEOUT_MILLIS
    initial_timeout_millis: int = m.GATHER_INITIAL_TIMEOUT_MILLIS
    maximum_tries: int = m.GATHER_MAXIMUM_TRIES
    stop_playback_on_dtmf: bool = m.GATHER_STOP_PLAYBACK_ON_DTMF
    gather_id: str | None = None


def gather(w: World, cid: str, req: GatherRequest, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(cid), *_media_reads(req.prompt, req.invalid))
    _gather(w, cid, req, client_state, None)


def stop_gather(w: World, cid: str, client_state: str | None) -> Steps[None]:
    """``gather_stop``: the gather in progress ends with ``call.gather.ended`` (``cancelled``, and the digits
    so far) when the media plane has stopped it."""
    yield from w.load(r.CallById(cid), r.OpenJobs("gather", call_control_id=cid))
    call = _media_call(w, cid, client_state)
    if not w.result(r.OpenJobs("gather", call_control_id=cid)):
        raise reject("90107", "No gather in progress on this call.")
    w.media.append(m.StopGather(call.call_control_id))


def conference_gather(w: World, conference_id: str, cid: str, req: GatherRequest,
                      client_state: str | None) -> Steps[None]:  # fmt: skip
    """A gather on one participant of a conference (by id)."""
    media = _media_reads(req.prompt, req.invalid)
    conf = yield from active_conference(w, conference_id, by_name=False, lock=False,
                                        also=(r.ParticipantOfCall(cid), r.CallById(cid), *media))
    yield from w.load(r.ParticipantOfCall(cid), r.CallById(cid), *media)
    present = w.result(r.ParticipantOfCall(cid))
    if present is None or present.conference_id != conf.id:
        raise reject("90105", "The call is not a participant of this conference.", "/call_control_id")
    _gather(w, cid, req, client_state, conf)


def _gather(w: World, cid: str, req: GatherRequest, client_state: str | None, conference: Conference | None) -> None:
    call = _media_call(w, cid, client_state)
    if req.minimum_digits > req.maximum_digits:
        raise CommandRejected("10015", "Invalid value", "minimum_digits exceeds maximum_digits.", "/minimum_digits")
    prompt = audio_spec(w, req.prompt) if req.prompt else None
    invalid = audio_spec(w, req.invalid, "/invalid_audio_url") if req.invalid else None
    job = _job(w, "gather", "call", call=call, conference=conference, gather_id=req.gather_id)
    if prompt is not None:
        _job(w, "speak" if prompt.kind == "tts" else "playback", "call", call=call, job_id=f"{job.id}:prompt",
             media_url=req.prompt.audio_url if req.prompt else None,
             media_name=req.prompt.media_name if req.prompt else None, overlay=False)  # fmt: skip
    w.media.append(m.Gather(
        job.id, call.call_control_id, prompt, invalid, req.minimum_digits, req.maximum_digits, req.terminating_digit,
        req.valid_digits, req.timeout_millis, req.inter_digit_timeout_millis, req.initial_timeout_millis,
        req.maximum_tries, req.stop_playback_on_dtmf,
    ))  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecordRequest:
    fmt: str
    channels: str
    trim: bool
    custom_file_name: str | None
    max_length: int
    play_beep: bool
    storage: str
    download_base: str
    per_participant: bool = False


def call_record_start(w: World, cid: str, req: RecordRequest, client_state: str | None) -> Steps[Recording]:
    yield from w.load(r.CallById(cid), r.OpenJobs("record", call_control_id=cid))
    call = _media_call(w, cid, client_state)
    return _record_start(w, req, call=call, conference=None)


def conference_record_start(w: World, id_or_name: str, req: RecordRequest) -> Steps[Recording]:
    conf = yield from active_conference(w, id_or_name)
    yield from w.load(r.OpenJobs("record", conference_id=conf.id))
    return _record_start(w, req, call=None, conference=conf)


def _record_start(w: World, req: RecordRequest, *, call: Call | None, conference: Conference | None) -> Recording:
    busy = w.result(r.OpenJobs("record", call_control_id=call.call_control_id if call else None,
                               conference_id=conference.id if conference else None))  # fmt: skip
    if busy:
        raise reject("90107", "A recording is already in progress; stop it first.")
    rec_id = new_uuid()
    base = req.custom_file_name or (call.call_leg_id if call else rec_id)
    file_name = f"{base}-{int(w.now)}" if req.custom_file_name else base
    rec = Recording(
        id=rec_id, account_id=w.account_id, source="call" if call else "conference", channels=req.channels,
        format=req.fmt, file_name=f"{file_name}.{req.fmt}", status="recording", recording_started_at=w.now,
        created_at=w.now, updated_at=w.now,
        call_control_id=call.call_control_id if call else (conference.creator_call_control_id if conference else None),
        call_leg_id=call.call_leg_id if call else None,
        call_session_id=call.call_session_id if call else (conference.creator_call_session_id if conference else None),
        conference_id=conference.id if conference else None,
        connection_id=call.connection_id if call else (conference.connection_id if conference else None),
    )  # fmt: skip
    w.insert(rec)
    _job(w, "record", "call" if call else "conference", call=call, conference=conference, job_id=rec_id,
         download_base=req.download_base, client_state=call.client_state if call else None)  # fmt: skip
    w.media.append(m.StartRecording(
        rec_id, f"{req.storage}/{w.account_id}/{rec_id}", req.fmt, req.channels,
        call_control_id=call.call_control_id if call else None, per_participant=req.per_participant,
        conference_id=conference.id if conference else None,
        creator_call_control_id=conference.creator_call_control_id if conference else None,
        trim_silence=req.trim, max_length_secs=req.max_length, play_beep=req.play_beep,
    ))  # fmt: skip
    return rec


def call_record_control(w: World, action: str, cid: str, recording_id: str | None,
                        client_state: str | None = None) -> Steps[None]:  # fmt: skip
    """``record_pause``, ``record_resume`` and ``record_stop`` on a call (the conference's carry out alike)."""
    yield from w.load(r.CallById(cid), r.OpenJobs("record", call_control_id=cid))
    _media_call(w, cid, client_state)
    _record_control(w, action, w.result(r.OpenJobs("record", call_control_id=cid)), recording_id)


def conference_record_control(w: World, action: str, id_or_name: str, recording_id: str | None,
                              client_state: str | None = None) -> Steps[None]:  # fmt: skip
    conf = yield from active_conference(w, id_or_name)
    yield from w.load(r.OpenJobs("record", conference_id=conf.id))
    _record_control(w, action, w.result(r.OpenJobs("record", conference_id=conf.id)), recording_id)
    _conference_state(w, conf, client_state)


def _conference_state(w: World, conf: Conference, client_state: str | None) -> None:
    """A conference command's ``client_state``: carried by the conference's webhooks from now on (the
    ``conference.recording.saved`` of a ``record_stop`` among them)."""
    if client_state is not None and client_state != conf.client_state:
        conf.client_state = client_state
        conf.updated_at = w.now
        w.update(conf)


def _record_control(w: World, action: str, jobs: list[MediaJob], recording_id: str | None) -> None:
    if recording_id:
        jobs = [j for j in jobs if j.id == recording_id]
    if not jobs:
        raise reject("90107", "No recording in progress.", "/recording_id" if recording_id else None)
    for job in jobs:
        if action == "stop":
            job.status = "stopping"
            w.update(job)
        w.media.append(m.ControlRecording(job.id, action))


def _target_legs(call: Call, target_legs: str) -> tuple[str, ...]:
    if target_legs == "self":
        return (call.call_control_id,)
    partner = call.bridged_with if call.state is CallState.BRIDGED else None
    if partner is None:
        raise reject("90107", "target_legs needs a bridged call.", "/target_legs")
    return (partner,) if target_legs == "opposite" else (call.call_control_id, partner)


# -- conferences -------------------------------------------------------------------------------------


def conference_play(w: World, id_or_name: str, src: Source, *, loop: int | str | None,
                    call_control_ids: list[str] | None) -> Steps[None]:  # fmt: skip
    conf = yield from active_conference(w, id_or_name, with_members=bool(call_control_ids), also=_media_reads(src))
    yield from w.load(*_media_reads(src))
    spec = audio_spec(w, src)
    kind = "speak" if spec.kind == "tts" else "playback"
    if not call_control_ids:
        job = _job(w, kind, "conference", conference=conf, media_url=src.audio_url, media_name=src.media_name)
        w.media.append(m.Play(job.id, spec, conference_id=conf.id, loop=_loop(loop), overlay=True))
        return
    yield from w.load(r.MembersOf(conf.id))
    unknown = unknown_ids(w.members(conf.id), call_control_ids)
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.", "/call_control_ids")
    yield from w.load(*(r.CallById(cid, lock=False) for cid in call_control_ids))
    for cid in call_control_ids:
        job = _job(w, kind, "participants", call=w.call(cid), conference=conf, media_url=src.audio_url,
                   media_name=src.media_name)  # fmt: skip
        w.media.append(m.Play(job.id, spec, (cid,), loop=_loop(loop), overlay=True))


def conference_stop(w: World, id_or_name: str, call_control_ids: list[str] | None) -> Steps[None]:
    conf = yield from active_conference(w, id_or_name, with_members=True)
    if call_control_ids:
        w.media.append(m.StopPlay(tuple(call_control_ids)))
        return
    w.media.append(m.StopPlay(conference_id=conf.id))
    yield from w.load(r.MembersOf(conf.id))
    present = tuple(p.call_control_id for p in w.members(conf.id))
    if present:
        w.media.append(m.StopPlay(present))


def conference_send_dtmf(w: World, conference_id: str, call_control_ids: list[str] | None, digits: str,
                         duration_millis: int, client_state: str | None = None) -> Steps[None]:  # fmt: skip
    conf = yield from active_conference(w, conference_id, by_name=False, with_members=True)
    _conference_state(w, conf, client_state)
    present = [p.call_control_id for p in w.members(conf.id)]
    chosen = call_control_ids or present
    unknown = [c for c in chosen if c not in present]
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.", "/call_control_ids")
    w.media.append(m.SendDtmf(tuple(chosen), digits, duration_millis))
