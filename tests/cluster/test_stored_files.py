"""Recordings and uploaded media across the nodes of a cluster (two node processes, PostgreSQL, NATS): a file
stored through one node plays on a call held by the other and is downloaded from either; deleting it through
one node deletes it everywhere; a recording outlives the node that recorded it (``kill -9`` right after its
``call.recording.saved``, and that node's disk gone with it). A download answers a byte range from either node,
from its copy or streamed from the database."""

from __future__ import annotations

import io
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import pytest
import soundfile
import telnyx
from numpy.typing import NDArray

from tests.media.audio import tone_level
from tests.support.cluster import Cluster, running_cluster
from tests.support.polling import until
from tests.support.process import kill_hard
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.postgres

HEARD = 1500.0
SILENT = 150.0


@pytest.fixture
def pair(tmp_path: Path, cluster_db: str) -> Iterator[Cluster]:
    """Two nodes of their own (n0 is killed by a test, so the module's trio is not used)."""
    receiver = WebhookReceiver()
    try:
        with running_cluster(tmp_path, cluster_db, receiver, 2) as cluster:
            yield cluster
    finally:
        receiver.close()


def _tone_wav(freq: float, seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    buf = io.BytesIO()
    soundfile.write(buf, (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16), rate, format="WAV",
                    subtype="PCM_16")  # fmt: skip
    return buf.getvalue()


def _audio(content: bytes) -> NDArray[np.int16]:
    samples, rate = soundfile.read(io.BytesIO(content), dtype="int16")
    assert rate == 8000
    return np.asarray(samples, dtype=np.int16)


def _until(check: Callable[[], None], timeout: float = 5.0) -> None:
    until(check, timeout)


def _copies(data_dir: Path, name: str) -> list[Path]:
    """A node's copies of stored files named ``name`` (its ``files`` folder)."""
    return list((data_dir / "files").rglob(name))


def _on(root: str, url: str) -> str:
    """``url`` (a link a node wrote, with its own address) sent to the node at ``root`` instead."""
    parts, there = urlsplit(url), urlsplit(root)
    return urlunsplit((there.scheme, there.netloc, parts.path, parts.query, ""))


def test_media_uploaded_through_one_node_plays_on_the_others_call_and_is_deleted_everywhere(
        pair: Cluster, tmp_path: Path) -> None:  # fmt: skip
    name = f"greeting-{uuid.uuid4().hex[:6]}.wav"
    wav = _tone_wav(1300, 3.0)
    up = httpx.post(f"{pair.roots[0]}/v2/media", headers=pair.headers, files={"media": (name, wav, "audio/wav")},
                    data={"media_name": name}, timeout=30)  # fmt: skip
    assert up.status_code == 200, up.text
    assert len(_copies(tmp_path / "n0", name)) == 1 and _copies(tmp_path / "n1", name) == []

    # Played on a call whose media lives on n1, the command sent to n0: n1's media process gets n1's copy.
    cid = pair.dial(1, f"far{uuid.uuid4().hex[:4]}")
    pair.client(0).calls.actions.start_playback(cid, media_name=name)
    assert pair.event("call.playback.started", cid).payload["media_name"] == name
    _until(lambda: _check(tone_level(pair.heard(1, cid, 0.3), 1300) > HEARD))
    assert len(_copies(tmp_path / "n1", name)) == 1
    pair.event("call.playback.ended", cid, timeout=10)

    # Hold audio from the same file in a conference mixed on n1, the hold sent to n0.
    host, guest = pair.dial(1, f"host{uuid.uuid4().hex[:4]}"), pair.dial(1, f"guest{uuid.uuid4().hex[:4]}")
    conf = pair.client(1).conferences.create(call_control_id=host, name=f"held-{uuid.uuid4().hex}")
    assert conf.data is not None
    pair.client(0).conferences.actions.join(conf.data.id, call_control_id=guest)
    pair.client(0).conferences.actions.hold(conf.data.id, call_control_ids=[guest], media_name=name)
    _until(lambda: _check(tone_level(pair.heard(0, guest, 0.3), 1300) > HEARD))

    # Downloaded from either node, the same bytes, whole or a range.
    for root in pair.roots:
        got = httpx.get(f"{root}/v2/media/{name}/download", headers=pair.headers)
        assert got.status_code == 200 and got.content == wav
        part = httpx.get(f"{root}/v2/media/{name}/download", headers={**pair.headers, "Range": "bytes=44-1043"})
        assert part.status_code == 206 and part.content == wav[44:1044]

    # Deleted through n1: gone for n0's API, and from both nodes' disks.
    assert httpx.delete(f"{pair.roots[1]}/v2/media/{name}", headers=pair.headers).status_code == 204
    for root in pair.roots:
        assert httpx.get(f"{root}/v2/media/{name}", headers=pair.headers).status_code == 404
        assert httpx.get(f"{root}/v2/media/{name}/download", headers=pair.headers).status_code == 404
    _until(lambda: _check(_copies(tmp_path / "n0", name) == [] and _copies(tmp_path / "n1", name) == []))
    with pytest.raises(telnyx.UnprocessableEntityError):
        pair.client(0).calls.actions.start_playback(cid, media_name=name)


def test_a_recording_outlives_the_node_that_recorded_it(pair: Cluster, tmp_path: Path) -> None:
    cid = pair.dial(0, f"rec{uuid.uuid4().hex[:4]}", "answer_after=0;tone=700")
    pair.client(1).calls.actions.start_recording(cid, format="wav", channels="single")  # carried out on n0
    time.sleep(1.0)
    pair.client(0).calls.actions.stop_recording(cid)
    saved = pair.event("call.recording.saved", cid)
    rec_id = saved.payload["recording_id"]
    link = saved.payload["recording_urls"]["wav"]
    assert saved.payload["public_recording_urls"]["wav"] == link
    assert urlsplit(link).netloc == urlsplit(pair.roots[1]).netloc  # the node that took the command wrote it

    def downloads_from_n1() -> bytes:
        keyed = httpx.get(f"{pair.roots[1]}/v2/recordings/{rec_id}/download.wav", headers=pair.headers, timeout=10)
        assert keyed.status_code == 200, keyed.text
        signed = httpx.get(link, timeout=10)  # no key: the link's signature
        assert signed.status_code == 200, signed.text
        assert signed.content == keyed.content
        assert tone_level(_audio(keyed.content), 700) > HEARD and len(_audio(keyed.content)) > 6000
        size = len(keyed.content)
        for ranged, start, stop in (("bytes=100-4195", 100, 4196), ("bytes=-1000", size - 1000, size)):
            part = httpx.get(f"{pair.roots[1]}/v2/recordings/{rec_id}/download.wav", timeout=10,
                             headers={**pair.headers, "Range": ranged})  # fmt: skip
            assert part.status_code == 206 and part.content == keyed.content[start:stop], ranged
            assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
        return keyed.content

    before = downloads_from_n1()
    assert _copies(tmp_path / "n1", f"{rec_id}.wav") == []  # streamed from the store, not from a copy
    assert len(_copies(tmp_path / "n0", f"{rec_id}.wav")) == 1  # the recording node's own copy
    assert list((tmp_path / "n1").rglob(f"{rec_id}*")) == []  # written where its media is, not by n1's API

    kill_hard(pair.procs[0])
    shutil.rmtree(tmp_path / "n0" / "files")  # its machine is gone, disk and all
    shutil.rmtree(tmp_path / "n0" / "recordings", ignore_errors=True)
    assert downloads_from_n1() == before
    signed_elsewhere = httpx.get(_on(pair.roots[1], link), timeout=10)
    assert signed_elsewhere.status_code == 200 and signed_elsewhere.content == before
    got = pair.client(1).recordings.retrieve(rec_id)
    assert got.data is not None and got.data.status == "completed"

    pair.client(1).recordings.delete(rec_id)
    assert httpx.get(f"{pair.roots[1]}/v2/recordings/{rec_id}/download.wav", headers=pair.headers).status_code == 404
    assert httpx.get(link, timeout=10).status_code == 404


def _check(ok: bool) -> None:
    assert ok
