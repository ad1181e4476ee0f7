"""A node's stored files (``store/blobs.py``) as its processes use them: a recording written by this node's
media process is stored in the database before its ``*.recording.saved`` is committed; the media process asks
for a local copy of a file to play; a file deleted anywhere loses its copies on every node; an upload past its
``ttl_secs`` is deleted (every ``SWEEP_SECS``, by whichever node comes first; until then it is already gone
for the API and for playback: ``store/reads.py``, ``api/routes_files.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from callroom.aio.tasks import Tasks
from callroom.cluster.bus import Bus
from callroom.control import media_facts
from callroom.control.service import Control, job_fact
from callroom.endpoints.media_process import MediaProcess
from callroom.model.media import RecordingSaved
from callroom.model.messages import FileReady, FileWanted
from callroom.store import media_tx
from callroom.store.blobs import Blobs, delete_blob, is_legacy, recording_key

log = logging.getLogger(__name__)

DROPPED = "blobs.dropped"  # a topic of the bus: the key of a stored file deleted or replaced
SWEEP_SECS = 30.0  # uploads past their ttl_secs are deleted this often


class NodeFiles:
    def __init__(self, blobs: Blobs, media: MediaProcess, control: Control, link_secret: bytes,
                 legacy_dir: Path) -> None:  # fmt: skip
        self.blobs = blobs
        self.legacy_dir = legacy_dir  # where uploads were written before files were stored (``is_legacy``)
        self._sweeper: asyncio.Task[None] | None = None
        self.media = media
        self.control = control
        self.link_secret = link_secret
        self.bus: Bus | None = None  # a cluster's: where deletions are told to the other nodes
        self._work = Tasks()  # copies for the media process, recordings being stored
        media.on_file_wanted = self._file_wanted

    async def join(self, bus: Bus) -> None:
        self.bus = bus
        await bus.listen(DROPPED, self._heard_dropped)

    def start(self) -> None:
        """Copies of files deleted while this node was down, and files a dead node left half-written, go; then
        expired uploads, from now on."""
        self._work.spawn(self._prune())
        self._sweeper = asyncio.get_running_loop().create_task(self._sweeping(), name="expired-media")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.settle()

    async def settle(self) -> None:
        """Until the recordings being stored and the copies being made are done (a stopping node)."""
        while len(self._work):
            await asyncio.gather(*self._work, return_exceptions=True)

    def recording_saved(self, fact: RecordingSaved) -> None:
        self._work.spawn(self._store_recording(fact))

    async def _store_recording(self, fact: RecordingSaved) -> None:
        """A recording's file is written: stored in the database (so that any node serves it and it outlives
        this one) before its ``*.recording.saved`` is committed; the file stays here as this node's copy."""
        key = recording_key(Path(fact.path).name)
        job = fact.job_id
        try:
            await asyncio.to_thread(self.blobs.put_file, key, Path(fact.path))
        except Exception as exc:
            log.exception("recording %s could not be stored", job)
            detail = f"the recording could not be stored: {type(exc).__name__}"
            job_fact(self.control, job, lambda ctx: media_facts.recording_failed(ctx, job, detail))
            return
        job_fact(self.control, job, lambda ctx: media_facts.recording_saved(
            ctx, job, key, fact.size_bytes, fact.duration_millis, fact.started_at, fact.ended_at, fact.tracks,
            self.link_secret))

    async def _prune(self) -> None:
        try:
            removed = await asyncio.to_thread(self.blobs.prune)
        except Exception:
            log.exception("pruning this node's copies of stored files failed")
            return
        if removed:
            log.info("removed %d copies of stored files deleted meanwhile", removed)

    def _file_wanted(self, wanted: FileWanted) -> None:
        self._work.spawn(self._copy_for_media(wanted))

    async def _copy_for_media(self, wanted: FileWanted) -> None:
        try:
            path = await asyncio.to_thread(self.blobs.materialise, wanted.key)
        except Exception as exc:
            log.warning("stored file %s for the media process: %s", wanted.key, exc)
            self.media.send(FileReady(wanted.ask_id, None, str(exc)))
            return
        self.media.send(FileReady(wanted.ask_id, str(path)))

    async def dropped(self, key: str) -> None:
        """A stored file was deleted or replaced: this node's copy goes, and, in a cluster, the others' too
        (a node that misses the word removes its copy when it next starts: ``Blobs.prune``)."""
        await asyncio.to_thread(self.blobs.drop_copy, key)
        if self.bus is not None:
            await self.bus.tell(DROPPED, key.encode())

    def _heard_dropped(self, data: bytes) -> None:
        self.blobs.drop_copy(data.decode(errors="replace"))

    # -- uploads past their ttl_secs ----------------------------------------------------------------------

    async def _sweeping(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECS)
            await self.sweep_expired(time.time())

    async def sweep_expired(self, now: float) -> int:
        """Delete the uploads past their ``ttl_secs`` at ``now`` (rows, stored files, every node's copies)."""
        try:
            keys = await asyncio.to_thread(self._delete_expired, now)
        except Exception:
            log.exception("deleting expired media failed")
            return 0
        for key in keys:
            if not is_legacy(key) or Path(key).resolve().is_relative_to(self.legacy_dir.resolve()):
                await self.dropped(key)
        if keys:
            log.info("deleted %d media file(s) past their ttl_secs", len(keys))
        return len(keys)

    def _delete_expired(self, now: float) -> list[str]:
        with self.blobs.store.transaction() as tx:
            gone = media_tx.expired_media(tx, now)
            for media in gone:
                media_tx.delete_media(tx, media)
                delete_blob(tx, media.path)
        return [media.path for media in gone]
