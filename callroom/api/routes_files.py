"""``/recordings`` (list, retrieve, delete, download) and ``/media`` (upload, list, retrieve, update,
download, delete): an account's files, stored in the database every node shares (``store/blobs.py``), so
that any node serves, plays and deletes any of them. Downloads (whole or a byte range) are streamed from
this node's copy when it has one, else a chunk at a time from the store (``downloads.py``); an upload goes
through a temporary file into the store a chunk at a time."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Query, Request, Response

from callroom.api import limits
from callroom.api.common import Account, Ctl, PageParams, data
from callroom.api.downloads import file_response
from callroom.api.schemas import MEDIA_NAME_RULE, media_name_problem
from callroom.audio.decode import check_audio
from callroom.audio.fetch import FETCH_FAILED, MediaFetcher, checked_client, public_reason
from callroom.audio.sniff import AudioFormat
from callroom.control.service import ReadCtx
from callroom.errors import ErrorItem, Forbidden, MediaError, NotFound, ValidationFailed
from callroom.model import signed_links
from callroom.model.records import MediaFile, Recording
from callroom.outbound import AddressPolicy
from callroom.store import blobs, media_tx
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
        if rec.path:
            blobs.delete_blob(ctx.tx, rec.path)  # with its row: on every node at once
        return rec

    rec = await ctl.astore_rows(account, run)
    if rec.path:
        await _dropped(request)(rec.path)
    return data(recording_view(rec, str(request.base_url).rstrip("/")))


def _dropped(request: Request) -> Callable[[str], Awaitable[None]]:
    """What removes the copies of a stored file deleted or replaced (this node's and the cluster's)."""
    dropped: Callable[[str], Awaitable[None]] = request.app.state.blob_dropped
    return dropped


async def _recording_file(request: Request, rec: Recording | None, recording_id: str, fmt: str) -> Response:
    missing = f"Recording {recording_id!r} has no {fmt} file."
    if rec is None or rec.status != "completed" or fmt != rec.format or not rec.path:
        raise NotFound(missing)
    media_type = "audio/mpeg" if fmt == "mp3" else "audio/wav"
    return await file_response(request, rec.path, media_type, rec.file_name, missing)


@router.get("/recordings/{recording_id}/download.{fmt}")
async def download_recording(recording_id: str, fmt: str, request: Request, account: Account, ctl: Ctl) -> Response:
    rec = await ctl.aread(account, lambda ctx: media_tx.get_recording(ctx.tx, ctx.account_id, recording_id))
    return await _recording_file(request, rec, recording_id, fmt)


@router.get("/recordings/{recording_id}/public.{fmt}")
async def download_public_recording(recording_id: str, fmt: str, request: Request, ctl: Ctl,
                                    expires: str = "", signature: str = "") -> Response:  # fmt: skip
    """A ``public_recording_urls`` link: no API key, its signature and expiry instead (``signed_links.py``)."""
    why = signed_links.refusal(request.app.state.link_secret, recording_id, fmt, expires, signature, time.time())
    if why is not None:
        raise Forbidden(why)
    rec = await ctl.aread("", lambda ctx: media_tx.get_recording_any_account(ctx.tx, recording_id))
    return await _recording_file(request, rec, recording_id, fmt)


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


async def _fetch(request: Request, url: str, out: BinaryIO) -> None:
    """The media at ``url`` written to ``out``, fetched as media to play is (limits, redirects, the node's
    address policy); a failure is one generic 422, whatever the server answered (the node's log has the
    detail)."""
    if not url.startswith(("http://", "https://")) or len(url) > limits.MAX_URL:
        raise ValidationFailed.field("/media_url", "media_url must be an http(s) URL")
    policy: AddressPolicy = request.app.state.url_policy
    why = policy.refusal_for_url(url)
    if why is not None:
        raise ValidationFailed.field("/media_url", why)
    try:
        async with checked_client(policy) as client:
            await MediaFetcher(client, max_bytes=MAX_MEDIA_BYTES, timeout=30.0).download_to(url, out)
    except MediaError as exc:
        log.info("media_url %s: %s", url, exc)
        raise ValidationFailed.field("/media_url", FETCH_FAILED) from exc


def _plain_name(name: str, *, pointer: str | None = None, parameter: str | None = None) -> str:
    """``name`` if it can name a media file (``schemas.media_name_problem``), else a 422 pointing at it."""
    problem = media_name_problem(name)
    if problem is not None:
        raise ValidationFailed(ErrorItem("10015", "Invalid value", problem, pointer=pointer, parameter=parameter))
    return name


def _legacy_in_media_dir(request: Request, key: str) -> bool:
    """A file uploaded before files were stored lies in the node's media folder (belt and braces)."""
    return Path(key).resolve().is_relative_to(Path(request.app.state.media_dir).resolve())


async def _store(request: Request, account: str, ctl: Ctl, name: str, source: BinaryIO, ttl: int) -> MediaFile:
    """Check that the file ``source`` plays, store it under a new key (a chunk at a time), then point the
    media's row at it; the file it replaces (same name) is deleted in that transaction, its copies after it."""
    _plain_name(name, pointer="/media_name")
    if blobs.key_problem(name) is not None:  # a plain name is a plain key segment
        raise ValidationFailed.field("/media_name", MEDIA_NAME_RULE)
    try:
        fmt = await asyncio.to_thread(check_audio, source, max_seconds=3600)
    except MediaError as exc:
        log.info("media %r of %s: %s", name, account, exc)
        raise ValidationFailed.field("/media_url", f"not playable audio: {public_reason(exc)}") from exc
    store: blobs.Blobs = request.app.state.blobs
    key = blobs.media_key(account, name)
    size = await asyncio.to_thread(store.put_stream, key, source)
    now = time.time()
    content_type = "audio/mpeg" if fmt is AudioFormat.MP3 else "audio/wav"
    media = MediaFile(account, name, key, content_type, size, now, now, now + ttl)

    def run(ctx: ReadCtx) -> str | None:
        old = media_tx.get_media(ctx.tx, account, name)
        media_tx.put_media(ctx.tx, media)
        if old is not None and old.path != key:
            blobs.delete_blob(ctx.tx, old.path)
            return old.path
        return None

    try:
        replaced = await ctl.astore_rows(account, run)
    except BaseException:
        await asyncio.to_thread(_forget, store, key)
        raise
    if replaced is not None and (not blobs.is_legacy(replaced) or _legacy_in_media_dir(request, replaced)):
        await _dropped(request)(replaced)
    return media


def _forget(store: blobs.Blobs, key: str) -> None:
    """A stored file no row names (its row's transaction failed)."""
    with store.store.transaction() as tx:
        blobs.delete_blob(tx, key)
    store.drop_copy(key)


@router.post("/media")
async def upload_media(request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    """JSON ``{media_url, media_name, ttl_secs}`` (the node downloads it), or multipart with a ``media`` file.
    Either lands in a temporary file first (Starlette spools a multipart file past 1 MB to disk; a download is
    written as it arrives), is checked and stored from there: never the whole file in memory."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/"):
        async with request.form() as form:
            upload = form.get("media")
            if upload is None or isinstance(upload, str):
                raise ValidationFailed.field("/media", "a file in the 'media' field is required")
            name = str(form.get("media_name") or upload.filename or "")
            ttl = _ttl(form.get("ttl_secs"))
            if await asyncio.to_thread(_size, upload.file) > MAX_MEDIA_BYTES:
                raise ValidationFailed.field("/media", "media is larger than 50 MB")
            return data(media_view(await _store(request, account, ctl, name, upload.file, ttl)))
    body = await _json_object(request)
    if not body.get("media_url"):
        raise ValidationFailed.field(
            "/media_url", "media_url is required", code="10004", title="Missing required parameter"
        )
    ttl = _ttl(body.get("ttl_secs"))
    name = str(body.get("media_name") or str(body["media_url"]).rstrip("/").rsplit("/", 1)[-1])
    _plain_name(name, pointer="/media_name")  # before anything is fetched
    with tempfile.TemporaryFile() as spool:  # (the fetch stops past MAX_MEDIA_BYTES)
        await _fetch(request, str(body["media_url"]), spool)
        return data(media_view(await _store(request, account, ctl, name, spool, ttl)))


def _size(f: BinaryIO) -> int:
    return f.seek(0, 2)


def _media(ctx: ReadCtx, name: str) -> MediaFile:
    m = media_tx.get_media(ctx.tx, ctx.account_id, name)
    if m is None or (m.expires_at is not None and m.expires_at <= time.time()):  # (past its ttl_secs: gone)
        raise NotFound(f"No media named {name!r}.")
    return m


@router.get("/media")
async def list_media(account: Account, ctl: Ctl, page: PageParams) -> dict[str, Any]:
    items, total = await ctl.aread(
        account, lambda ctx: media_tx.list_media(ctx.tx, account, page.number, page.size, time.time()))
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
        with tempfile.TemporaryFile() as spool:
            await _fetch(request, str(body["media_url"]), spool)
            return data(media_view(await _store(request, account, ctl, media_name, spool, ttl)))
    existing.expires_at = time.time() + ttl
    existing.updated_at = time.time()
    await ctl.astore_rows(account, lambda ctx: media_tx.put_media(ctx.tx, existing))
    return data(media_view(existing))


@router.get("/media/{media_name}/download")
async def download_media(media_name: str, request: Request, account: Account, ctl: Ctl) -> Response:
    _plain_name(media_name, parameter="media_name")
    m = await ctl.aread(account, lambda ctx: _media(ctx, media_name))
    missing = f"Media {media_name!r} has no file."
    if blobs.is_legacy(m.path) and not _legacy_in_media_dir(request, m.path):
        raise NotFound(missing)
    return await file_response(request, m.path, m.content_type, m.media_name, missing)


@router.delete("/media/{media_name}", status_code=204)
async def delete_media(media_name: str, request: Request, account: Account, ctl: Ctl) -> Response:
    _plain_name(media_name, parameter="media_name")

    def run(ctx: ReadCtx) -> MediaFile:
        m = _media(ctx, media_name)
        media_tx.delete_media(ctx.tx, m)
        blobs.delete_blob(ctx.tx, m.path)  # with its row: on every node at once
        return m

    m = await ctl.astore_rows(account, run)
    if not blobs.is_legacy(m.path) or _legacy_in_media_dir(request, m.path):
        await _dropped(request)(m.path)
    return Response(status_code=204)
