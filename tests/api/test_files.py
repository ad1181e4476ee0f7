"""``/v2/media`` (callroom/api/routes_files.py): a media name is a plain file name, on every route that takes
one; the file is stored under the account (``store/blobs.py``) and the node's copy stays in its own folder,
so nothing outside it is ever read, written or deleted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from callroom.api.common import hash_key
from callroom.audio.encode import encode_wav
from callroom.audio.fetch import FETCH_FAILED
from callroom.model.records import MediaFile
from callroom.store import blobs, media_tx
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
