"""Writing what a command decided (``model.effects``) inside its transaction, in the order decided.

No result is looked at until the transaction commits, so on PostgreSQL every write travels with the COMMIT
(one round trip). An update writes only the columns that changed since the command read the row (SQLite then
leaves the indexes on the others alone), and nothing at all when none did. A webhook's row takes its
application's URL, failover URL and timeout as they stand at the commit (``outbox.append_webhook``).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from sqlalchemy import Table, bindparam, delete, update

from callroom.model.effects import (
    CancelTimer,
    Delete,
    Effects,
    Insert,
    LockConference,
    Record,
    Schedule,
    SetParticipantFlags,
    Update,
    Webhook,
)
from callroom.model.records import (
    Application,
    Call,
    Conference,
    MediaJob,
    Participant,
    Queue,
    QueueEntry,
    Recording,
    field_names,
)
from callroom.store import outbox
from callroom.store import schema as t
from callroom.store.sql import prebuilt
from callroom.store.tx import Tx, to_row
from callroom.store.tx_base import _lookup

# The table of each record and the column that names a row of it.
_TABLES: dict[type[Any], tuple[Table, str]] = {
    Call: (t.calls, "call_control_id"),
    Conference: (t.conferences, "id"),
    Participant: (t.participants, "id"),
    Queue: (t.queues, "id"),
    QueueEntry: (t.queue_entries, "call_control_id"),  # unique; its seq is the store's, unknown to an insert
    MediaJob: (t.media_jobs, "id"),
    Recording: (t.recordings, "id"),
    Application: (t.applications, "id"),
}


def write(tx: Tx, account_id: str, now: float, effects: Effects, node_id: str | None = None) -> list[outbox.Appended]:
    """Write ``effects``; returns the outbox rows of its webhooks (their ids and sequence numbers are known
    once the transaction has committed). ``node_id``: the node whose dispatcher delivers those webhooks."""
    appended: list[outbox.Appended] = []
    execute = tx.conn.execute
    for w in effects.writes:
        match w:
            case Insert(record=rec):
                table, _ = _TABLES[type(rec)]
                row = to_row(rec)
                if isinstance(rec, QueueEntry):
                    del row["seq"]
                execute(prebuilt(f"insert:{table.name}", table.insert), row)
            case Update(record=rec, before=before):
                table, key = _TABLES[type(rec)]
                changes = _changes(rec, before)
                if changes:
                    execute(_update_where(table, key), {**changes, "pk_": getattr(rec, key)})
            case Delete(record=rec):
                table, key = _TABLES[type(rec)]
                execute(_delete_by(table, key), {"pk_": getattr(rec, key)})
            case LockConference(conference_id=conf_id) if tx.conn.dialect.name == "postgresql":
                # (SQLite: the transaction holds the one write lock already)
                execute(_lookup(t.conferences, "get_conf", True, id="id", account_id="acct"),
                        {"id": conf_id, "acct": account_id})
            case SetParticipantFlags(participant_ids=ids, values=values):
                tx.set_participant_flags(ids, values)
            case Schedule(timer=timer):
                tx.add_timer(timer)
            case CancelTimer(kinds=kinds, ref=ref):
                tx.cancel_timers(kinds, ref)
            case Webhook():
                appended.append(outbox.append_webhook(tx, account_id, w, now, node_id))
    return appended


def _update_where(table: Table, key: str) -> Any:
    """UPDATE of the row whose ``key`` is ``:pk_``; compiled once per set of columns written (``sql.py``)."""

    def build() -> Any:
        return update(table).where(table.c[key] == bindparam("pk_"))

    return prebuilt(f"update:{table.name}:{key}", build)


def _delete_by(table: Table, key: str) -> Any:
    def build() -> Any:
        return delete(table).where(table.c[key] == bindparam("pk_"))

    return prebuilt(f"delete:{table.name}:{key}", build)


def _changes(rec: Record, before: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, was in zip(field_names(type(rec)), before, strict=True):
        value = getattr(rec, name)
        if was != value:
            out[name] = value.value if isinstance(value, Enum) else value
    return out

