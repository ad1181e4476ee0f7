"""The webhook outbox as the writers and the dispatcher see it: appending rows with their per-key sequence
numbers, pending rows in order, recording their fate (in batches) and each attempt, and replay. An account's
delivery history as the API lists it is in :mod:`callroom.store.deliveries`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from callroom.model.effects import Webhook
from callroom.model.records import OutboundEvent
from callroom.store import schema as t
from callroom.store.sql import Result, prebuilt
from callroom.store.tx import Tx


@dataclass(slots=True)
class PendingDelivery:
    id: int
    event_id: str
    account_id: str
    event_type: str
    occurred_at: float
    payload: dict[str, Any]
    occurred_at_in_payload: bool
    url: str | None
    failover_url: str | None
    method: str
    timeout_secs: float
    order_key: str
    attempts: int
    next_attempt_at: float
    created_at: float = 0.0  # when the state change committed (latency is measured from here)


_COLUMNS = tuple(PendingDelivery.__dataclass_fields__)


def _select_rows() -> Any:
    c = t.outbox.c
    return select(*[getattr(c, name) for name in _COLUMNS])


def _rows(tx: Tx, stmt: Any) -> list[PendingDelivery]:
    return [PendingDelivery(**dict(r._mapping)) for r in tx.conn.execute(stmt)]


def pending(tx: Tx, limit: int) -> list[PendingDelivery]:
    """The oldest pending deliveries, in outbox order (due or not: order is decided by the caller)."""
    c = t.outbox.c
    return _rows(tx, _select_rows().where(c.status == "pending").order_by(c.id).limit(limit))


def _owned_by(owner: str | None) -> Any:
    """Rows a node's dispatcher delivers: its own, and those no node owns (written before nodes owned rows).
    ``owner`` None: every row (a single process that is all there is)."""
    c = t.outbox.c
    return True if owner is None else or_(c.owner == owner, c.owner.is_(None))


def pending_after(tx: Tx, after_id: int, limit: int, owner: str | None = None) -> list[PendingDelivery]:
    """Pending rows (of ``owner``) with an id above ``after_id`` in id order (loading a backlog in chunks)."""
    c = t.outbox.c
    where = and_(c.status == "pending", c.id > after_id, _owned_by(owner))
    return _rows(tx, _select_rows().where(where).order_by(c.id).limit(limit))


def stale_pending_ids(tx: Tx, due_before: float, owner: str | None = None) -> list[int]:
    """Ids of pending rows (of ``owner``) that were due before ``due_before`` (the sweep: rows nobody here
    knows of)."""
    c = t.outbox.c
    stmt = (select(c.id).where(and_(c.status == "pending", c.next_attempt_at <= due_before, _owned_by(owner)))
            .order_by(c.id))  # fmt: skip
    return [int(r[0]) for r in tx.conn.execute(stmt)]


def take_over(tx: Tx, dead: str, survivor: str) -> int:
    """A dead node's pending rows become the survivor's to deliver; returns how many."""
    c = t.outbox.c
    stmt = update(t.outbox).where(and_(c.owner == dead, c.status == "pending")).values(owner=survivor)
    return int(tx.conn.execute(stmt).rowcount)


OLDER_PENDING_LIMIT = 100


def older_pending_ids(tx: Tx, order_key: str, before_id: int) -> list[int]:
    """Ids of the pending rows of ``order_key`` older than ``before_id``, oldest first (at most
    ``OLDER_PENDING_LIMIT``): what must be delivered or given up before row ``before_id`` may be sent."""
    c = t.outbox.c
    stmt = prebuilt("older_pending_ids", lambda: (
        select(c.id)
        .where(and_(c.order_key == bindparam("k"), c.status == "pending", c.id < bindparam("before")))
        .order_by(c.id)
        .limit(OLDER_PENDING_LIMIT)
    ))
    return [int(r[0]) for r in tx.conn.execute(stmt, {"k": order_key, "before": before_id})]


def by_ids(tx: Tx, ids: Sequence[int]) -> list[PendingDelivery]:
    c = t.outbox.c
    return _rows(tx, _select_rows().where(and_(c.id.in_(ids), c.status == "pending")).order_by(c.id))


# -- recording fates ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Fate:
    """What happened to an outbox row after an attempt: still pending (a retry is due at
    ``next_attempt_at``), delivered, or failed for good."""

    id: int
    status: str
    attempts: int
    next_attempt_at: float
    delivered_at: float | None
    last_error: str | None


@dataclass(slots=True)
class AttemptRecord:
    outbox_id: int
    account_id: str
    attempt: int
    url: str
    method: str
    started_at: float
    finished_at: float
    status_code: int | None
    error: str | None
    response_body: str | None = field(default=None)


_FATE = prebuilt("outbox_fate", lambda: (
    update(t.outbox)
    .where(t.outbox.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        next_attempt_at=bindparam("b_next"),
        delivered_at=bindparam("b_delivered_at"),
        last_error=bindparam("b_error"),
    )
))


# PostgreSQL: a whole batch in one statement each (an executemany is one statement per row there).
_FATES_PG = """\
UPDATE outbox AS o SET status = v.status, attempts = v.attempts, next_attempt_at = v.next_attempt_at,
    delivered_at = v.delivered_at, last_error = v.last_error
FROM unnest(CAST(:ids AS BIGINT[]), CAST(:statuses AS VARCHAR[]), CAST(:attempts AS INTEGER[]),
            CAST(:nexts AS DOUBLE PRECISION[]), CAST(:delivered AS DOUBLE PRECISION[]), CAST(:errors AS TEXT[]))
     AS v(id, status, attempts, next_attempt_at, delivered_at, last_error)
WHERE o.id = v.id"""

_ATTEMPTS_PG = """\
INSERT INTO webhook_attempts (outbox_id, account_id, attempt, url, method, started_at, finished_at, status_code,
                              error, response_body)
SELECT outbox_id, account_id, attempt, url, method, started_at, finished_at, status_code, error, response_body
FROM unnest(CAST(:outbox_ids AS BIGINT[]), CAST(:accounts AS VARCHAR[]), CAST(:numbers AS INTEGER[]),
            CAST(:urls AS VARCHAR[]), CAST(:methods AS VARCHAR[]), CAST(:started AS DOUBLE PRECISION[]),
            CAST(:finished AS DOUBLE PRECISION[]), CAST(:codes AS INTEGER[]), CAST(:errors AS TEXT[]),
            CAST(:bodies AS TEXT[]))
     WITH ORDINALITY AS v(outbox_id, account_id, attempt, url, method, started_at, finished_at, status_code, error,
                          response_body, n)
ORDER BY n"""


def record(tx: Tx, fates: Sequence[Fate], attempts: Sequence[AttemptRecord]) -> None:
    """Write many fates and attempts at once (in order: a row's later fate wins)."""
    if tx.conn.dialect.name == "postgresql":
        _record_pg(tx, fates, attempts)
        return
    if fates:
        tx.conn.execute(
            _FATE,
            [
                {"b_id": f.id, "b_status": f.status, "b_attempts": f.attempts, "b_next": f.next_attempt_at,
                 "b_delivered_at": f.delivered_at, "b_error": f.last_error}
                for f in fates
            ],
        )
    if attempts:
        tx.conn.execute(prebuilt("insert:webhook_attempts", t.webhook_attempts.insert), [
            {"outbox_id": a.outbox_id, "account_id": a.account_id, "attempt": a.attempt, "url": a.url,
             "method": a.method, "started_at": a.started_at, "finished_at": a.finished_at,
             "status_code": a.status_code, "error": a.error, "response_body": a.response_body}
            for a in attempts
        ])


def _text(value: str | None) -> str | None:
    """PostgreSQL's text cannot hold NUL, which a receiver's response (or a header quoted in an error) may:
    one such row would fail every later batch."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def _record_pg(tx: Tx, fates: Sequence[Fate], attempts: Sequence[AttemptRecord]) -> None:
    if fates:
        last = list({f.id: f for f in fates}.values())  # one row updated twice in a statement: only once
        tx.conn.execute(prebuilt("outbox_fates:postgresql", lambda: text(_FATES_PG)), {
            "ids": [f.id for f in last], "statuses": [f.status for f in last],
            "attempts": [f.attempts for f in last], "nexts": [f.next_attempt_at for f in last],
            "delivered": [f.delivered_at for f in last], "errors": [_text(f.last_error) for f in last],
        })
    if attempts:
        tx.conn.execute(prebuilt("webhook_attempts:postgresql", lambda: text(_ATTEMPTS_PG)), {
            "outbox_ids": [a.outbox_id for a in attempts], "accounts": [a.account_id for a in attempts],
            "numbers": [a.attempt for a in attempts], "urls": [a.url for a in attempts],
            "methods": [a.method for a in attempts], "started": [a.started_at for a in attempts],
            "finished": [a.finished_at for a in attempts], "codes": [a.status_code for a in attempts],
            "errors": [_text(a.error) for a in attempts], "bodies": [_text(a.response_body) for a in attempts],
        })


def mark_delivered(tx: Tx, row_id: int, attempts: int, now: float) -> None:
    c = t.outbox.c
    tx.conn.execute(
        update(t.outbox).where(c.id == row_id).values(status="delivered", attempts=attempts, delivered_at=now)
    )


def mark_retry(tx: Tx, row_id: int, attempts: int, next_at: float, error: str) -> None:
    c = t.outbox.c
    tx.conn.execute(
        update(t.outbox).where(c.id == row_id).values(attempts=attempts, next_attempt_at=next_at, last_error=error)
    )


def mark_failed(tx: Tx, row_id: int, attempts: int, error: str) -> None:
    c = t.outbox.c
    tx.conn.execute(update(t.outbox).where(c.id == row_id).values(status="failed", attempts=attempts, last_error=error))


def counts(tx: Tx) -> dict[str, int]:
    c = t.outbox.c
    rows = tx.conn.execute(select(c.status, func.count()).group_by(c.status))
    return {str(r[0]): int(r[1]) for r in rows}


def events_for(tx: Tx, account_id: str, order_key: str) -> list[dict[str, Any]]:
    c = t.outbox.c
    rows = tx.conn.execute(
        select(c.event_id, c.event_type, c.status, c.attempts)
        .where(and_(c.account_id == account_id, c.order_key == order_key))
        .order_by(c.id)
    )
    return [dict(r._mapping) for r in rows]


# -- sequence numbers -----------------------------------------------------------------------------------


def sequence_field(order_key: str) -> str:
    """The payload field that numbers the events of ``order_key``."""
    return "conference_sequence" if order_key.startswith("conference:") else "call_sequence"


def sequence_of(row: PendingDelivery) -> int | None:
    """The row's number among its key's events (1, 2, ...), or None if its payload carries none."""
    number = row.payload.get(sequence_field(row.order_key))
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def next_sequence(tx: Tx, order_key: str) -> int:
    """The next sequence number of ``order_key`` (1, 2, ...), taken inside the caller's transaction.

    One upsert: on PostgreSQL a second transaction for the same key waits on the counter row until the
    first commits and then sees its number; on SQLite the write lock is held from ``BEGIN IMMEDIATE``."""
    c = t.webhook_sequences.c
    dialect = tx.conn.dialect.name

    def build() -> Any:
        dialect_insert = pg_insert if dialect == "postgresql" else sqlite_insert
        return (
            dialect_insert(t.webhook_sequences)
            .values(order_key=bindparam("key"), last_sequence=1)
            .on_conflict_do_update(index_elements=[c.order_key], set_={"last_sequence": c.last_sequence + 1})
            .returning(c.last_sequence)
        )

    stmt = prebuilt(f"next_sequence:{dialect}", build)
    return int(tx.conn.execute(stmt, {"key": order_key}).scalar_one())


# -- appending ------------------------------------------------------------------------------------------

# PostgreSQL: the key's next sequence number and the outbox row in one statement (the number is written
# into the payload's JSON text, which the json type keeps as it is given). The row's id is drawn from the
# outbox's sequence only once the key's counter row is ours (the SELECT runs on what ``s`` returned): a
# default id would be drawn first, so a writer waiting for the counter could hold a smaller id than the
# writer ahead of it, and the dispatcher, which sends a key's events in id order, would swap them.
_APPEND_PG = """\
WITH s AS (
    INSERT INTO webhook_sequences AS w (order_key, last_sequence) VALUES (:order_key, 1)
    ON CONFLICT (order_key) DO UPDATE SET last_sequence = w.last_sequence + 1
    RETURNING last_sequence
)
INSERT INTO outbox (id, event_id, account_id, event_type, occurred_at, payload, occurred_at_in_payload, url,
                    failover_url, method, timeout_secs, order_key, status, attempts, next_attempt_at, created_at)
SELECT nextval(pg_get_serial_sequence('outbox', 'id')), :event_id, :account_id, :event_type, :occurred_at,
       CAST(CAST(:payload_head AS TEXT) || CAST(s.last_sequence AS TEXT) || '}' AS JSON),
       :occurred_at_in_payload, :url, :failover_url, :method, :timeout_secs, :order_key, 'pending', 0, :now, :now
FROM s
RETURNING id, (SELECT last_sequence FROM s) AS sequence"""


class Appended:
    """An outbox row being written: its id and the sequence number in its payload, and (for a webhook whose
    address came from its application) the URL, failover URL and timeout it was given. On PostgreSQL they
    are known once the statement has run (at the next round trip; at the latest, with the COMMIT)."""

    __slots__ = ("_result", "sequence_field")

    def __init__(self, result: Result, sequence_field: str) -> None:
        self._result = result
        self.sequence_field = sequence_field

    @property
    def id(self) -> int:
        return int(self._result.one()[0])

    @property
    def sequence(self) -> int:
        return int(self._result.one()[1])

    @property
    def address(self) -> tuple[str | None, str | None, float]:
        """(url, failover_url, timeout_secs) as written."""
        row = self._result.one()
        return row[2], row[3], float(row[4])


DEFAULT_WEBHOOK_TIMEOUT_SECS = 2.0

# PostgreSQL, a command's webhook: ``_APPEND_PG`` with the address taken from the application in the same
# statement (the call's own webhook_url first), so that no command has to read applications first.
_APPEND_WEBHOOK_PG = """\
WITH s AS (
    INSERT INTO webhook_sequences AS w (order_key, last_sequence) VALUES (:order_key, 1)
    ON CONFLICT (order_key) DO UPDATE SET last_sequence = w.last_sequence + 1
    RETURNING last_sequence
), a AS (
    SELECT webhook_event_url, webhook_event_failover_url, webhook_timeout_secs FROM applications
    WHERE id = :connection_id AND account_id = :account_id
)
INSERT INTO outbox (id, event_id, account_id, event_type, occurred_at, payload, occurred_at_in_payload, url,
                    failover_url, method, timeout_secs, order_key, status, attempts, next_attempt_at, created_at,
                    owner)
SELECT nextval(pg_get_serial_sequence('outbox', 'id')), :event_id, :account_id, :event_type, :occurred_at,
       CAST(CAST(:payload_head AS TEXT) || CAST(s.last_sequence AS TEXT) || '}' AS JSON),
       :occurred_at_in_payload, COALESCE(CAST(:url AS VARCHAR), (SELECT webhook_event_url FROM a)),
       (SELECT webhook_event_failover_url FROM a), :method,
       COALESCE(CAST((SELECT webhook_timeout_secs FROM a) AS DOUBLE PRECISION), :default_timeout), :order_key,
       'pending', 0, :now, :now, :owner
FROM s
RETURNING id, (SELECT last_sequence FROM s) AS sequence, url, failover_url, timeout_secs"""


def append_webhook(tx: Tx, account_id: str, hook: Webhook, now: float, owner: str | None) -> Appended:
    """Append a command's webhook: ``append`` with its address taken from its application (``connection_id``)
    unless the webhook names its own URL; ``owner``: the node whose dispatcher delivers it."""
    field_name = sequence_field(hook.order_key)
    payload = hook.payload
    if tx.conn.dialect.name != "postgresql":
        app = tx.application_for_webhooks(account_id, hook.connection_id)
        url = hook.webhook_url or (app.webhook_event_url if app else None)
        failover = app.webhook_event_failover_url if app else None
        timeout = float(app.webhook_timeout_secs) if app and app.webhook_timeout_secs else DEFAULT_WEBHOOK_TIMEOUT_SECS
        ev = OutboundEvent(id=hook.event_id, account_id=account_id, event_type=hook.event_type,
                           occurred_at=hook.occurred_at, payload=payload, url=url, failover_url=failover,
                           method=hook.method, timeout_secs=timeout, order_key=hook.order_key,
                           occurred_at_in_payload=hook.occurred_at_in_payload)  # fmt: skip
        sequence = next_sequence(tx, ev.order_key)
        row_id = tx.add_event(replace(ev, payload={**ev.payload, field_name: sequence}), now, owner)
        return Appended(Result([(row_id, sequence, url, failover, timeout)], 5, None), field_name)
    body = orjson.dumps(payload)
    head = body[:-1] + (b"," if len(body) > 2 else b"") + orjson.dumps(field_name) + b":"
    params = {
        "order_key": hook.order_key, "event_id": hook.event_id, "account_id": account_id, "event_type": hook.event_type,
        "occurred_at": hook.occurred_at, "payload_head": head.decode(), "connection_id": hook.connection_id,
        "occurred_at_in_payload": hook.occurred_at_in_payload, "url": hook.webhook_url, "method": hook.method,
        "default_timeout": DEFAULT_WEBHOOK_TIMEOUT_SECS, "now": now, "owner": owner,
    }  # fmt: skip
    stmt = prebuilt("append_webhook:postgresql", lambda: text(_APPEND_WEBHOOK_PG))
    return Appended(tx.conn.execute(stmt, params), field_name)


def append(tx: Tx, ev: OutboundEvent, now: float, sequence_field: str) -> Appended:
    """Append ``ev`` to the outbox, its payload completed with ``sequence_field``: the next sequence number
    of its order key (1, 2, ...), taken inside the caller's transaction. ``ev.payload`` is left as it is.

    On PostgreSQL a second transaction for the same key waits on the counter row until the first commits
    and then sees its number; on SQLite the write lock is held from ``BEGIN IMMEDIATE``."""
    if tx.conn.dialect.name != "postgresql":
        sequence = next_sequence(tx, ev.order_key)
        row_id = tx.add_event(replace(ev, payload={**ev.payload, sequence_field: sequence}), now)
        return Appended(Result([(row_id, sequence)], 1, None), sequence_field)
    body = orjson.dumps(ev.payload)
    head = body[:-1] + (b"," if len(body) > 2 else b"") + orjson.dumps(sequence_field) + b":"
    params = {
        "order_key": ev.order_key, "event_id": ev.id, "account_id": ev.account_id, "event_type": ev.event_type,
        "occurred_at": ev.occurred_at, "payload_head": head.decode(),
        "occurred_at_in_payload": ev.occurred_at_in_payload, "url": ev.url, "failover_url": ev.failover_url,
        "method": ev.method, "timeout_secs": ev.timeout_secs, "now": now,
    }
    return Appended(tx.conn.execute(prebuilt("append_event:postgresql", lambda: text(_APPEND_PG)), params),
                    sequence_field)


# -- replay ---------------------------------------------------------------------------------------------


def for_replay(tx: Tx, account_id: str, order_key: str) -> list[PendingDelivery]:
    """Every row of ``order_key`` owned by ``account_id``, in order (locked on PostgreSQL)."""
    c = t.outbox.c
    stmt = _select_rows().where(and_(c.account_id == account_id, c.order_key == order_key)).order_by(c.id)
    if tx.conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return _rows(tx, stmt)


def requeue(tx: Tx, rows: Sequence[PendingDelivery], now: float, owner: str | None = None) -> None:
    """Make delivered or failed rows pending again (a replay), addressed to each row's ``url``, to be
    delivered by ``owner`` (the node replaying them)."""
    if not rows:
        return
    stmt = (
        update(t.outbox)
        .where(t.outbox.c.id == bindparam("b_id"))
        .values(status="pending", attempts=0, next_attempt_at=now, delivered_at=None, last_error=None,
                url=bindparam("b_url"), failover_url=bindparam("b_failover"), owner=owner)
    )
    tx.conn.execute(stmt, [{"b_id": r.id, "b_url": r.url, "b_failover": r.failover_url} for r in rows])
