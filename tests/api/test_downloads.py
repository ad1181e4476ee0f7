"""Downloads of stored files (``callroom/api/downloads.py``): whole or a byte range, the same answer from the
node's copy as from the database; only the chunks a range covers are read; a copy removed while it is being
sent is still sent whole."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import and_, delete

from callroom.api.common import hash_key
from callroom.audio.encode import encode_wav
from callroom.model.records import Recording
from callroom.store import blobs, media_tx
from callroom.store import schema as t
from tests.audio.signals import tone16
from tests.support.tenant import Tenant

CHUNK = blobs.CHUNK_BYTES
CONTENT = encode_wav([tone16(450, 2.5 * CHUNK / 16000)])  # three chunks, the last one part full
SIZE = len(CONTENT)


def _auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}"}


def _upload(tenant: Tenant, content: bytes = CONTENT) -> tuple[str, str, Path]:
    """(download URL, stored key, the node's copy) of a new upload of ``content``."""
    name = f"ranged-{uuid.uuid4().hex[:8]}.wav"
    up = httpx.post(f"{tenant.node.base_url}/media", headers=_auth(tenant), timeout=30,
                    files={"media": (name, content, "audio/wav")}, data={"media_name": name})  # fmt: skip
    assert up.status_code == 200, up.text
    [copy] = list(tenant.node.node.blobs.cache_dir.rglob(name))
    key = copy.relative_to(tenant.node.node.blobs.cache_dir).as_posix()
    return f"{tenant.node.base_url}/media/{name}/download", key, copy


def _get(tenant: Tenant, url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers={**_auth(tenant), **headers}, timeout=30)


# (Range, first byte, one past the last)
RANGES = [
    ("bytes=0-99", 0, 100),
    ("bytes=1000-", 1000, SIZE),
    ("bytes=-500", SIZE - 500, SIZE),
    (f"bytes={CHUNK - 10}-{CHUNK + 9}", CHUNK - 10, CHUNK + 10),  # across a chunk's end
    (f"bytes={CHUNK}-{2 * CHUNK - 1}", CHUNK, 2 * CHUNK),  # one chunk exactly
    (f"bytes={CHUNK - 1}-{2 * CHUNK}", CHUNK - 1, 2 * CHUNK + 1),  # a byte of each of three
    (f"bytes={SIZE - 1}-", SIZE - 1, SIZE),
    (f"bytes=5-{10 * SIZE}", 5, SIZE),
    (f"bytes=-{10 * SIZE}", 0, SIZE),
]


@pytest.mark.parametrize("source", ["copy", "store"])
def test_a_range_is_served_from_the_copy_and_from_the_store_alike(tenant: Tenant, source: str) -> None:
    url, _key, copy = _upload(tenant)
    if source == "store":
        copy.unlink()  # no copy here: streamed from the database
    whole = _get(tenant, url)
    assert whole.status_code == 200 and whole.content == CONTENT
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-length"] == str(SIZE)
    etag = whole.headers["etag"]
    for header, start, stop in RANGES:
        got = _get(tenant, url, Range=header)
        assert got.status_code == 206, (header, got.text)
        assert got.headers["content-range"] == f"bytes {start}-{stop - 1}/{SIZE}", header
        assert got.headers["content-length"] == str(stop - start)
        assert got.content == CONTENT[start:stop], header
        assert got.headers["content-type"] == "audio/wav" and got.headers["etag"] == etag
    for header in (f"bytes={SIZE}-", f"bytes={SIZE}-{SIZE + 10}", "bytes=-0"):
        refused = _get(tenant, url, Range=header)
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{SIZE}"
        [error] = refused.json()["errors"]
        assert (error["code"], error["title"]) == ("90118", "Range not satisfiable")
    for ignored in ("bytes=10-5", "items=0-5", "bytes=0-1,5-6"):  # whole file, as the RFC allows
        got = _get(tenant, url, Range=ignored)
        assert got.status_code == 200 and got.content == CONTENT, ignored
    assert _get(tenant, url, Range="bytes=0-9", **{"If-Range": etag}).status_code == 206
    other = _get(tenant, url, Range="bytes=0-9", **{"If-Range": '"another-version"'})
    assert other.status_code == 200 and other.content == CONTENT
    assert not copy.exists() if source == "store" else copy.exists()  # (a download makes no copy)


def test_both_paths_give_the_same_etag(tenant: Tenant) -> None:
    url, _key, copy = _upload(tenant)
    from_copy = _get(tenant, url).headers["etag"]
    copy.unlink()
    assert _get(tenant, url).headers["etag"] == from_copy  # (every node gives the same: If-Range works anywhere)


def test_a_range_read_from_the_store_reads_only_the_chunks_that_cover_it(tenant: Tenant) -> None:
    url, key, copy = _upload(tenant)
    copy.unlink()
    c = t.blob_chunks.c
    with tenant.node.node.store.transaction() as tx:  # the first and last chunks gone: a reader of them fails
        tx.conn.execute(delete(t.blob_chunks).where(and_(c.key == key, c.seq != 1)))
    for header, start, stop in [(f"bytes={CHUNK}-{2 * CHUNK - 1}", CHUNK, 2 * CHUNK),
                                (f"bytes={CHUNK + 7}-{CHUNK + 99}", CHUNK + 7, CHUNK + 100)]:  # fmt: skip
        got = _get(tenant, url, Range=header)
        assert got.status_code == 206 and got.content == CONTENT[start:stop], header


def test_an_empty_file_is_served_whole_and_has_no_range(tenant: Tenant) -> None:
    node = tenant.node.node
    key = f"media/test/{uuid.uuid4().hex[:8]}/empty.wav"
    node.blobs.put_bytes(key, b"")

    async def ask(range_header: str | None) -> tuple[int, dict[str, str], bytes]:
        return await _asgi_get(tenant, key, range_header)

    assert tenant.node.loop is not None
    for copy_kept in (True, False):
        status, headers, body = asyncio.run_coroutine_threadsafe(ask(None), tenant.node.loop).result(10)
        assert (status, body, headers["content-length"]) == (200, b"", "0")
        status, headers, _ = asyncio.run_coroutine_threadsafe(ask("bytes=0-"), tenant.node.loop).result(10)
        assert (status, headers["content-range"]) == (416, "bytes */0")
        status, _, body = asyncio.run_coroutine_threadsafe(ask("bytes=-5"), tenant.node.loop).result(10)
        assert (status, body) == (200, b"")
        if copy_kept:
            node.blobs.drop_copy(key)


def test_a_copy_removed_while_it_is_sent_is_still_sent_whole(tenant: Tenant) -> None:
    """The copy is trimmed (least recently used) or deleted between the answer's start and its body: what
    the node opened before answering is sent whole. The store cannot serve it (its chunks are gone), so the
    bytes can only come from the copy."""
    url, key, copy = _upload(tenant)
    with tenant.node.node.store.transaction() as tx:
        tx.conn.execute(delete(t.blob_chunks).where(t.blob_chunks.c.key == key))
    removed: list[bool] = []

    def on_start() -> None:
        copy.unlink()
        removed.append(True)

    assert tenant.node.loop is not None
    for range_header, expected in ((None, CONTENT), (f"bytes={CHUNK}-", CONTENT[CHUNK:])):
        if not copy.exists():  # (put back for the second download)
            copy.write_bytes(CONTENT)
        status, headers, body = asyncio.run_coroutine_threadsafe(
            _asgi_get(tenant, key, range_header, on_start=on_start, url=url), tenant.node.loop).result(30)
        assert removed and not copy.exists()
        assert status == (200 if range_header is None else 206)
        assert headers["content-length"] == str(len(expected)) and body == expected
        removed.clear()


async def _asgi_get(tenant: Tenant, key: str, range_header: str | None, *, url: str | None = None,
                    on_start: Callable[[], None] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """A download through the node's own ASGI application, on its loop, ``on_start`` called when the answer
    starts (before a byte of its body is asked for). Without ``url``, the stored file ``key`` is served under
    a recording's route: a recording row naming it is made for the purpose."""
    if url is None:
        url = await asyncio.to_thread(_recording_url, tenant, key)
    path = httpx.URL(url).path
    headers = [(b"host", f"127.0.0.1:{tenant.node.port}".encode()),
               (b"authorization", f"Bearer {tenant.api_key}".encode())]  # fmt: skip
    if range_header is not None:
        headers.append((b"range", range_header.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 40000),
             "server": ("127.0.0.1", tenant.node.port), "state": {}}  # fmt: skip
    requested = [{"type": "http.request", "body": b"", "more_body": False}]
    done = asyncio.Event()
    start: dict[str, Any] = {}
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if requested:
            return requested.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            if on_start is not None:
                on_start()
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await tenant.node.node.asgi(scope, receive, send)
    headers_out = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers_out, b"".join(body)


def _recording_url(tenant: Tenant, key: str) -> str:
    """A completed recording of ``tenant``'s account whose file is the stored ``key``; its download URL."""
    node = tenant.node.node
    with node.store.transaction(read_only=True) as tx:
        account = tx.account_for_key_hash(hash_key(tenant.api_key))
    assert account is not None
    rec_id = uuid.uuid4().hex
    with node.store.transaction() as tx:
        media_tx.insert_recording(tx, Recording(rec_id, account, "call", "single", "wav", f"{rec_id}.wav",
                                                "completed", 1.0, 1.0, 1.0, path=key))  # fmt: skip
    return f"{tenant.node.base_url}/recordings/{rec_id}/download.wav"
