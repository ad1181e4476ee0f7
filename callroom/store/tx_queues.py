"""The store's reads and writes of queues and their entries (part of ``tx.Tx``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from callroom.model.records import (
    Queue,
    QueueEntry,
)
from callroom.store import schema as t
from callroom.store.sql import prebuilt
from callroom.store.tx_base import TxBase, _lookup, _update_by, from_row, to_row


def _queue_by_name(locked: bool) -> Any:
    return _lookup(t.queues, "get_queue", locked, account_id="acct", name="name")


class QueueTx(TxBase):
    """Queues and their entries."""

    # -- queues -------------------------------------------------------------------------------------

    def insert_queue(self, q: Queue) -> None:
        self.conn.execute(insert(t.queues).values(to_row(q)))

    def update_queue(self, q: Queue) -> None:
        self.conn.execute(update(t.queues).where(t.queues.c.id == q.id).values(to_row(q)))

    def delete_queue(self, q: Queue) -> None:
        self.conn.execute(delete(t.queues).where(t.queues.c.id == q.id))

    def get_queue(self, account_id: str, name: str, *, lock: bool = False) -> Queue | None:
        row = self.conn.execute(_queue_by_name(lock and self._lock_rows), {"acct": account_id, "name": name}).first()
        return None if row is None else from_row(Queue, row)

    def get_queue_by_id(self, queue_id: str) -> Queue | None:
        stmt = prebuilt("queue_by_id", lambda: select(t.queues).where(t.queues.c.id == bindparam("id")))
        row = self.conn.execute(stmt, {"id": queue_id}).first()
        return None if row is None else from_row(Queue, row)

    def list_queues(self, account_id: str, page: int, size: int) -> tuple[list[Queue], int]:
        c = t.queues.c
        return self._page(Queue, t.queues, c.account_id == account_id, [c.created_at, c.id], page, size)

    def insert_queue_entry(self, e: QueueEntry, *, numbered: bool = True) -> QueueEntry:
        """``numbered``: give ``e`` the arrival number the store assigned (on PostgreSQL that waits for the
        server; without it the insert travels with the next round trip and ``e.seq`` stays 0)."""
        row = to_row(e)
        del row["seq"]
        result = self.conn.execute(prebuilt("insert:queue_entries", t.queue_entries.insert), row)
        if numbered:
            pk = result.inserted_primary_key
            assert pk is not None
            e.seq = int(pk[0])
        return e

    def update_queue_entry(self, e: QueueEntry) -> None:
        self.conn.execute(_update_by(t.queue_entries, "seq"), {**to_row(e), "pk_": e.seq})

    def delete_queue_entry(self, e: QueueEntry) -> None:
        stmt = prebuilt("delete_entry", lambda: delete(t.queue_entries).where(t.queue_entries.c.seq == bindparam("s")))
        self.conn.execute(stmt, {"s": e.seq})

    def queue_entries(self, queue_id: str) -> list[QueueEntry]:
        c = t.queue_entries.c
        stmt = prebuilt("entries", lambda: select(t.queue_entries).where(c.queue_id == bindparam("q")).order_by(c.seq))
        return [from_row(QueueEntry, r) for r in self.conn.execute(stmt, {"q": queue_id})]

    def queue_entry_for_call(self, call_control_id: str) -> QueueEntry | None:
        c = t.queue_entries.c
        stmt = prebuilt("entry_for_call", lambda: select(t.queue_entries).where(c.call_control_id == bindparam("cid")))
        row = self.conn.execute(stmt, {"cid": call_control_id}).first()
        return None if row is None else from_row(QueueEntry, row)

    def queue_sizes(self, queue_ids: Sequence[str]) -> dict[str, tuple[int, float]]:
        """For each queue: (number of listed calls, sum of their enqueue times)."""
        if not queue_ids:
            return {}
        c = t.queue_entries.c
        if len(queue_ids) == 1:
            stmt = prebuilt("queue_size", lambda: select(c.queue_id, func.count(), func.sum(c.enqueued_at))
                            .where(c.queue_id == bindparam("q")).group_by(c.queue_id))
            rows = self.conn.execute(stmt, {"q": queue_ids[0]})
            return {r[0]: (int(r[1]), float(r[2] or 0.0)) for r in rows}
        rows = self.conn.execute(
            select(c.queue_id, func.count(), func.sum(c.enqueued_at)).where(c.queue_id.in_(queue_ids)).group_by(
                c.queue_id
            )
        )
        return {r[0]: (int(r[1]), float(r[2] or 0.0)) for r in rows}

