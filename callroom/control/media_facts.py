"""What the media plane reports about the jobs it carries out (playback and speech started and ended, a gather
ended, a recording saved or failed), turned into the webhooks the application waits for."""

from __future__ import annotations

from typing import Any

from callroom.control.webhooks import emit_call, emit_conference
from callroom.control.world import Steps, World
from callroom.model import reads as r
from callroom.model import signed_links
from callroom.model.records import Conference, MediaJob, Recording
from callroom.timefmt import iso

SPEAK_ENDED_STATUSES = frozenset({"completed", "call_hangup", "cancelled_amd"})


def _job(w: World, job_id: str) -> Steps[MediaJob | None]:
    """The job, or for a gather's repeated prompt (``<id>:prompt...``) its first prompt's job."""
    base = job_id.split(":prompt")[0] + ":prompt" if ":prompt" in job_id else job_id
    yield from w.load(r.JobById(job_id), r.JobById(base))
    job: MediaJob | None = w.result(r.JobById(job_id)) or w.result(r.JobById(base))
    return job


def _subjects(w: World, job: MediaJob) -> Steps[None]:
    """The call and conference a job's webhooks are about, in one batch."""
    reads: list[r.Read] = []
    if job.call_control_id:
        reads.append(r.CallById(job.call_control_id, lock=False))
    if job.conference_id:
        reads.append(r.ConferenceById(job.conference_id, lock=False))
    yield from w.load(*reads)


def playback_started(w: World, job_id: str) -> Steps[None]:
    job = yield from _job(w, job_id)
    if job is None:
        return
    if job.status == "pending":
        job.status = "active"
        job.updated_at = w.now
        w.update(job)
    yield from _emit_playback(w, job, "started", {})


def playback_ended(w: World, job_id: str, status: str, detail: str | None) -> Steps[None]:
    job = yield from _job(w, job_id)
    if job is None:
        return
    never_started = job.status == "pending"
    job.status = "done"
    job.updated_at = w.now
    w.update(job)
    if never_started and detail == "not_started":
        return  # cancelled while waiting its turn: it never played, so nothing started or ended
    extra: dict[str, Any] = {"status": status}
    if detail and job.kind == "playback":
        extra["status_detail"] = detail
    yield from _emit_playback(w, job, "ended", extra)


def _emit_playback(w: World, job: MediaJob, phase: str, extra: dict[str, Any]) -> Steps[None]:
    yield from _subjects(w, job)
    media = {} if job.kind == "speak" else {"media_url": job.data.get("media_url"),
                                            "media_name": job.data.get("media_name")}  # fmt: skip
    if job.scope == "call" and job.call_control_id:
        call = w.call(job.call_control_id)
        if call is not None:
            if job.kind == "playback":
                media["overlay"] = bool(job.data.get("overlay"))
            if job.kind == "speak":
                # call.speak.ended's status has three values in Telnyx's models; with another (speech stopped
                # before its end: cancelled; or failed) the SDK would parse the webhook as another event, so
                # it is left out.
                extra = {k: v for k, v in extra.items() if k == "status" and v in SPEAK_ENDED_STATUSES}
            emit_call(w, f"call.{job.kind}.{phase}", call, **media, **extra)
        return
    conf: Conference | None = (w.result(r.ConferenceById(job.conference_id, lock=False))
                               if job.conference_id else None)  # fmt: skip
    if conf is None:
        return
    if job.scope == "conference":
        emit_conference(w, f"conference.{job.kind}.{phase}", conf, creator_call_session_id=conf.creator_call_session_id,
                        **media, **extra)
        return
    call = w.call(job.call_control_id) if job.call_control_id else None
    if call is not None:
        emit_conference(
            w, f"conference.participant.{job.kind}.{phase}", conf, call_control_id=call.call_control_id,
            call_leg_id=call.call_leg_id, call_session_id=call.call_session_id, client_state=call.client_state,
            connection_id=call.connection_id, creator_call_session_id=conf.creator_call_session_id, **media, **extra,
        )


def gather_ended(w: World, job_id: str, digits: str, status: str) -> Steps[None]:
    yield from w.load(r.JobById(job_id))
    job: MediaJob | None = w.result(r.JobById(job_id))
    if job is None or job.call_control_id is None:
        return
    job.status = "done"
    w.update(job)
    yield from _subjects(w, job)
    call = w.call(job.call_control_id)
    if call is not None:
        extra = {"gather_id": job.data["gather_id"]} if job.data.get("gather_id") else {}
        emit_call(w, "call.gather.ended", call, digits=digits, status=status, **extra)


def recording_saved(w: World, job_id: str, key: str, size: int, duration_ms: int, started: float, ended: float,
                    tracks: tuple[str, ...] = (), link_secret: bytes = b"") -> Steps[None]:  # fmt: skip
    """A recording's file is complete and stored (``key``: ``store/blobs.py``, kept as the row's ``path``): its
    webhook, with ``recording_urls`` and ``public_recording_urls``, both
    links signed with ``link_secret`` and good for ten minutes (``signed_links.py``), downloaded with no API key
    as Telnyx's pre-signed links are (``GET /v2/recordings`` has ``download_urls`` for the API key, for good)."""
    yield from w.load(r.JobById(job_id), r.RecordingById(job_id))
    job: MediaJob | None = w.result(r.JobById(job_id))
    rec: Recording | None = w.result(r.RecordingById(job_id))
    if job is None or rec is None:
        return
    job.status = "done"
    w.update(job)
    rec.status, rec.path, rec.size_bytes, rec.duration_millis = "completed", key, size, duration_ms
    rec.recording_ended_at = w.now
    rec.updated_at = w.now
    w.update(rec)
    base = job.data.get("download_base", "")
    public = {rec.format: signed_links.public_url(base, link_secret, rec.id, rec.format, w.now)}
    urls = dict(public)
    payload: dict[str, Any] = {
        "recording_id": rec.id, "channels": rec.channels, "format": rec.format,
        "recording_started_at": iso(rec.recording_started_at), "recording_ended_at": iso(rec.recording_ended_at),
        "recording_urls": urls, "public_recording_urls": public, "duration_millis": duration_ms,
    }  # fmt: skip
    if tracks:
        payload["tracks"] = [{"channel": i, "call_control_id": cid} for i, cid in enumerate(tracks, start=1)]
    if rec.source == "call":
        cid = rec.call_control_id or ""
        yield from w.load(r.CallById(cid, lock=False))
        call = w.call(cid)
        if call is not None:
            emit_call(w, "call.recording.saved", call, **payload)
    else:
        conf_id = rec.conference_id or ""
        yield from w.load(r.ConferenceById(conf_id, lock=False))
        conf: Conference | None = w.result(r.ConferenceById(conf_id, lock=False))
        if conf is not None:
            emit_conference(w, "conference.recording.saved", conf, **payload)


def recording_failed(w: World, job_id: str, detail: str) -> Steps[None]:
    yield from w.load(r.JobById(job_id), r.RecordingById(job_id))
    job: MediaJob | None = w.result(r.JobById(job_id))
    rec: Recording | None = w.result(r.RecordingById(job_id))
    if job is not None:
        job.status = "done"
        w.update(job)
    if rec is not None:
        rec.status = "failed"
        rec.updated_at = w.now
        w.update(rec)
