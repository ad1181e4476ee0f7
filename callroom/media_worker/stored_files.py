"""The stored files the media process plays (uploads, hold audio), asked of its node.

Files are kept in the database every node shares; the media process reads files, not the database. For an
``AudioSpec("file", key)`` it sends its node ``FileWanted``; the node makes a local copy (or has one) and
answers ``FileReady`` with its path. A path written before files were stored (absolute) is read as it is.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from callroom.errors import MediaError
from callroom.model.messages import FileReady, FileWanted

ASK_TIMEOUT_SECS = 60.0  # a 50 MB upload copied from the database on a busy node takes a few seconds


class StoredFiles:
    def __init__(self, send: Callable[[FileWanted], None], timeout: float = ASK_TIMEOUT_SECS) -> None:
        self._send = send
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._asked: dict[int, asyncio.Future[str]] = {}

    async def path(self, key: str) -> str:
        """Where this node's copy of ``key`` is (``MediaError`` if there is none to be had)."""
        if key.startswith("/"):
            return key
        ask_id = next(self._ids)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._asked[ask_id] = fut
        self._send(FileWanted(ask_id, key))
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise MediaError(f"stored file {key}: no copy within {self.timeout:g} s") from None
        finally:
            self._asked.pop(ask_id, None)

    def ready(self, answer: FileReady) -> None:
        fut = self._asked.get(answer.ask_id)
        if fut is None or fut.done():
            return
        if answer.path is None:
            fut.set_exception(MediaError(f"stored file unavailable: {answer.error}"))
        else:
            fut.set_result(answer.path)
