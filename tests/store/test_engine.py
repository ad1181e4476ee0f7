"""Transactions of the store: SQLite's never nest on one thread; a PostgreSQL connection the server
dropped is replaced (connections are not pinged before each transaction)."""

from __future__ import annotations

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
