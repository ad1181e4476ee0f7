"""The webhook deliveries of one account as the ``/webhook_deliveries`` routes list and retrieve them: outbox
rows, newest first, each with its attempts (newest first). What the dispatcher reads and writes of the same
rows is in :mod:`callroom.store.outbox`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, Text, and_, cast, func, or_, select

from callroom.store import schema as t
from callroom.store.tx import Tx


@dataclass(slots=True)
class DeliveryView:
    row: dict[str, Any]
    attempts: list[dict[str, Any]]


_VIEW_COLUMNS = ("id", "event_id", "account_id", "event_type", "occurred_at", "payload", "status", "attempts",
                 "created_at", "delivered_at", "last_error", "order_key", "url", "failover_url", "method")


def _attempts_of(tx: Tx, ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    ids = list(ids)
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    a = t.webhook_attempts.c
    rows = tx.conn.execute(select(t.webhook_attempts).where(a.outbox_id.in_(ids)).order_by(a.id.desc()))
    for r in rows:
        out[int(r.outbox_id)].append(dict(r._mapping))
    return out


def list_deliveries(
    tx: Tx,
    account_id: str,
    *,
    page: int,
    size: int,
    status: str | None = None,
    event_types: Sequence[str] = (),
    webhook_contains: str | None = None,
    attempts_contains: str | None = None,
    created_gte: float | None = None,
    created_lte: float | None = None,
    finished_gte: float | None = None,
    finished_lte: float | None = None,
) -> tuple[list[DeliveryView], int]:
    """An account's deliveries, newest first, with their attempts (newest first)."""
    c = t.outbox.c
    conds: list[Any] = [c.account_id == account_id]
    if status is not None:
        conds.append(c.status == status)
    if event_types:
        conds.append(c.event_type.in_(list(event_types)))
    if webhook_contains:
        conds.append(or_(cast(c.payload, Text).contains(webhook_contains, autoescape=True),
                         c.event_type.contains(webhook_contains, autoescape=True), c.event_id == webhook_contains))
    if attempts_contains:
        a = t.webhook_attempts.c
        text = attempts_contains
        conds.append(
            select(a.id)
            .where(and_(a.outbox_id == c.id, or_(a.url.contains(text, autoescape=True),
                                                   a.error.contains(text, autoescape=True),
                                                   a.response_body.contains(text, autoescape=True),
                                                   cast(a.status_code, String) == text)))
            .exists()
        )
    if created_gte is not None:
        conds.append(c.created_at >= created_gte)
    if created_lte is not None:
        conds.append(c.created_at <= created_lte)
    if finished_gte is not None or finished_lte is not None:
        a = t.webhook_attempts.c
        last = select(func.max(a.finished_at)).where(a.outbox_id == c.id).scalar_subquery()
        if finished_gte is not None:
            conds.append(last >= finished_gte)
        if finished_lte is not None:
            conds.append(last <= finished_lte)
    where = and_(*conds)
    total = int(tx.conn.execute(select(func.count()).select_from(t.outbox).where(where)).scalar_one())
    stmt = (
        select(*[getattr(c, n) for n in _VIEW_COLUMNS])
        .where(where)
        .order_by(c.id.desc())
        .limit(size)
        .offset((page - 1) * size)
    )
    rows = [dict(r._mapping) for r in tx.conn.execute(stmt)]
    attempts = _attempts_of(tx, (int(r["id"]) for r in rows))
    return [DeliveryView(r, attempts[int(r["id"])]) for r in rows], total


def get_delivery(tx: Tx, account_id: str, event_id: str) -> DeliveryView | None:
    c = t.outbox.c
    stmt = select(*[getattr(c, n) for n in _VIEW_COLUMNS]).where(
        and_(c.account_id == account_id, c.event_id == event_id)
    )
    found = tx.conn.execute(stmt).first()
    if found is None:
        return None
    row = dict(found._mapping)
    return DeliveryView(row, _attempts_of(tx, [int(row["id"])])[int(row["id"])])
