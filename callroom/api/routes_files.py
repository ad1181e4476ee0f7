"""``/recordings`` (list, retrieve, delete, download) and ``/media`` (upload, list, retrieve, update,
download, delete): the files the node keeps for an account."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from callroom.api import limits
from callroom.api.common import Account, Ctl, PageParams, data
from callroom.api.schemas import MEDIA_NAME_RULE, media_name_problem
from callroom.audio.decode import decode_audio
from callroom.audio.fetch import FETCH_FAILED, MediaFetcher, checked_client, public_reason
from callroom.control.service import ReadCtx
from callroom.errors import ErrorItem, Forbidden, MediaError, NotFound, ValidationFailed
from callroom.model import signed_links
from callroom.model.records import MediaFile, Recording
from callroom.outbound import AddressPolicy
from callroom.store import media_tx
from callroom.timefmt import iso

router = APIRouter()
log = logging.getLogger(__name__)

MAX_MEDIA_BYTES = limits.MAX_MEDIA_BYTES
DEFAULT_TTL_SECS = 2 * 86400


def recording_view(rec: Recording, base: str) -> dict[str, Any]:
    return {
        "id": rec.id,
        "record_type": "recording",
        "call_control_id": rec.call_control_id,
        "call_leg_id": rec.call_leg_id,
        "call_session_id": rec.call_session_id,
        "conference_id": rec.conference_id,
        "connection_id": rec.connection_id,
        "channels": rec.channels,
        "source": rec.source,
        "status": rec.status,
        "duration_millis": rec.duration_millis,
        "download_urls": {rec.format: f"{base}/v2/recordings/{rec.id}/download.{rec.format}"},
        "recording_started_at": iso(rec.recording_started_at),
        "recording_ended_at": iso(rec.recording_ended_at),
        "created_at": iso(rec.created_at),
        "updated_at": iso(rec.updated_at),
    }


def _recording(ctx: ReadCtx, recording_id: str) -> Recording:
    rec = media_tx.get_recording(ctx.tx, ctx.account_id, recording_id)
    if rec is None or rec.status != "completed":
        raise NotFound(f"No recording {recording_id!r}.")
    return rec


@router.get("/recordings")
async def list_recordings(
    request: Request,
    account: Account,
    ctl: Ctl,
    page: PageParams,
    call_control_id: Annotated[str | None, Query(alias="filter[call_control_id]")] = None,
    call_leg_id: Annotated[str | None, Query(alias="filter[call_leg_id]")] = None,
    call_session_id: Annotated[str | None, Query(alias="filter[call_session_id]")] = None,
    conference_id: Annotated[str | None, Query(alias="filter[conference_id]")] = None,
) -> dict[str, Any]:
    filters = {
        k: v
        for k, v in (
            ("call_control_id", call_control_id),
            ("call_leg_id", call_leg_id),
            ("call_session_id", call_session_id),
            ("conference_id", conference_id),
        )
        if v
    }
    base = str(request.base_url).rstrip("/")
    items, total = await ctl.aread(
        account, lambda ctx: media_tx.list_recordings(ctx.tx, account, page.number, page.size, filters)
    )
    return page.envelope([recording_view(r, base) for r in items], total)


@router.get("/recordings/{recording_id}")
async def retrieve_recording(recording_id: str, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    rec = await ctl.aread(account, lambda ctx: _recording(ctx, recording_id))
    return data(recording_view(rec, str(request.base_url).rstrip("/")))


@router.delete("/recordings/{recording_id}")
async def delete_recording(recording_id: str, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    def run(ctx: ReadCtx) -> Recording:
        rec = _recording(ctx, recording_id)
        media_tx.delete_recording(ctx.tx, rec)
        return rec

    rec = await ctl.astore_rows(account, run)
    if rec.path:
        Path(rec.path).unlink(missing_ok=True)
    return data(recording_view(rec, str(request.base_url).rstrip("/")))


@router.get("/recordings/{recording_id}/download.{fmt}")
async def download_recording(recording_id: str, fmt: str, account: Account, ctl: Ctl) -> FileResponse:
    rec = await ctl.aread(account, lambda ctx: _recording(ctx, recording_id))
    if fmt != rec.format or not rec.path or not Path(rec.path).exists():
        raise NotFound(f"Recording {recording_id!r} has no {fmt} file.")
    media_type = "audio/mpeg" if fmt == "mp3" else "audio/wav"
    return FileResponse(rec.path, media_type=media_type, filename=rec.file_name)


@router.get("/recordings/{recording_id}/public.{fmt}")
async def download_public_recording(recording_id: str, fmt: str, request: Request, ctl: Ctl,
                                    expires: str = "", signature: str = "") -> FileResponse:  # fmt: skip
    """A ``public_recording_urls`` link: no API key, its signature and expiry instead (``signed_links.py``)."""
    why = signed_links.refusal(request.app.state.link_secret, recording_id, fmt, expires, signature, time.time())
    if why is not None:
        raise Forbidden(why)
    rec = await ctl.aread("", lambda ctx: media_tx.get_recording_any_account(ctx.tx, recording_id))
    if rec is None or rec.status != "completed" or fmt != rec.format or not rec.path or not Path(rec.path).exists():
        raise NotFound(f"Recording {recording_id!r} has no {fmt} file.")
    media_type = "audio/mpeg" if fmt == "mp3" else "audio/wav"
    return FileResponse(rec.path, media_type=media_type, filename=rec.file_name)


# -- media -------------------------------------------------------------------------------------------


def media_view(m: MediaFile) -> dict[str, Any]:
    return {
        "media_name": m.media_name,
        "content_type": m.content_type,
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
        "expires_at": iso(m.expires_at),
    }


async def _json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} for an empty body); anything else is a 422, as for every other route."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = limits.load_json(raw)
    except ValueError as exc:
        raise ValidationFailed.field("/", "JSON decode error") from exc
    if not isinstance(body, dict):
        raise ValidationFailed.field("/", "the body must be a JSON object")
    return body


def _ttl(value: Any) -> int:
    """``ttl_secs`` as given (a JSON number or a form field), or the default when absent."""
    if value is None or value == "":
        return DEFAULT_TTL_SECS
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise ValidationFailed.field("/ttl_secs", "ttl_secs must be a whole number of seconds")
    ttl = int(value)
    if ttl < 1:
        raise ValidationFailed.field("/ttl_secs", "ttl_secs must be at least 1")
    return ttl


async def _fetch(request: Request, url: str) -> bytes:
    """The media at ``url``, fetched as media to play is (limits, redirects, the node's address policy); a
    failure is one generic 422, whatever the server answered (the node's log has the detail)."""
    if not url.startswith(("http://", "https://")) or len(url) > limits.MAX_URL:
        raise ValidationFailed.field("/media_url", "media_url must be an http(s) URL")
    policy: AddressPolicy = request.app.state.url_policy
    why = policy.refusal_for_url(url)
    if why is not None:
        raise ValidationFailed.field("/media_url", why)
    try:
        async with checked_client(policy) as client:
            return await MediaFetcher(client, max_bytes=MAX_MEDIA_BYTES, timeout=30.0).download(url)
    except MediaError as exc:
        log.info("media_url %s: %s", url, exc)
        raise ValidationFailed.field("/media_url", FETCH_FAILED) from exc


def _plain_name(name: str, *, pointer: str | None = None, parameter: str | None = None) -> str:
    """``name`` if it can name a media file (``schemas.media_name_problem``), else a 422 pointing at it."""
    problem = media_name_problem(name)
    if problem is not None:
        raise ValidationFailed(ErrorItem("10015", "Invalid value", problem, pointer=pointer, parameter=parameter))
    return name


def _media_dir(request: Request) -> Path:
    return Path(request.app.state.media_dir).resolve()


def _in_media_dir(request: Request, path: str) -> Path | None:
    """A stored media file's path, if it lies in the media folder (it always should: belt and braces)."""
    found = Path(path).resolve()
    return found if found.is_relative_to(_media_dir(request)) else None


async def _store(request: Request, account: str, ctl: Ctl, name: str, content: bytes, ttl: int) -> MediaFile:
    _plain_name(name, pointer="/media_name")
    try:
        await asyncio.to_thread(decode_audio, content, max_seconds=3600)
    except MediaError as exc:
        log.info("media %r of %s: %s", name, account, exc)
        raise ValidationFailed.field("/media_url", f"not playable audio: {public_reason(exc)}") from exc
    folder = _media_dir(request) / account
    path = folder / name
    if path.parent != folder:  # a plain name cannot lead elsewhere
        raise ValidationFailed.field("/media_name", MEDIA_NAME_RULE)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(path.write_bytes, content)
    now = time.time()
    content_type = "audio/mpeg" if content[:3] == b"ID3" or content[:2] in (b"\xff\xfb", b"\xff\xf3") else "audio/wav"
    media = MediaFile(account, name, str(path), content_type, len(content), now, now, now + ttl)
    await ctl.astore_rows(account, lambda ctx: media_tx.put_media(ctx.tx, media))
    return media


@router.post("/media")
async def upload_media(request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    """JSON ``{media_url, media_name, ttl_secs}`` (the node downloads it), or multipart with a ``media`` file."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/"):
        form = await request.form()
        upload = form.get("media")
        if upload is None or isinstance(upload, str):
            raise ValidationFailed.field("/media", "a file in the 'media' field is required")
        content = await upload.read()
        name = str(form.get("media_name") or upload.filename or "")
        ttl = _ttl(form.get("ttl_secs"))
    else:
        body = await _json_object(request)
        if not body.get("media_url"):
            raise ValidationFailed.field(
                "/media_url", "media_url is required", code="10004", title="Missing required parameter"
            )
        ttl = _ttl(body.get("ttl_secs"))
        name = str(body.get("media_name") or str(body["media_url"]).rstrip("/").rsplit("/", 1)[-1])
        _plain_name(name, pointer="/media_name")  # before anything is fetched
        content = await _fetch(request, str(body["media_url"]))
    if len(content) > MAX_MEDIA_BYTES:
        raise ValidationFailed.field("/media", "media is larger than 50 MB")
    return data(media_view(await _store(request, account, ctl, name, content, ttl)))


def _media(ctx: ReadCtx, name: str) -> MediaFile:
    m = media_tx.get_media(ctx.tx, ctx.account_id, name)
    if m is None:
        raise NotFound(f"No media named {name!r}.")
    return m


@router.get("/media")
async def list_media(account: Account, ctl: Ctl, page: PageParams) -> dict[str, Any]:
    items, total = await ctl.aread(account, lambda ctx: media_tx.list_media(ctx.tx, account, page.number, page.size))
    return page.envelope([media_view(m) for m in items], total)


@router.get("/media/{media_name}")
async def retrieve_media(media_name: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    _plain_name(media_name, parameter="media_name")
    return data(media_view(await ctl.aread(account, lambda ctx: _media(ctx, media_name))))


@router.put("/media/{media_name}")
async def update_media(media_name: str, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    _plain_name(media_name, parameter="media_name")
    existing = await ctl.aread(account, lambda ctx: _media(ctx, media_name))
    body = await _json_object(request) if request.headers.get("content-type", "").startswith("application/json") else {}
    ttl = _ttl(body.get("ttl_secs"))
    if body.get("media_url"):
        return data(
            media_view(await _store(request, account, ctl, media_name, await _fetch(request, str(body["media_url"])),
                                    ttl))
        )
    existing.expires_at = time.time() + ttl
    existing.updated_at = time.time()
    await ctl.astore_rows(account, lambda ctx: media_tx.put_media(ctx.tx, existing))
    return data(media_view(existing))


@router.get("/media/{media_name}/download")
async def download_media(media_name: str, request: Request, account: Account, ctl: Ctl) -> FileResponse:
    _plain_name(media_name, parameter="media_name")
    m = await ctl.aread(account, lambda ctx: _media(ctx, media_name))
    path = _in_media_dir(request, m.path)
    if path is None or not path.is_file():
        raise NotFound(f"Media {media_name!r} has no file.")
    return FileResponse(path, media_type=m.content_type, filename=m.media_name)


@router.delete("/media/{media_name}", status_code=204)
async def delete_media(media_name: str, request: Request, account: Account, ctl: Ctl) -> Response:
    _plain_name(media_name, parameter="media_name")

    def run(ctx: ReadCtx) -> MediaFile:
        m = _media(ctx, media_name)
        media_tx.delete_media(ctx.tx, m)
        return m

    m = await ctl.astore_rows(account, run)
    path = _in_media_dir(request, m.path)
    if path is not None and path.is_file():
        path.unlink(missing_ok=True)
    return Response(status_code=204)
