"""PostgreSQL statements queued in a pipelined session: fewer round trips, the same results and errors."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import bindparam, func, insert, select, text, update

from callroom.errors import Conflict
from callroom.store import schema as t
from callroom.store.engine import Store
from callroom.store.sql import prebuilt

pytestmark = pytest.mark.postgres


def _account(i: int | str) -> dict[str, object]:
    return {"id": f"acct-{i}", "name": f"name-{i}", "created_at": 1.5}


def _insert_account() -> Any:
    return prebuilt("test:insert_account", lambda: insert(t.accounts))


def _outbox_row(event_id: str, payload: object) -> dict[str, object]:
    return {
        "event_id": event_id, "account_id": "a", "event_type": "call.answered", "occurred_at": 1.25,
        "payload": payload, "occurred_at_in_payload": True, "url": None, "failover_url": None, "method": "POST",
        "timeout_secs": 10.0, "order_key": "call:x", "status": "pending", "attempts": 0, "next_attempt_at": 2.5,
        "created_at": 2.5,
    }


def test_writes_travel_with_the_next_read_and_the_commit(postgres_store: Store) -> None:
    with postgres_store.transaction() as tx:
        for i in range(3):
            tx.conn.execute(_insert_account(), _account(i))
        assert tx.conn.round_trips == 0  # BEGIN and three INSERTs are still in the buffer
        count = tx.conn.execute(select(func.count()).select_from(t.accounts))
        assert tx.conn.round_trips == 0  # nobody looked at the count yet
        assert count.scalar_one() == 3
        assert tx.conn.round_trips == 1
        tx.conn.execute(update(t.accounts).where(t.accounts.c.id == "acct-0").values(name="renamed"))
        conn = tx.conn
    assert conn.round_trips == 2  # the UPDATE went with the COMMIT
    with postgres_store.transaction(read_only=True) as tx:
        names = tx.conn.execute(select(t.accounts.c.name).order_by(t.accounts.c.id)).scalars().all()
    assert names == ["renamed", "name-1", "name-2"]


def test_values_of_every_column_type_come_back_as_they_went(postgres_store: Store) -> None:
    payload = {"text": "é ünïcode", "n": 3, "f": 1.5, "none": None, "list": [1, "two"], "nested": {"ok": True}}
    stmt = prebuilt("test:insert_outbox", lambda: insert(t.outbox))
    with postgres_store.transaction() as tx:
        key = tx.conn.execute(stmt, _outbox_row("e1", payload)).inserted_primary_key
        tx.conn.execute(stmt, _outbox_row("e2", [1, 2]))
    assert key is not None and isinstance(key[0], int)
    with postgres_store.transaction(read_only=True) as tx:
        row = tx.conn.execute(select(t.outbox).where(t.outbox.c.event_id == "e1")).one()
    assert row.payload == payload
    assert row.occurred_at_in_payload is True
    assert row.occurred_at == 1.25 and row.url is None and row.attempts == 0 and row.id == key[0]


def test_rowcount_of_a_queued_write(postgres_store: Store) -> None:
    with postgres_store.transaction() as tx:
        tx.conn.execute(insert(t.accounts), [_account(i) for i in range(4)])
        many = tx.conn.execute(
            prebuilt("test:rename", lambda: update(t.accounts).where(t.accounts.c.id == bindparam("i"))
                     .values(name=bindparam("n"))),
            [{"i": "acct-1", "n": "x"}, {"i": "acct-2", "n": "y"}, {"i": "nobody", "n": "z"}],
        )
        one = tx.conn.execute(update(t.accounts).values(created_at=9.0))
        assert many.rowcount == 2
        assert one.rowcount == 4


def test_an_error_of_a_queued_write_fails_the_transaction_and_changes_nothing(postgres_store: Store) -> None:
    with pytest.raises(Conflict), postgres_store.transaction() as tx:
        tx.conn.execute(_insert_account(), _account(1))
        tx.conn.execute(_insert_account(), _account(1))  # the same primary key: fails on the server
        tx.conn.execute(_insert_account(), _account(2))  # skipped by the server
    # The session went back to the pool in good order, and nothing of the failed transaction stayed.
    with postgres_store.transaction() as tx:
        assert tx.conn.execute(select(func.count()).select_from(t.accounts)).scalar_one() == 0
        tx.conn.execute(_insert_account(), _account(3))
    with postgres_store.transaction(read_only=True) as tx:
        assert tx.conn.execute(select(t.accounts.c.id)).scalars().all() == ["acct-3"]


def test_a_statement_whose_prepare_was_skipped_is_prepared_again(postgres_store: Store) -> None:
    # A failing statement makes the server skip the rest of the round, including the PREPARE of a
    # statement sent for the first time; the session must not believe it prepared.
    fresh = prebuilt(f"test:select_account:{uuid.uuid4()}",
                     lambda: select(t.accounts.c.name).where(t.accounts.c.id == bindparam("i")))
    with pytest.raises(Conflict), postgres_store.transaction() as tx:
        tx.conn.execute(_insert_account(), _account(1))
        tx.conn.execute(_insert_account(), _account(1))
        tx.conn.execute(fresh, {"i": "acct-1"}).first()
    with postgres_store.transaction() as tx:
        tx.conn.execute(_insert_account(), _account(1))
        assert tx.conn.execute(fresh, {"i": "acct-1"}).scalar() == "name-1"


def test_a_python_error_rolls_back_queued_writes(postgres_store: Store) -> None:
    with pytest.raises(RuntimeError), postgres_store.transaction() as tx:
        tx.conn.execute(_insert_account(), _account(1))
        raise RuntimeError("the handler failed")
    with postgres_store.transaction(read_only=True) as tx:
        assert tx.conn.execute(select(func.count()).select_from(t.accounts)).scalar_one() == 0


def test_reads_hold_no_transaction_open_between_round_trips(postgres_store: Store) -> None:
    admin_url = postgres_store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with postgres_store.transaction(read_only=True) as tx, psycopg.connect(admin_url, autocommit=True) as admin:
        pid = tx.conn.execute(text("SELECT pg_backend_pid()")).scalar()
        state = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    assert state == ("idle",)  # a write's session would be "idle in transaction" here
