"""A stored file (``store/blobs.py``) as the answer to a download: the whole file (200, ``Accept-Ranges:
bytes``) or the one byte range its ``Range`` header asks for (206 with ``Content-Range``; 416 with ``bytes
*/size`` for a range past the end: ``ranges.py`` decides), the same from this node's copy or from the store.

This node's copy is opened before the answer starts and read through that descriptor, so a copy trimmed
(least recently used) or deleted while it is sent is still sent whole; a copy gone before it could be opened
is read from the store instead. From the store, only the chunks that cover the range are read, one at a
time in a worker thread: never the whole file in memory. A file's ``ETag`` comes from its key (a key names
one content for good), so every node gives the same one and ``If-Range`` works across nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncGenerator, Callable
from typing import Any, BinaryIO
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from callroom.api.ranges import ByteRange, requested_range
from callroom.errors import NotFound, StoreError
from callroom.store import blobs

COPY_BLOCK = 256 * 1024  # read from a copy in a worker thread at a time


async def file_response(request: Request, key: str, media_type: str, filename: str, missing: str) -> Response:
    """The stored file ``key`` (or the file a legacy path names), whole or the range asked for; ``NotFound``
    with ``missing`` if there is no such file."""
    store: blobs.Blobs = request.app.state.blobs
    copy = await asyncio.to_thread(store.open_copy, key)
    if copy is None:
        info = await asyncio.to_thread(store.info, key)
        if info is None:
            raise NotFound(missing)
        size = info.size_bytes
        return _answer(request, size, _etag(key, size), info.chunked_evenly,
                       lambda span: _from_store(store, info, span), lambda: None, media_type, filename)  # fmt: skip
    try:
        st = os.fstat(copy.fileno())
        etag = _etag(key, st.st_size, str(st.st_mtime_ns) if blobs.is_legacy(key) else "")
        return _answer(request, st.st_size, etag, True, lambda span: _from_copy(copy, span), copy.close,
                       media_type, filename)  # fmt: skip
    except BaseException:
        copy.close()
        raise


def attachment(filename: str) -> str:
    """A Content-Disposition for ``filename``, as Starlette's ``FileResponse`` writes it."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


def _etag(key: str, size: int, version: str = "") -> str:
    return '"' + hashlib.sha256(f"{key}\0{size}\0{version}".encode()).hexdigest()[:32] + '"'


def _answer(request: Request, size: int, etag: str, can_range: bool,
            read: Callable[[ByteRange], AsyncGenerator[bytes, None]], close: Callable[[], None], media_type: str,
            filename: str) -> Response:  # fmt: skip
    headers = {"Content-Disposition": attachment(filename), "ETag": etag}
    span = None
    if can_range:
        headers["Accept-Ranges"] = "bytes"
        span = requested_range(request.headers.get("range"), size, if_range=request.headers.get("if-range"),
                               etag=etag)  # fmt: skip
    status = 200 if span is None else 206
    if span is None:
        span = ByteRange(0, size)
    else:
        headers["Content-Range"] = span.content_range(size)
    headers["Content-Length"] = str(span.length)
    return _Download(read(span), close, status_code=status, headers=headers, media_type=media_type)


async def _from_copy(copy: BinaryIO, span: ByteRange) -> AsyncGenerator[bytes, None]:
    fd, pos = copy.fileno(), span.start
    while pos < span.stop:
        block = await asyncio.to_thread(os.pread, fd, min(COPY_BLOCK, span.stop - pos), pos)
        if not block:  # (a copy is written whole and renamed into place: never shorter than it was)
            raise StoreError(f"a copy ended at byte {pos} of {span.stop}")
        yield block
        pos += len(block)


async def _from_store(store: blobs.Blobs, info: blobs.BlobInfo, span: ByteRange) -> AsyncGenerator[bytes, None]:
    """The chunks that cover ``span``, cut to it (the whole file: every chunk, as it is)."""
    if span.start == 0 and span.stop == info.size_bytes:
        for seq in range(info.chunks):
            yield await asyncio.to_thread(store.chunk, info.key, seq)
        return
    for seq in range(span.start // blobs.CHUNK_BYTES, (span.stop - 1) // blobs.CHUNK_BYTES + 1):
        chunk = await asyncio.to_thread(store.chunk, info.key, seq)
        base = seq * blobs.CHUNK_BYTES
        yield chunk[max(span.start - base, 0):span.stop - base]


class _Download(StreamingResponse):
    """A streamed answer that closes what it reads from once done, whether it was sent whole or not."""

    def __init__(self, body: AsyncGenerator[bytes, None], close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._body = body
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._body.aclose()
            self._close()
