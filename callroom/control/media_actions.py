"""Media commands (play, speak, stop, record, gather, send DTMF) for calls and conferences, and the
webhooks sent when the media plane reports that audio really started, ended or was saved.

Each command is checked here (the leg or conference exists and is in a state that allows it; the
media name exists; the voice and language exist), recorded as a media job, and handed to the media
plane as an instruction. Nothing is reported to the application until the media plane says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from callroom.audio.tts import installed_voices, resolve_voice, validate_payload
from callroom.control.context import Ctx
from callroom.control.guards import answered_call, reject
from callroom.errors import CommandRejected, SpeechRequestInvalid
from callroom.model import media as m
from callroom.model.records import Call, Conference, MediaJob, Recording, new_uuid
from callroom.model.states import CallState
from callroom.store import media_tx
from callroom.timefmt import iso


@dataclass(frozen=True, slots=True)
class Source:
    """Where audio comes from, as the API gave it."""

    audio_url: str | None = None
    media_name: str | None = None
    payload: str | None = None
    voice: str | None = None
    language: str | None = None
    payload_type: str = "text"


def audio_spec(ctx: Ctx, src: Source, pointer: str = "/audio_url") -> m.AudioSpec:
    if src.payload is not None:
        check_speech(src)
        return m.AudioSpec("tts", src.payload, src.voice, src.language, src.payload_type)
    if src.media_name:
        media = media_tx.get_media(ctx.tx, ctx.account_id, src.media_name)
        if media is None:
            raise CommandRejected(
                "10015", "Invalid value", f"No uploaded media named {src.media_name!r}.", "/media_name"
            )
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


def _job(
    ctx: Ctx,
    kind: str,
    scope: str,
    *,
    call: Call | None = None,
    conference: Conference | None = None,
    job_id: str | None = None,
    **data: Any,
) -> MediaJob:
    job = MediaJob(
        id=job_id or new_uuid(),
        account_id=ctx.account_id,
        kind=kind,
        scope=scope,
        created_at=ctx.now,
        updated_at=ctx.now,
        call_control_id=call.call_control_id if call else None,
        conference_id=conference.id if conference else None,
        data=data,
    )
    media_tx.insert_job(ctx.tx, job)
    return job


def _loop(loop: int | str | None) -> int | None:
    return None if loop == "infinity" else int(loop or 1)


# -- calls -------------------------------------------------------------------------------------------


def call_play(
    ctx: Ctx,
    cid: str,
    src: Source,
    *,
    loop: int | str | None,
    overlay: bool,
    target_legs: str | None,
    client_state: str | None,
) -> None:
    call = _media_call(ctx, cid, client_state)
    spec = audio_spec(ctx, src)
    kind = "speak" if spec.kind == "tts" else "playback"
    targets = _target_legs(ctx, call, target_legs or "self")
    job = _job(ctx, kind, "call", call=call, media_url=src.audio_url, media_name=src.media_name, overlay=overlay)
    ctx.media.append(m.Play(job.id, spec, targets, loop=_loop(loop), overlay=overlay))


def call_stop(ctx: Ctx, cid: str, *, which: str, kinds: tuple[str, ...], client_state: str | None) -> None:
    call = _media_call(ctx, cid, client_state)
    ctx.media.append(m.StopPlay((call.call_control_id,), which=which, kinds=kinds))


def call_send_dtmf(ctx: Ctx, cid: str, digits: str, duration_millis: int, client_state: str | None) -> None:
    call = _media_call(ctx, cid, client_state)
    ctx.media.append(m.SendDtmf((call.call_control_id,), digits, duration_millis))


@dataclass(frozen=True, slots=True)
class GatherRequest:
    prompt: Source | None = None
    invalid: Source | None = None
    minimum_digits: int = 1
    maximum_digits: int = 128
    terminating_digit: str = "#"
    valid_digits: str = "0123456789#*"
    timeout_millis: int = 60000
    inter_digit_timeout_millis: int = 5000
    initial_timeout_millis: int = 5000
    maximum_tries: int = 3
    stop_playback_on_dtmf: bool = True
    gather_id: str | None = None


def gather(
    ctx: Ctx, cid: str, req: GatherRequest, client_state: str | None, conference: Conference | None = None
) -> None:
    call = _media_call(ctx, cid, client_state)
    if req.minimum_digits > req.maximum_digits:
        raise CommandRejected("10015", "Invalid value", "minimum_digits exceeds maximum_digits.", "/minimum_digits")
    prompt = audio_spec(ctx, req.prompt) if req.prompt else None
    invalid = audio_spec(ctx, req.invalid, "/invalid_audio_url") if req.invalid else None
    job = _job(ctx, "gather", "call", call=call, conference=conference, gather_id=req.gather_id)
    if prompt is not None:
        _job(
            ctx,
            "speak" if prompt.kind == "tts" else "playback",
            "call",
            call=call,
            job_id=f"{job.id}:prompt",
            media_url=req.prompt.audio_url if req.prompt else None,
            media_name=req.prompt.media_name if req.prompt else None,
            overlay=False,
        )
    ctx.media.append(
        m.Gather(
            job.id,
            call.call_control_id,
            prompt,
            invalid,
            req.minimum_digits,
            req.maximum_digits,
            req.terminating_digit,
            req.valid_digits,
            req.timeout_millis,
            req.inter_digit_timeout_millis,
            req.initial_timeout_millis,
            req.maximum_tries,
            req.stop_playback_on_dtmf,
        )
    )


def record_start(
    ctx: Ctx,
    *,
    call: Call | None,
    conference: Conference | None,
    fmt: str,
    channels: str,
    trim: bool,
    custom_file_name: str | None,
    max_length: int,
    play_beep: bool,
    storage: str,
    download_base: str,
    per_participant: bool = False,
) -> Recording:
    busy = media_tx.open_jobs(
        ctx.tx,
        kind="record",
        call_control_id=call.call_control_id if call else None,
        conference_id=conference.id if conference else None,
    )
    if busy:
        raise reject("90107", "A recording is already in progress; stop it first.")
    rec_id = new_uuid()
    base = custom_file_name or (call.call_leg_id if call else rec_id)
    file_name = f"{base}-{int(ctx.now)}" if custom_file_name else base
    rec = Recording(
        id=rec_id,
        account_id=ctx.account_id,
        source="call" if call else "conference",
        channels=channels,
        format=fmt,
        file_name=f"{file_name}.{fmt}",
        status="recording",
        recording_started_at=ctx.now,
        created_at=ctx.now,
        updated_at=ctx.now,
        call_control_id=call.call_control_id if call else (conference.creator_call_control_id if conference else None),
        call_leg_id=call.call_leg_id if call else None,
        call_session_id=call.call_session_id if call else (conference.creator_call_session_id if conference else None),
        conference_id=conference.id if conference else None,
        connection_id=call.connection_id if call else (conference.connection_id if conference else None),
    )
    media_tx.insert_recording(ctx.tx, rec)
    _job(
        ctx,
        "record",
        "call" if call else "conference",
        call=call,
        conference=conference,
        job_id=rec_id,
        download_base=download_base,
        client_state=call.client_state if call else None,
    )
    ctx.media.append(
        m.StartRecording(
            rec_id,
            f"{storage}/{ctx.account_id}/{rec_id}",
            fmt,
            channels,
            call_control_id=call.call_control_id if call else None,
            per_participant=per_participant,
            conference_id=conference.id if conference else None,
            creator_call_control_id=conference.creator_call_control_id if conference else None,
            trim_silence=trim,
            max_length_secs=max_length,
            play_beep=play_beep,
        )
    )
    return rec


def record_control(
    ctx: Ctx, action: str, *, call: Call | None, conference: Conference | None, recording_id: str | None
) -> None:
    jobs = media_tx.open_jobs(
        ctx.tx,
        kind="record",
        call_control_id=call.call_control_id if call else None,
        conference_id=conference.id if conference else None,
    )
    if recording_id:
        jobs = [j for j in jobs if j.id == recording_id]
    if not jobs:
        raise reject("90107", "No recording in progress.", "/recording_id" if recording_id else None)
    for job in jobs:
        if action == "stop":
            job.status = "stopping"
            media_tx.update_job(ctx.tx, job)
        ctx.media.append(m.ControlRecording(job.id, action))


def _media_call(ctx: Ctx, cid: str, client_state: str | None) -> Call:
    call = answered_call(ctx, cid)
    if client_state is not None:
        call.client_state = client_state
        ctx.tx.update_call(call)
    return call


def _target_legs(ctx: Ctx, call: Call, target_legs: str) -> tuple[str, ...]:
    if target_legs == "self":
        return (call.call_control_id,)
    partner = call.bridged_with if call.state is CallState.BRIDGED else None
    if partner is None:
        raise reject("90107", "target_legs needs a bridged call.", "/target_legs")
    return (partner,) if target_legs == "opposite" else (call.call_control_id, partner)


# -- conferences -------------------------------------------------------------------------------------


def conference_play(
    ctx: Ctx, conf: Conference, src: Source, *, loop: int | str | None, call_control_ids: list[str] | None
) -> None:
    spec = audio_spec(ctx, src)
    kind = "speak" if spec.kind == "tts" else "playback"
    if not call_control_ids:
        job = _job(ctx, kind, "conference", conference=conf, media_url=src.audio_url, media_name=src.media_name)
        ctx.media.append(m.Play(job.id, spec, conference_id=conf.id, loop=_loop(loop), overlay=True))
        return
    present = {p.call_control_id: p for p in ctx.tx.participants_of(conf.id)}
    unknown = [c for c in call_control_ids if c not in present]
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.", "/call_control_ids")
    for cid in call_control_ids:
        call = ctx.tx.get_call(ctx.account_id, cid)
        job = _job(
            ctx, kind, "participants", call=call, conference=conf, media_url=src.audio_url, media_name=src.media_name
        )
        ctx.media.append(m.Play(job.id, spec, (cid,), loop=_loop(loop), overlay=True))


def conference_stop(ctx: Ctx, conf: Conference, call_control_ids: list[str] | None) -> None:
    if call_control_ids:
        ctx.media.append(m.StopPlay(tuple(call_control_ids)))
    else:
        ctx.media.append(m.StopPlay(conference_id=conf.id))
        present = tuple(p.call_control_id for p in ctx.tx.participants_of(conf.id))
        if present:
            ctx.media.append(m.StopPlay(present))


def conference_send_dtmf(
    ctx: Ctx, conf: Conference, call_control_ids: list[str] | None, digits: str, duration_millis: int
) -> None:
    present = [p.call_control_id for p in ctx.tx.participants_of(conf.id)]
    targets = call_control_ids or present
    unknown = [c for c in targets if c not in present]
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.", "/call_control_ids")
    ctx.media.append(m.SendDtmf(tuple(targets), digits, duration_millis))


# -- facts from the media plane -----------------------------------------------------------------------


def _find_job(ctx: Ctx, job_id: str) -> MediaJob | None:
    job = media_tx.get_job(ctx.tx, job_id)
    if job is None and ":prompt" in job_id:  # a gather's repeated prompt reports as its first prompt
        job = media_tx.get_job(ctx.tx, job_id.split(":prompt")[0] + ":prompt")
        if job is not None:
            job = replace(job)
    return job


def playback_started(ctx: Ctx, job_id: str) -> None:
    job = _find_job(ctx, job_id)
    if job is None:
        return
    if job.status == "pending":
        job.status = "active"
        job.updated_at = ctx.now
        media_tx.update_job(ctx.tx, job)
    _emit_playback(ctx, job, "started", {})


def playback_ended(ctx: Ctx, job_id: str, status: str, detail: str | None) -> None:
    job = _find_job(ctx, job_id)
    if job is None:
        return
    never_started = job.status == "pending"
    job.status = "done"
    job.updated_at = ctx.now
    media_tx.update_job(ctx.tx, job)
    if never_started and detail == "not_started":
        return  # cancelled while waiting its turn: it never played, so nothing started or ended
    extra: dict[str, Any] = {"status": status}
    if detail and job.kind == "playback":
        extra["status_detail"] = detail
    _emit_playback(ctx, job, "ended", extra)


def _emit_playback(ctx: Ctx, job: MediaJob, phase: str, extra: dict[str, Any]) -> None:
    media = (
        {}
        if job.kind == "speak"
        else {"media_url": job.data.get("media_url"), "media_name": job.data.get("media_name")}
    )
    if job.scope == "call" and job.call_control_id:
        call = ctx.tx.get_call(ctx.account_id, job.call_control_id)
        if call is not None:
            if job.kind == "playback":
                media["overlay"] = bool(job.data.get("overlay"))
            if job.kind == "speak":
                extra = {k: v for k, v in extra.items() if k == "status"}
            ctx.emit_call(f"call.{job.kind}.{phase}", call, **media, **extra)
        return
    conf = ctx.tx.get_conference(ctx.account_id, job.conference_id or "")
    if conf is None:
        return
    if job.scope == "conference":
        ctx.emit_conference(
            f"conference.{job.kind}.{phase}",
            conf,
            creator_call_session_id=conf.creator_call_session_id,
            **media,
            **extra,
        )
        return
    call = ctx.tx.get_call(ctx.account_id, job.call_control_id or "")
    if call is not None:
        ctx.emit_conference(
            f"conference.participant.{job.kind}.{phase}",
            conf,
            call_control_id=call.call_control_id,
            call_leg_id=call.call_leg_id,
            call_session_id=call.call_session_id,
            client_state=call.client_state,
            connection_id=call.connection_id,
            creator_call_session_id=conf.creator_call_session_id,
            **media,
            **extra,
        )


def gather_ended(ctx: Ctx, job_id: str, digits: str, status: str) -> None:
    job = media_tx.get_job(ctx.tx, job_id)
    if job is None or job.call_control_id is None:
        return
    job.status = "done"
    media_tx.update_job(ctx.tx, job)
    call = ctx.tx.get_call(ctx.account_id, job.call_control_id)
    if call is not None:
        extra = {"gather_id": job.data["gather_id"]} if job.data.get("gather_id") else {}
        ctx.emit_call("call.gather.ended", call, digits=digits, status=status, **extra)


def recording_saved(
    ctx: Ctx, job_id: str, path: str, size: int, duration_ms: int, started: float, ended: float,
    tracks: tuple[str, ...] = (),
) -> None:
    job = media_tx.get_job(ctx.tx, job_id)
    rec = media_tx.get_recording(ctx.tx, ctx.account_id, job_id)
    if job is None or rec is None:
        return
    job.status = "done"
    media_tx.update_job(ctx.tx, job)
    rec.status, rec.path, rec.size_bytes, rec.duration_millis = "completed", path, size, duration_ms
    rec.recording_ended_at = ctx.now
    rec.updated_at = ctx.now
    media_tx.update_recording(ctx.tx, rec)
    urls = {rec.format: f"{job.data.get('download_base', '')}/v2/recordings/{rec.id}/download.{rec.format}"}
    payload: dict[str, Any] = {
        "recording_id": rec.id,
        "channels": rec.channels,
        "format": rec.format,
        "recording_started_at": iso(rec.recording_started_at),
        "recording_ended_at": iso(rec.recording_ended_at),
        "recording_urls": urls,
        "public_recording_urls": urls,
        "duration_millis": duration_ms,
    }
    if tracks:
        payload["tracks"] = [{"channel": i, "call_control_id": cid} for i, cid in enumerate(tracks, start=1)]
    if rec.source == "call":
        call = ctx.tx.get_call(ctx.account_id, rec.call_control_id or "")
        if call is not None:
            ctx.emit_call("call.recording.saved", call, **payload)
    else:
        conf = ctx.tx.get_conference(ctx.account_id, rec.conference_id or "")
        if conf is not None:
            ctx.emit_conference("conference.recording.saved", conf, **payload)


def recording_failed(ctx: Ctx, job_id: str, detail: str) -> None:
    job = media_tx.get_job(ctx.tx, job_id)
    rec = media_tx.get_recording(ctx.tx, ctx.account_id, job_id)
    if job is not None:
        job.status = "done"
        media_tx.update_job(ctx.tx, job)
    if rec is not None:
        rec.status = "failed"
        rec.updated_at = ctx.now
        media_tx.update_recording(ctx.tx, rec)
