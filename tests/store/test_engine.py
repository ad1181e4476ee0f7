"""Transactions of the store: SQLite's never nest on one thread, and their log is copied into the file by
a background thread; a PostgreSQL connection the server dropped is replaced (connections are not pinged
before each transaction)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from callroom.errors import StoreError
from callroom.store.engine import Store


def test_sqlite_transactions_do_not_nest(sqlite_store: Store) -> None:
    with sqlite_store.transaction(), pytest.raises(StoreError), sqlite_store.transaction():
        pass
    with sqlite_store.transaction() as tx:  # the thread's connection is usable again
        assert tx.conn.execute(text("SELECT 1")).scalar() == 1


def test_sqlite_log_is_checkpointed_by_the_background_thread(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{path}")
    try:
        with store.transaction() as tx:
            tx.conn.execute(text("CREATE TABLE t (n INTEGER)"))
        for n in range(50):  # far below the backstop: no commit checkpoints by itself
            with store.transaction() as tx:
                tx.conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})

        def in_the_file_itself() -> int:
            # immutable=1 reads the database file alone, not its write-ahead log
            with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as raw:
                try:
                    return int(raw.execute("SELECT count(*) FROM t").fetchone()[0])
                except sqlite3.OperationalError:  # the table itself is still only in the log
                    return -1

        deadline = time.monotonic() + 10
        while in_the_file_itself() != 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_the_file_itself() == 50
    finally:
        store.dispose()


def test_a_postgres_connection_the_server_dropped_is_replaced(postgres_store: Store) -> None:
    with postgres_store.transaction() as tx:
        pid = tx.conn.execute(text("SELECT pg_backend_pid()")).scalar()
    admin_url = postgres_store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    failures = 0
    for _ in range(3):
        try:
            with postgres_store.transaction() as tx:
                new_pid = tx.conn.execute(text("SELECT pg_backend_pid()")).scalar()
            break
        except DBAPIError:
            failures += 1  # the transaction that found the connection dead fails; the pool drops it
    else:
        pytest.fail("the store never recovered from a dropped connection")
    assert failures <= 1
    assert new_pid != pid
