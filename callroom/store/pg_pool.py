"""The idle PostgreSQL sessions of a store (``pg_wire.PgSession``), handed to one transaction at a time.

A session is opened with the engine's connection arguments (host, database, user...) and its dialect's
adapters (the JSON functions), and kept open in pipeline mode. Check-out and check-in cost no round trip:
a transaction always ends with COMMIT or ROLLBACK before its session comes back, and a session that comes
back in any other state, or broken, is closed instead of kept. Reads and writes take their sessions from
the same pool (a read runs in autocommit: no BEGIN is sent for it).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine

from callroom.store.pg_wire import PgSession


class PgPool:
    """A last-in first-out stack of idle sessions (the most recently used is the warmest)."""

    def __init__(self, engine: Engine, *, keep: int) -> None:
        _args, params = engine.dialect.create_connect_args(engine.url)
        self._context: Any = params.pop("context", None)
        self._conninfo = make_conninfo(**params)
        self._keep = keep
        self._idle: list[PgSession] = []
        self._lock = threading.Lock()
        self.opened = 0  # sessions opened so far (for tests and diagnostics)

    def get(self) -> PgSession:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self.opened += 1
        return PgSession(self._conninfo, self._context)

    def put(self, session: PgSession) -> None:
        if session.idle:
            with self._lock:
                if len(self._idle) < self._keep:
                    self._idle.append(session)
                    return
        self.discard(session)

    @staticmethod
    def discard(session: PgSession) -> None:
        with contextlib.suppress(Exception):
            session.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for session in idle:
            self.discard(session)
