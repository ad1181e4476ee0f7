"""Stored files (recordings, uploaded media) in the database every node shares, and a node's own copies.

A file is named by a key (``recordings/<id>.mp3``, ``media/<account>/<version>/<name>``) and kept in the
store as a header row (``blobs``) and chunks of ``CHUNK_BYTES``, the last one shorter (``blob_chunks``):
every node of a cluster reads every file, and a file outlives the node that wrote it. Chunk ``n`` holds
bytes ``n * CHUNK_BYTES`` onwards, so a byte range is read from the chunks that cover it and no others.
The header is marked ``complete`` only once every chunk is in, so a reader never sees half a file; each
chunk is written in a transaction of its own, so a 50 MB file never holds a lock (SQLite's one writer) or
a pipeline's buffer (PostgreSQL) for long. A key names one content for good: a replaced upload gets a
new key, so a copy is never stale.

A node keeps copies in its cache directory (``cache_dir/<key>``): what its media process plays (it reads
files, not the database), and what the API serves when it has one (``open_copy``: an open file survives
its copy's removal, so a download under way is never cut short). Copies are written whole under a
temporary name and renamed; the least recently used are removed when the directory grows past
``cache_bytes``, and ``prune`` removes copies of files the store no longer has (deleted while the node was
down, or through another node while the bus lost the word).

Rows written before stored files existed name an absolute path instead of a key: that file is served from
the disk of the node that has it (``is_legacy``).

A file is stored before the row that names it is committed (a recording before its ``*.recording.saved``,
an upload before its ``media_files`` row): a node that dies between the two leaves a file nobody names,
which ``prune`` deletes an hour later.

Everything here blocks: the API and the node call it in worker threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import and_, delete, insert, select, update

from callroom.errors import StoreError
from callroom.store import schema as t
from callroom.store.engine import Store
from callroom.store.tx import Tx

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # 1 MiB: a few ms per chunk to write or read on either backend
STALE_SECS = 3600.0  # a file still incomplete after an hour was left by a node that died while writing it
DEFAULT_CACHE_BYTES = 2 << 30  # a node's copies, at most (2 GiB)
MAX_KEY = 512
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,255}")


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a stored file (None: it can). Keys are made by callroom, never taken from a
    request, but a key becomes a path under the cache directory: it must not lead out of it."""
    if not key or len(key) > MAX_KEY:
        return "a stored file's key is 1 to 512 characters"
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            return f"a stored file's key is plain names joined by '/': {key!r}"
    return None


def is_legacy(key: str) -> bool:
    """A path written before files were stored (an absolute file name on the node that wrote it)."""
    return key.startswith("/")


def recording_key(file_name: str) -> str:
    """A recording's key, from the name of the file its media process wrote (``<id>.<format>``)."""
    return f"recordings/{file_name}"


def media_key(account_id: str, media_name: str) -> str:
    """A new key for an upload: a version of its own, so that a replaced file is never served stale."""
    return f"media/{account_id}/{uuid.uuid4().hex[:16]}/{media_name}"


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size_bytes: int
    chunks: int

    @property
    def chunked_evenly(self) -> bool:
        """Whether every chunk but the last holds ``CHUNK_BYTES`` (true of every file written here): only then
        is a range's first chunk found by division."""
        return self.chunks == -(-self.size_bytes // CHUNK_BYTES)


def chunks_of(source: BinaryIO) -> Iterator[bytes]:
    """What ``source`` holds from where it stands, in chunks of ``CHUNK_BYTES`` (the last one shorter), whatever
    lengths its reads return."""
    while True:
        chunk = source.read(CHUNK_BYTES)
        if not chunk:
            return
        if len(chunk) < CHUNK_BYTES:  # a short read: more may follow
            more = bytearray(chunk)
            while len(more) < CHUNK_BYTES and (read := source.read(CHUNK_BYTES - len(more))):
                more += read
            chunk = bytes(more)
        yield chunk


# -- in a transaction ----------------------------------------------------------------------------------


def blob_info(tx: Tx, key: str) -> BlobInfo | None:
    """A complete stored file's header (None: no such file, or not whole yet)."""
    c = t.blobs.c
    row = tx.conn.execute(select(c.size_bytes, c.chunks).where(and_(c.key == key, c.complete.is_(True)))).first()
    return None if row is None else BlobInfo(key, int(row.size_bytes), int(row.chunks))


def read_chunk(tx: Tx, key: str, seq: int) -> bytes | None:
    c = t.blob_chunks.c
    data = tx.conn.execute(select(c.data).where(and_(c.key == key, c.seq == seq))).scalar()
    return None if data is None else bytes(data)


def delete_blob(tx: Tx, key: str) -> None:
    """Delete a stored file (its header and chunks), with whatever else the transaction deletes."""
    if is_legacy(key):
        return
    tx.conn.execute(delete(t.blob_chunks).where(t.blob_chunks.c.key == key))
    tx.conn.execute(delete(t.blobs).where(t.blobs.c.key == key))


def stored_keys(tx: Tx, keys: list[str]) -> set[str]:
    """Those of ``keys`` the store has (complete or being written)."""
    if not keys:
        return set()
    return set(tx.conn.execute(select(t.blobs.c.key).where(t.blobs.c.key.in_(keys))).scalars())


def stale_keys(tx: Tx, before: float) -> list[str]:
    """Files created before ``before`` that are still incomplete (their writer died), or complete but named by
    no recording or upload (their writer died between storing the file and committing its row)."""
    c = t.blobs.c
    named = select(t.recordings.c.path).where(t.recordings.c.path.is_not(None)).union(select(t.media_files.c.path))
    orphan = and_(c.complete.is_(True), c.key.not_in(named))
    return list(tx.conn.execute(select(c.key).where(and_(c.created_at < before, c.complete.is_(False) | orphan)))
                .scalars())  # fmt: skip


# -- the store and this node's copies ------------------------------------------------------------------


class Blobs:
    def __init__(self, store: Store, cache_dir: Path, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.store = store
        self.cache_dir = cache_dir.resolve()
        self.cache_bytes = cache_bytes

    # -- writing ----------------------------------------------------------------------------------------

    def put_file(self, key: str, source: Path, *, keep: bool = True) -> int:
        """Store the file at ``source`` under ``key``, read a chunk at a time; with ``keep`` the file then
        becomes this node's copy (renamed into the cache: no second write). Its size."""
        with open(source, "rb") as f:
            size = self._put(key, chunks_of(f))
        if keep:
            target = self._copy_path(key)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
            except OSError as exc:  # another file system: the copy is made when first wanted
                log.info("stored file %s: not kept as a copy (%s)", key, exc)
            else:
                self._trim(keep=target)
        return size

    def put_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key``, and keep a copy here."""
        return self.put_stream(key, io.BytesIO(data))

    def put_stream(self, key: str, source: BinaryIO) -> int:
        """Store the whole of the seekable file ``source`` under ``key``, a chunk at a time, and keep a copy here
        (an upload is often played soon), written as the chunks go: ``source`` is read once, and never more
        than a chunk of it is in memory. Its size."""
        problem = key_problem(key)
        if problem is not None:
            raise StoreError(problem)
        source.seek(0)
        with self._new_copy(key) as (copy, target):

            def chunks() -> Iterator[bytes]:
                for chunk in chunks_of(source):
                    copy.write(chunk)
                    yield chunk

            size = self._put(key, chunks())
        self._trim(keep=target)
        return size

    def _put(self, key: str, chunks: Iterator[bytes]) -> int:
        problem = key_problem(key)
        if problem is not None:
            raise StoreError(problem)
        with self.store.transaction() as tx:
            delete_blob(tx, key)  # what a node that died while writing this key left
            tx.conn.execute(insert(t.blobs).values(key=key, size_bytes=0, chunks=0, complete=False,
                                                   created_at=time.time()))  # fmt: skip
        size = seq = 0
        try:
            for seq, chunk in enumerate(chunks):
                with self.store.transaction() as tx:
                    tx.conn.execute(insert(t.blob_chunks).values(key=key, seq=seq, data=chunk))
                size += len(chunk)
            count = seq + 1 if size else 0
            with self.store.transaction() as tx:
                tx.conn.execute(update(t.blobs).where(t.blobs.c.key == key).values(size_bytes=size, chunks=count,
                                                                                   complete=True))  # fmt: skip
        except BaseException:
            try:
                with self.store.transaction() as tx:
                    delete_blob(tx, key)
            except Exception:
                log.exception("stored file %s: a half-written file is left to the sweep", key)
            raise
        return size

    # -- reading ----------------------------------------------------------------------------------------

    def info(self, key: str) -> BlobInfo | None:
        if key_problem(key) is not None:
            return None
        with self.store.transaction(read_only=True) as tx:
            return blob_info(tx, key)

    def chunk(self, key: str, seq: int) -> bytes:
        with self.store.transaction(read_only=True) as tx:
            data = read_chunk(tx, key, seq)
        if data is None:
            raise StoreError(f"stored file {key} has no chunk {seq} (deleted while read?)")
        return data

    def open_copy(self, key: str) -> BinaryIO | None:
        """This node's copy of ``key`` (or the file a legacy path names), opened, if it has one. What is open
        stays readable whole if the copy is trimmed or deleted meanwhile."""
        path = self.local(key)
        if path is None:
            return None
        try:
            return open(path, "rb")
        except OSError:  # removed since: the caller reads the store instead
            return None

    def local(self, key: str) -> Path | None:
        """This node's copy of ``key`` (or the file a legacy path names), if it has one."""
        if is_legacy(key):
            path = Path(key)
            return path if path.is_file() else None
        if key_problem(key) is not None:
            return None
        path = self._copy_path(key)
        try:
            os.utime(path)  # recently used: the last to be trimmed
        except OSError:
            return None
        return path

    def materialise(self, key: str) -> Path:
        """A local file with ``key``'s content: this node's copy, fetched from the store if it had none.
        ``StoreError`` if the store has no such file."""
        found = self.local(key)
        if found is not None:
            return found
        if is_legacy(key):
            raise StoreError(f"{key} is not on this node")
        info = self.info(key)
        if info is None:
            raise StoreError(f"no stored file {key}")
        path = self._write_copy(key, (self.chunk(key, seq) for seq in range(info.chunks)))
        self._trim(keep=path)  # (not the copy just made: its reader is about to open it)
        return path

    # -- this node's copies -----------------------------------------------------------------------------

    def _copy_path(self, key: str) -> Path:
        return self.cache_dir / key

    def _write_copy(self, key: str, chunks: Iterator[bytes]) -> Path:
        with self._new_copy(key) as (f, target):
            for chunk in chunks:
                f.write(chunk)
        return target

    @contextlib.contextmanager
    def _new_copy(self, key: str) -> Iterator[tuple[BinaryIO, Path]]:
        """A file to write ``key``'s copy to, under a temporary name, and where it goes: renamed there if the
        block ends well, removed if not."""
        target = self._copy_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with open(part, "wb") as f:
                yield f, target
            os.replace(part, target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    def drop_copy(self, key: str) -> None:
        """Remove this node's copy of ``key`` (the file was deleted or replaced); a legacy file is removed."""
        if is_legacy(key):
            Path(key).unlink(missing_ok=True)
        elif key_problem(key) is None:
            self._copy_path(key).unlink(missing_ok=True)

    def copies(self) -> list[tuple[str, Path, os.stat_result]]:
        """(key, path, stat) of every copy this node keeps."""
        out: list[tuple[str, Path, os.stat_result]] = []
        if not self.cache_dir.is_dir():
            return out
        for path in self.cache_dir.rglob("*"):
            if path.name.startswith(".") and path.name.endswith(".part"):
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            if path.is_file():
                out.append((path.relative_to(self.cache_dir).as_posix(), path, st))
        return out

    def _trim(self, keep: Path) -> None:
        """Remove the least recently used copies while they hold more than ``cache_bytes``, but ``keep``."""
        found = self.copies()
        total = sum(st.st_size for _k, _p, st in found)
        for _key, path, st in sorted(found, key=lambda c: c[2].st_mtime):
            if total <= self.cache_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= st.st_size

    def prune(self, now: float | None = None) -> int:
        """Remove copies of files the store no longer has, and the stored files left behind by a node that died
        while writing them or before their row was committed (``stale_keys``, older than ``STALE_SECS``). How
        many copies were removed."""
        now = time.time() if now is None else now
        with self.store.transaction() as tx:
            for key in stale_keys(tx, now - STALE_SECS):
                delete_blob(tx, key)
        found = self.copies()
        removed = 0
        for i in range(0, len(found), 500):
            batch = found[i:i + 500]
            with self.store.transaction(read_only=True) as tx:
                kept = stored_keys(tx, [k for k, _p, _st in batch])
            for key, path, _st in batch:
                if key not in kept:
                    path.unlink(missing_ok=True)
                    removed += 1
        for part in self.cache_dir.rglob(".*.part") if self.cache_dir.is_dir() else ():
            try:
                if part.stat().st_mtime < now - STALE_SECS:
                    part.unlink(missing_ok=True)
            except OSError:
                pass
        return removed
