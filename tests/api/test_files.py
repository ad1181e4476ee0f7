"""``/v2/media`` (callroom/api/routes_files.py): a media name is a plain file name, on every route that takes
one; the file is stored under the account (``store/blobs.py``) and the node's copy stays in its own folder,
so nothing outside it is ever read, written or deleted."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from callroom.api import limits
from callroom.api.common import hash_key
from callroom.audio.encode import encode_wav
from callroom.audio.fetch import FETCH_FAILED
from callroom.model.records import MediaFile
from callroom.store import blobs, media_tx, schema
from tests.audio.signals import tone16
from tests.support.media_server import MediaServer
from tests.support.node import free_port
from tests.support.tenant import Tenant

WAV = encode_wav([tone16(500, 0.2)])


def _wav_of(seconds: float) -> bytes:
    return encode_wav([tone16(700, seconds)])

# Not plain file names: the folder itself, its parent, a way out of it, or no name at all.
BAD_NAMES = [".", "..", "a/b", "../evil", "a\\b", "..\\evil", "a\x00b", "x" * 256, "naïve"]
# The same, as a path segment: %2E is a '.', %2F a '/' that the route never sees (its segment ends there).
BAD_SEGMENTS = {"%2E": ".", "%2E%2E": "..", "a%5Cb": "a\\b", "a%00b": "a\x00b", "x" * 256: "x" * 256,
                "na%C3%AFve": "naïve"}


def _auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}"}


def _invalid(resp: httpx.Response, source: dict[str, str]) -> None:
    assert resp.status_code == 422, resp.text
    [error] = resp.json()["errors"]
    assert error["code"] == "10015" and error["source"] == source
    assert "plain file name" in error["detail"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_an_upload_under_a_name_that_is_not_a_plain_file_name_is_refused(tenant: Tenant, name: str) -> None:
    """'.' and '..' passed the old check and ended in a 500 (IsADirectoryError) once the file was written."""
    url = f"{tenant.node.base_url}/media"
    resp = httpx.post(url, headers=_auth(tenant), files={"media": ("tone.wav", WAV, "audio/wav")},
                      data={"media_name": name})
    _invalid(resp, {"pointer": "/media_name"})
    as_filename = httpx.post(url, headers=_auth(tenant), files={"media": (name, WAV, "audio/wav")})
    if name not in ("a/b", "../evil"):  # the multipart encoder keeps a filename's last segment only
        _invalid(as_filename, {"pointer": "/media_name"})
    from_url = httpx.post(url, headers=_auth(tenant), json={"media_url": "http://192.0.2.1/tone.wav",
                                                           "media_name": name})
    _invalid(from_url, {"pointer": "/media_name"})  # refused before anything is fetched
    assert httpx.get(url, headers=_auth(tenant)).json()["data"] == []


@pytest.mark.parametrize("segment", list(BAD_SEGMENTS), ids=repr)
def test_every_route_naming_media_refuses_a_name_that_is_not_a_plain_file_name(tenant: Tenant, segment: str) -> None:
    url = f"{tenant.node.base_url}/media/{segment}"
    headers = _auth(tenant)
    parameter = {"parameter": "media_name"}
    _invalid(httpx.get(url, headers=headers), parameter)
    _invalid(httpx.put(url, headers=headers, json={"ttl_secs": 60}), parameter)
    _invalid(httpx.get(f"{url}/download", headers=headers), parameter)
    _invalid(httpx.delete(url, headers=headers), parameter)


def test_a_plain_name_is_stored_under_the_account_and_its_copy_stays_in_the_nodes_folder(tenant: Tenant) -> None:
    headers = _auth(tenant)
    base = f"{tenant.node.base_url}/media"
    up = httpx.post(base, headers=headers, files={"media": ("tone.wav", WAV, "audio/wav")},
                    data={"media_name": "..tone.wav"})
    assert up.status_code == 200, up.text
    files = tenant.node.node.blobs.cache_dir
    [copy] = [p for p in files.rglob("..tone.wav")]
    assert copy.resolve().is_relative_to(files / "media") and copy.read_bytes() == WAV
    download = httpx.get(f"{base}/..tone.wav/download", headers=headers)
    assert download.status_code == 200 and download.content == WAV
    copy.unlink()  # this node's copy gone: the file is still the store's, streamed from there
    again = httpx.get(f"{base}/..tone.wav/download", headers=headers)
    assert again.status_code == 200 and again.content == WAV, again.text
    assert again.headers["content-length"] == str(len(WAV))
    assert again.headers["content-disposition"] == 'attachment; filename="..tone.wav"'
    assert httpx.delete(f"{base}/..tone.wav", headers=headers).status_code == 204
    assert httpx.get(f"{base}/..tone.wav/download", headers=headers).status_code == 404


def test_an_upload_replaced_under_its_name_serves_the_new_file_and_leaves_no_copy_of_the_old(
        tenant: Tenant) -> None:  # fmt: skip
    headers = _auth(tenant)
    base = f"{tenant.node.base_url}/media"
    files = tenant.node.node.blobs.cache_dir
    first = httpx.post(base, headers=headers, files={"media": ("a.wav", WAV, "audio/wav")},
                       data={"media_name": "replaced.wav"})
    assert first.status_code == 200, first.text
    [old] = list(files.rglob("replaced.wav"))
    other = _wav_of(0.25)
    second = httpx.post(base, headers=headers, files={"media": ("b.wav", other, "audio/wav")},
                        data={"media_name": "replaced.wav"})
    assert second.status_code == 200, second.text
    assert not old.exists()
    assert httpx.get(f"{base}/replaced.wav/download", headers=headers).content == other
    assert httpx.delete(f"{base}/replaced.wav", headers=headers).status_code == 204
    assert list(files.rglob("replaced.wav")) == []


def test_an_upload_from_a_media_url_the_node_refuses_is_never_fetched(strict_tenant: Tenant, tenant: Tenant) -> None:
    media = MediaServer()
    try:
        served = media.add("/upload.wav", WAV)
        by_name = served.replace("127.0.0.1", "localhost")
        closed = f"http://localhost:{free_port()}/upload.wav"
        told = []
        for url in (served, by_name, closed):
            resp = httpx.post(f"{strict_tenant.node.base_url}/media", headers=_auth(strict_tenant),
                              json={"media_url": url, "media_name": "upload.wav"})
            assert resp.status_code == 422, resp.text
            [error] = resp.json()["errors"]
            assert (error["code"], error["source"]) == ("10015", {"pointer": "/media_url"})
            told.append(error["detail"])
        assert told[0].startswith("refused") and told[1:] == [FETCH_FAILED] * 2  # open or closed: the same
        assert media.hits.get("/upload.wav") is None
        allowed = httpx.post(f"{tenant.node.base_url}/media", headers=_auth(tenant),
                             json={"media_url": by_name, "media_name": "upload.wav"})
        assert allowed.status_code == 200, allowed.text
        assert media.hits["/upload.wav"] == 1
    finally:
        media.close()


def test_a_file_uploaded_before_files_were_stored_is_still_served_and_deleted(tenant: Tenant) -> None:
    """A row written before migration 0011 names an absolute path in the node's media folder."""
    node = tenant.node.node
    headers = _auth(tenant)
    with node.store.transaction(read_only=True) as tx:
        account = tx.account_for_key_hash(hash_key(tenant.api_key))
    assert account is not None
    folder = Path(node.app.state.media_dir) / account
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / "before.wav"
    old.write_bytes(WAV)
    with node.store.transaction() as tx:
        media_tx.put_media(tx, MediaFile(account, "before.wav", str(old), "audio/wav", len(WAV), 1.0, 1.0))
    got = httpx.get(f"{tenant.node.base_url}/media/before.wav/download", headers=headers)
    assert got.status_code == 200 and got.content == WAV
    assert httpx.delete(f"{tenant.node.base_url}/media/before.wav", headers=headers).status_code == 204
    assert not old.exists()


def _account(tenant: Tenant) -> str:
    with tenant.node.node.store.transaction(read_only=True) as tx:
        account = tx.account_for_key_hash(hash_key(tenant.api_key))
    assert account is not None
    return account


def test_an_upload_past_its_ttl_is_gone_at_once_and_deleted_by_the_sweep(tenant: Tenant) -> None:
    headers = _auth(tenant)
    account = _account(tenant)
    base = f"{tenant.node.base_url}/media"
    up = httpx.post(base, headers=headers, files={"media": ("t.wav", WAV, "audio/wav")},
                    data={"media_name": "short-lived.wav", "ttl_secs": "1"})
    assert up.status_code == 200, up.text
    kept = httpx.post(base, headers=headers, files={"media": ("k.wav", WAV, "audio/wav")},
                      data={"media_name": "kept.wav", "ttl_secs": "3600"})
    assert kept.status_code == 200, kept.text
    node = tenant.node.node
    [copy] = list(node.blobs.cache_dir.rglob("short-lived.wav"))
    with node.store.transaction() as tx:
        key = media_tx.get_media(tx, account, "short-lived.wav").path  # type: ignore[union-attr]

    later = time.time() + 2  # (the node's own clock: nothing waits for the second to pass)
    assert httpx.get(f"{base}/short-lived.wav", headers=headers).status_code == 200
    with node.store.transaction() as tx:
        assert [m.media_name for m in media_tx.expired_media(tx, later)] == ["short-lived.wav"]
    assert tenant.node.loop is not None
    assert asyncio.run_coroutine_threadsafe(node.files.sweep_expired(later), tenant.node.loop).result(10) == 1
    for path in ("short-lived.wav", "short-lived.wav/download"):
        assert httpx.get(f"{base}/{path}", headers=headers).status_code == 404
    names = [m["media_name"] for m in httpx.get(base, headers=headers).json()["data"]]
    assert "short-lived.wav" not in names and "kept.wav" in names
    assert not copy.exists()
    with node.store.transaction() as tx:
        assert media_tx.get_media(tx, account, "short-lived.wav") is None
        assert not blobs.stored_keys(tx, [key])
    assert httpx.delete(f"{base}/kept.wav", headers=headers).status_code == 204


def test_an_upload_past_its_ttl_is_not_found_before_any_sweep(tenant: Tenant) -> None:
    headers = _auth(tenant)
    account = _account(tenant)
    base = f"{tenant.node.base_url}/media"
    node = tenant.node.node
    past = MediaFile(account_id=account, media_name="expired.wav", path="media/x/expired.wav",
                     content_type="audio/wav", size_bytes=1, created_at=time.time() - 10, updated_at=time.time() - 10,
                     expires_at=time.time() - 1)
    with node.store.transaction() as tx:
        media_tx.put_media(tx, past)
    assert httpx.get(f"{base}/expired.wav", headers=headers).status_code == 404
    assert "expired.wav" not in [m["media_name"] for m in httpx.get(base, headers=headers).json()["data"]]
    call = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111",
                                    to="virtual:p;answer_after=0")
    assert call.data is not None
    tenant.event("call.answered", call.data.call_control_id)
    resp = httpx.post(f"{tenant.node.base_url}/calls/{call.data.call_control_id}/actions/playback_start",
                      headers=headers, json={"media_name": "expired.wav"})
    assert resp.status_code in (404, 422), resp.text  # refused as a media name it does not know
    tenant.client.calls.actions.hangup(call.data.call_control_id)


def _peak_mib(run: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    """What ``run`` returns, and the most Python memory the process (the node serving it, in this process)
    held meanwhile, over what it held before."""
    tracemalloc.start()
    try:
        resp = run()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return resp, peak / 2**20


LARGE = _wav_of(1300)  # 20.8 MB: 21 chunks, the last part full


def _multipart(name: str, content: bytes) -> tuple[dict[str, str], Iterator[bytes]]:
    """A multipart upload of ``content`` as ``media`` (headers, body), sent 64 KiB at a time: httpx's own
    encoder hands the file to h11 whole, which copies it (the client's memory would be counted as the node's)."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"media_name\"\r\n\r\n{name}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"{name}\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        view = memoryview(content)
        for i in range(0, len(content), 65536):
            yield bytes(view[i:i + 65536])
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "Content-Length": str(len(head) + len(content) + len(tail))}  # fmt: skip
    return headers, body()


def test_a_large_upload_goes_through_a_file_and_comes_back_byte_exact(tenant: Tenant) -> None:
    """20 MB uploaded (as a file, and by media_url) while the node holds a few MB of it at most: the upload is
    spooled to a temporary file, checked and stored from there a chunk at a time (it was read whole, then
    decoded whole: several times its size)."""
    headers = _auth(tenant)
    base = f"{tenant.node.base_url}/media"
    form, body = _multipart("big.wav", LARGE)
    up, peak = _peak_mib(lambda: httpx.post(base, headers={**headers, **form}, content=body, timeout=60))
    assert up.status_code == 200, up.text
    assert peak < 8, f"{peak:.1f} MiB held for a {len(LARGE) / 2**20:.1f} MiB upload"
    media = MediaServer()
    try:
        url = media.add("/big-by-url.wav", LARGE)
        by_url, peak = _peak_mib(lambda: httpx.post(base, headers=headers, timeout=60,
                                                    json={"media_url": url, "media_name": "big-by-url.wav"}))
    finally:
        media.close()
    assert by_url.status_code == 200, by_url.text
    assert peak < 8, f"{peak:.1f} MiB held for a {len(LARGE) / 2**20:.1f} MiB download"
    node = tenant.node.node
    account = _account(tenant)
    for name in ("big.wav", "big-by-url.wav"):
        with node.store.transaction(read_only=True) as tx:
            row = media_tx.get_media(tx, account, name)
        assert row is not None and row.size_bytes == len(LARGE) and row.content_type == "audio/wav"
        info = node.blobs.info(row.path)
        assert info is not None and info.chunks == -(-len(LARGE) // blobs.CHUNK_BYTES) and info.chunked_evenly
        copy = node.blobs.local(row.path)
        assert copy is not None and copy.stat().st_size == len(LARGE)
        got = httpx.get(f"{base}/{name}/download", headers=headers, timeout=60)
        assert got.status_code == 200 and got.content == LARGE
        copy.unlink()
        got = httpx.get(f"{base}/{name}/download", headers=headers, timeout=60)  # from the store
        assert got.status_code == 200 and got.content == LARGE
        assert httpx.delete(f"{base}/{name}", headers=headers).status_code == 204


def test_an_upload_over_50_mb_is_refused_and_leaves_nothing_behind(tenant: Tenant) -> None:
    headers = _auth(tenant)
    base = f"{tenant.node.base_url}/media"
    over = LARGE[:44] + bytes(limits.MAX_MEDIA_BYTES + 1 - 44)  # a WAV's head, one byte too many
    refused = httpx.post(base, headers=headers, files={"media": ("over.wav", over, "audio/wav")},
                         data={"media_name": "over.wav"}, timeout=60)  # fmt: skip
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert (error["code"], error["source"], error["detail"]) == ("10015", {"pointer": "/media"},
                                                                 "media is larger than 50 MB")  # fmt: skip
    media = MediaServer()
    try:
        url = media.add("/over.wav", over)
        by_url = httpx.post(base, headers=headers, json={"media_url": url, "media_name": "over.wav"}, timeout=60)
    finally:
        media.close()
    assert by_url.status_code == 422, by_url.text
    [error] = by_url.json()["errors"]
    assert (error["code"], error["source"], error["detail"]) == ("10015", {"pointer": "/media_url"}, FETCH_FAILED)
    account = _account(tenant)
    assert httpx.get(base, headers=headers).json()["data"] == []
    with tenant.node.node.store.transaction(read_only=True) as tx:
        stored = tx.conn.execute(select(schema.blobs.c.key).where(schema.blobs.c.key.like(f"media/{account}/%")))
        assert list(stored) == []
    assert not (tenant.node.node.blobs.cache_dir / "media" / account).exists()
