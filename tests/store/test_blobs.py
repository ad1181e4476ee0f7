"""Stored files on each backend: written in chunks, read back whole, never seen half-written, deleted with
the transaction that deletes their row; a node's copies fetched on demand, trimmed and pruned."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update

from callroom.errors import StoreError
from callroom.model.records import Recording
from callroom.store import blobs as b
from callroom.store import media_tx
from callroom.store import schema as t
from callroom.store.engine import Store


def _content(size: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


def test_a_file_of_several_chunks_reads_back_whole_on_another_node(store: Store, tmp_path: Path) -> None:
    here, there = b.Blobs(store, tmp_path / "a"), b.Blobs(store, tmp_path / "b")
    data = _content(2 * b.CHUNK_BYTES + 12345)
    source = tmp_path / "rec.wav"
    source.write_bytes(data)
    assert here.put_file("recordings/r1.wav", source) == len(data)
    assert not source.exists() and here.local("recordings/r1.wav") == (tmp_path / "a/recordings/r1.wav").resolve()
    info = there.info("recordings/r1.wav")
    assert info == b.BlobInfo("recordings/r1.wav", len(data), 3)
    assert b"".join(there.chunk("recordings/r1.wav", i) for i in range(info.chunks)) == data
    assert there.local("recordings/r1.wav") is None
    copy = there.materialise("recordings/r1.wav")
    assert copy.read_bytes() == data and copy.is_relative_to((tmp_path / "b").resolve())
    assert there.local("recordings/r1.wav") == copy


def test_an_empty_file_and_bytes(store: Store, tmp_path: Path) -> None:
    blobs = b.Blobs(store, tmp_path / "cache")
    assert blobs.put_bytes("media/acct/v1/empty.wav", b"") == 0
    assert blobs.info("media/acct/v1/empty.wav") == b.BlobInfo("media/acct/v1/empty.wav", 0, 0)
    assert blobs.put_bytes("media/acct/v1/x.wav", b"abc") == 3
    assert blobs.materialise("media/acct/v1/x.wav").read_bytes() == b"abc"


def test_a_half_written_or_unnamed_file_is_not_seen_and_is_swept(store: Store, tmp_path: Path) -> None:
    blobs = b.Blobs(store, tmp_path / "cache")

    def failing() -> object:
        yield b"x" * 10
        raise OSError("disk gone")

    with pytest.raises(OSError):
        blobs._put("recordings/half.wav", failing())  # type: ignore[arg-type]
    assert blobs.info("recordings/half.wav") is None  # cleaned up by the writer itself
    # a writer that died (no cleanup): its header stays incomplete until the sweep
    with store.transaction() as tx:
        tx.conn.execute(insert(t.blobs).values(key="recordings/dead.wav", size_bytes=0, chunks=0,
                                                   complete=False, created_at=time.time() - 2 * b.STALE_SECS))
        tx.conn.execute(insert(t.blob_chunks).values(key="recordings/dead.wav", seq=0, data=b"abc"))
    assert blobs.info("recordings/dead.wav") is None
    with pytest.raises(StoreError):
        blobs.materialise("recordings/dead.wav")
    # whole files: one no row names (its writer died before the row's commit), one a recording names, one new
    old = time.time() - 2 * b.STALE_SECS
    for key in ("recordings/orphan.wav", "recordings/named.wav", "recordings/new.wav"):
        blobs.put_bytes(key, b"RIFF")
    with store.transaction() as tx:
        tx.conn.execute(update(t.blobs).where(t.blobs.c.key != "recordings/new.wav").values(created_at=old))
        media_tx.insert_recording(tx, Recording("named", "acct", "call", "single", "wav", "named.wav", "completed",
                                                old, old, old, path="recordings/named.wav"))  # fmt: skip
    blobs.prune()
    with store.transaction(read_only=True) as tx:
        assert b.stored_keys(tx, ["recordings/dead.wav", "recordings/orphan.wav", "recordings/named.wav",
                                  "recordings/new.wav"]) == {"recordings/named.wav", "recordings/new.wav"}
        assert b.read_chunk(tx, "recordings/dead.wav", 0) is None


def test_deleted_with_the_transaction_and_copies_pruned(store: Store, tmp_path: Path) -> None:
    here, there = b.Blobs(store, tmp_path / "a"), b.Blobs(store, tmp_path / "b")
    here.put_bytes("media/acct/v2/hold.wav", b"hold music")
    there.materialise("media/acct/v2/hold.wav")
    with store.transaction() as tx:
        b.delete_blob(tx, "media/acct/v2/hold.wav")
    assert here.info("media/acct/v2/hold.wav") is None
    here.drop_copy("media/acct/v2/hold.wav")  # the node that deleted it
    assert here.local("media/acct/v2/hold.wav") is None
    assert there.prune() == 1  # the other node, told nothing, finds out when it prunes
    assert there.local("media/acct/v2/hold.wav") is None


def test_copies_are_trimmed_least_recently_used_first(store: Store, tmp_path: Path) -> None:
    blobs = b.Blobs(store, tmp_path / "cache", cache_bytes=25)
    for i in range(3):
        blobs.put_bytes(f"media/a/v/{i}.wav", b"0123456789")
        path = blobs.local(f"media/a/v/{i}.wav")
        assert path is not None
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
    blobs.materialise("media/a/v/0.wav")  # used again: now the most recent
    blobs.put_bytes("media/a/v/3.wav", b"0123456789")
    kept = sorted(k for k, _p, _s in blobs.copies())
    assert kept == ["media/a/v/0.wav", "media/a/v/3.wav"]
    assert blobs.materialise("media/a/v/1.wav").read_bytes() == b"0123456789"  # fetched again
    none_kept = b.Blobs(store, tmp_path / "none", cache_bytes=0)
    assert none_kept.materialise("media/a/v/2.wav").read_bytes() == b"0123456789"  # the copy just made stays
    assert none_kept.materialise("media/a/v/3.wav").read_bytes() == b"0123456789"
    assert [k for k, _p, _s in none_kept.copies()] == ["media/a/v/3.wav"]


def test_keys_cannot_leave_the_cache_and_legacy_paths_are_files(store: Store, tmp_path: Path) -> None:
    blobs = b.Blobs(store, tmp_path / "cache")
    for bad in ("", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "x" * 600):
        assert b.key_problem(bad) is not None, bad
        assert blobs.local(bad) is None
    with pytest.raises(StoreError):
        blobs.put_bytes("../escape", b"x")
    old = tmp_path / "old.mp3"
    old.write_bytes(b"ID3")
    assert b.is_legacy(str(old)) and blobs.materialise(str(old)) == old
    blobs.drop_copy(str(old))
    assert not old.exists()


class _Trickle(io.RawIOBase):
    """A file whose reads return at most 1000 bytes (a pipe, a socket): chunks are still ``CHUNK_BYTES``."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._data.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def test_a_stream_is_stored_in_whole_chunks_with_its_copy_written_as_it_goes(store: Store, tmp_path: Path) -> None:
    blobs = b.Blobs(store, tmp_path / "cache")
    data = _content(2 * b.CHUNK_BYTES + 777)
    source = _Trickle(data)
    source.read(5)  # (read from the start, wherever the file stands)
    assert blobs.put_stream("media/a/v/big.wav", source) == len(data)  # type: ignore[arg-type]
    info = blobs.info("media/a/v/big.wav")
    assert info == b.BlobInfo("media/a/v/big.wav", len(data), 3) and info.chunked_evenly
    assert [len(blobs.chunk(info.key, i)) for i in range(3)] == [b.CHUNK_BYTES, b.CHUNK_BYTES, 777]
    copy = blobs.local("media/a/v/big.wav")
    assert copy is not None and copy.read_bytes() == data
    assert [p.name for p in copy.parent.iterdir()] == ["big.wav"]  # no part file left


def test_a_stream_that_fails_leaves_neither_a_file_nor_a_copy(store: Store, tmp_path: Path) -> None:
    blobs = b.Blobs(store, tmp_path / "cache")

    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= b.CHUNK_BYTES:
                raise OSError("the upload's temporary file is gone")
            return super().read(size)

    with pytest.raises(OSError):
        blobs.put_stream("media/a/v/broken.wav", Broken(_content(2 * b.CHUNK_BYTES)))
    assert blobs.info("media/a/v/broken.wav") is None and blobs.copies() == []
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    with store.transaction(read_only=True) as tx:
        assert b.read_chunk(tx, "media/a/v/broken.wav", 0) is None


def test_an_open_copy_is_read_whole_after_the_copy_is_removed(store: Store, tmp_path: Path) -> None:
    blobs = b.Blobs(store, tmp_path / "cache", cache_bytes=b.CHUNK_BYTES)
    data = _content(b.CHUNK_BYTES)
    blobs.put_bytes("media/a/v/one.wav", data)
    opened = blobs.open_copy("media/a/v/one.wav")
    assert opened is not None
    with opened:
        blobs.put_bytes("media/a/v/two.wav", b"x" * 10)  # over cache_bytes: the least recently used goes
        assert blobs.local("media/a/v/one.wav") is None
        assert opened.read() == data
    assert blobs.open_copy("media/a/v/one.wav") is None  # none here now: the caller reads the store
    assert blobs.open_copy("../escape") is None
