"""Opening a database (SQLite file or PostgreSQL URL), migrating it, and running transactions.

SQLite is the embedded default: one file, WAL journal, ``BEGIN IMMEDIATE`` so that every write
transaction holds the single write lock from its first statement (two agents dequeuing at once are
serialised, never handed the same caller). PostgreSQL is selected by a ``postgresql://`` URL; there the
transaction handlers lock the rows they change with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.pool import NullPool

from callroom.errors import StoreError
from callroom.store.pg_pool import PgPool
from callroom.store.reach import CONNECT_TIMEOUT_SECS, normalise_url, reach_database
from callroom.store.sql import Connection
from callroom.store.tx import Tx

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
PG_SESSIONS_KEPT = 40

# JSON columns (webhook payloads, lists of ids) are written and read with orjson: several times faster
# than the json module for the same values.
_JSON: dict[str, Any] = {"json_serializer": lambda obj: orjson.dumps(obj).decode(), "json_deserializer": orjson.loads}

def _sqlite_setup(cursor: Any) -> None:
    """What every SQLite connection sets. WAL is a property of the file: switching to it takes a lock that
    the busy timeout does not wait for, so a connection opened while another thread writes would fail
    with "database is locked". It is switched only when the file is not in WAL yet (its first opening)."""
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")


class Store:
    """The database of one node (or of a cluster, on PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine: Engine = self._create_engine()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sqlite_connections: list[sqlite3.Connection] = []
        if self.is_sqlite:
            # The file is switched to WAL now, by this thread alone: threads opening their first connections
            # at once would race for that switch (see ``_sqlite_setup``).
            try:
                self._sqlite_connection()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the database {self.url}: {exc}") from exc
        else:
            # One pool for reads and writes (a session is idle between transactions, whatever it ran), as
            # large as the transactions a node runs at once: the API's (``Control``'s limit, 32) and a few of
            # the dispatcher, timers and facts. Smaller, and a busy node would open and close sessions
            # (a backend forked, its statements prepared again) for every few requests.
            self._pg_pool = PgPool(self.engine, keep=PG_SESSIONS_KEPT)

    def _create_engine(self) -> Engine:
        if self.is_sqlite:
            engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_pre_ping=False,
                **_JSON,
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                _sqlite_setup(cur)
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        # Transactions do not use this engine's connections: ``pg_pool`` opens its own sessions with the
        # engine's connection arguments (see ``transaction``). It serves schema inspection: a small pool.
        return create_engine(self.url, pool_size=2, max_overflow=2, pool_pre_ping=True, pool_recycle=3600, **_JSON)

    # -- schema -------------------------------------------------------------------------------------

    def check_reachable(self, timeout: int = CONNECT_TIMEOUT_SECS) -> None:
        """Raise ``StoreError`` in one line unless the database answers (PostgreSQL: within ``timeout``
        seconds, unless the URL sets its own ``connect_timeout``)."""
        if self.is_sqlite:
            return
        reach_database(self.url, timeout)

    def has_schema(self) -> bool:
        """Whether callroom's tables are there (a database a node has used, not a new or unrelated one)."""
        return "alembic_version" in self.table_names() and "api_keys" in self.table_names()

    def migrate(self) -> None:
        """Bring the schema up to the newest migration."""
        self.check_reachable()
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        # Alembic gets its own short-lived engine so that its transaction handling is its own.
        migrate_engine = create_engine(self.url, poolclass=NullPool)
        try:
            with migrate_engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except Exception as exc:  # pragma: no cover - surfaced to the operator
            raise StoreError(f"migrating {self.safe_url} failed: {exc}") from exc
        finally:
            migrate_engine.dispose()

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    @property
    def safe_url(self) -> str:
        """The URL without a password, for logs."""
        return self.engine.url.render_as_string(hide_password=True)

    # -- transactions -------------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Tx]:
        """One unit of work: everything done through the ``Tx`` commits together, or not at all.

        Statements run on the driver's connection (``sql.py``). On SQLite each thread keeps one
        connection and the transaction is ``BEGIN IMMEDIATE`` ... ``COMMIT``; on PostgreSQL a pooled
        connection in pipeline mode is checked out for the transaction (the driver begins it implicitly,
        and statements whose results are not looked at travel with the next round trip).
        """
        if not self.is_sqlite:
            # A read runs its statements in autocommit: at READ COMMITTED each statement has its own snapshot
            # inside a transaction too, so BEGIN and COMMIT would be work for nothing; and it locks no rows
            # (a listing must not queue behind a mute of the same conference).
            pool = self._pg_pool
            session = pool.get()
            conn = Connection(self.engine.dialect, session=session)
            try:
                try:
                    if not read_only:
                        conn.begin()  # queued: it travels with the first statement
                    yield Tx(conn, lock_rows=not read_only)
                    if not read_only:
                        conn.commit()
                    elif conn.pending:
                        conn.sync()
                finally:
                    conn.close()
            except BaseException:
                try:
                    conn.rollback()
                except Exception:
                    pool.discard(session)  # the server went away, or the session is out of step
                else:
                    pool.put(session)
                raise
            pool.put(session)
            return
        local = self._local
        if getattr(local, "open", False):  # it would wait for its own write lock
            raise StoreError("a SQLite transaction is already open on this thread (they do not nest)")
        raw = self._sqlite_connection()
        # A read takes a snapshot and no write lock (deferred BEGIN); a write takes the lock at once.
        raw.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
        local.open = True
        conn = Connection(self.engine.dialect, dbapi_connection=raw)
        try:
            try:
                yield Tx(conn, lock_rows=False)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            try:
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
        finally:
            local.open = False
            conn.close()

    def _sqlite_connection(self) -> sqlite3.Connection:
        raw: sqlite3.Connection | None = getattr(self._local, "sqlite", None)
        if raw is None:
            path = self.engine.url.database or ":memory:"
            raw = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            _sqlite_setup(raw.cursor())
            self._local.sqlite = raw
            with self._lock:
                self._sqlite_connections.append(raw)
        return raw

    def dispose(self) -> None:
        with self._lock:
            for raw in self._sqlite_connections:
                raw.close()
            self._sqlite_connections.clear()
        self._local = threading.local()
        if not self.is_sqlite:
            self._pg_pool.close()
        self.engine.dispose()
