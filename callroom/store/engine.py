"""Opening a database (SQLite file or PostgreSQL URL), migrating it, and running transactions.

SQLite is the embedded default: one file, WAL journal, ``BEGIN IMMEDIATE`` so that every write
transaction holds the single write lock from its first statement (two agents dequeuing at once are
serialised, never handed the same caller). PostgreSQL is selected by a ``postgresql://`` URL; there the
transaction handlers lock the rows they change with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.pool import NullPool

from callroom.errors import StoreError
from callroom.store.tx import Tx

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as well as SQLAlchemy's explicit driver form."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Store:
    """The database of one node (or of a cluster, on PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine: Engine = self._create_engine()

    def _create_engine(self) -> Engine:
        if self.is_sqlite:
            engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_pre_ping=False,
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        return create_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)

    # -- schema -------------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema up to the newest migration."""
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
    def transaction(self) -> Iterator[Tx]:
        """One unit of work: everything done through the ``Tx`` commits together, or not at all."""
        with self.engine.begin() as conn:
            yield Tx(conn, lock_rows=not self.is_sqlite)

    def dispose(self) -> None:
        self.engine.dispose()
