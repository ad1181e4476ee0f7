"""The webhook outbox as the dispatcher sees it: pending rows in order, and recording their fate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, update

from callroom.store import schema as t
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


def pending(tx: Tx, limit: int) -> list[PendingDelivery]:
    """The oldest pending deliveries, in outbox order (due or not: order is decided by the caller)."""
    c = t.outbox.c
    cols = [getattr(c, name) for name in PendingDelivery.__dataclass_fields__]
    rows = tx.conn.execute(select(*cols).where(c.status == "pending").order_by(c.id).limit(limit))
    return [PendingDelivery(**dict(r._mapping)) for r in rows]


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
