"""Answering a command's batch of reads (``model.reads``) inside its transaction.

Every statement of a batch is sent before any result is looked at, so on PostgreSQL the batch is one round
trip (``pg_wire`` keeps the statements in libpq's pipeline until a result is needed). Statements are built
once (``prebuilt``) and filter on the command's account wherever a row has one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, delete, or_, select

from callroom.model import reads as r
from callroom.model.records import (
    Application,
    Call,
    Conference,
    MediaFile,
    MediaJob,
    MixMember,
    Participant,
    Queue,
    QueueEntry,
    Recording,
    field_names,
)
from callroom.model.states import ConferenceStatus, ParticipantStatus
from callroom.store import schema as t
from callroom.store.sql import Result, prebuilt
from callroom.store.tx import Tx, from_row
from callroom.store.tx_base import _lookup

R = TypeVar("R")


def answer(tx: Tx, account_id: str, batch: Sequence[r.Read]) -> dict[r.Read, Any]:
    """The results of ``batch``, by read."""
    pending = [(read, _send(tx, account_id, read)) for read in batch]
    return {read: finish() for read, finish in pending}


def _one(cls: type[R], result: Result) -> Callable[[], R | None]:
    def finish() -> R | None:
        row = result.first()
        return None if row is None else from_row(cls, row)

    return finish


def _all(cls: type[R], result: Result) -> Callable[[], list[R]]:
    return lambda: [from_row(cls, row) for row in result]


def _send(tx: Tx, acct: str, read: r.Read) -> Callable[[], Any]:
    execute = tx.conn.execute
    lock = tx._lock_rows
    match read:
        case r.CallById(call_control_id=cid, lock=locked):
            stmt = _lookup(t.calls, "get_call", locked and lock, call_control_id="cid", account_id="acct")
            return _one(Call, execute(stmt, {"cid": cid, "acct": acct}))
        case r.BridgePartner(call_control_id=cid):
            return _one(Call, execute(_statement("bridge_partner", lock), {"cid": cid, "acct": acct}))
        case r.QueueHeadCall(queue_name=name):
            return _one(Call, execute(_statement("queue_head_call", lock), {"name": name, "acct": acct}))
        case r.ConferenceById(conference_id=conf_id, lock=locked):
            stmt = _lookup(t.conferences, "get_conf", locked and lock, id="id", account_id="acct")
            return _one(Conference, execute(stmt, {"id": conf_id, "acct": acct}))
        case r.ConferenceByName(name=name, lock=locked):
            return _one(Conference, execute(_statement("conference_by_name", locked and lock),
                                            {"name": name, "acct": acct}))
        case r.MembersOf(conference_id=conf_id):
            return _all(Participant, execute(_statement("members", False), {"conf": conf_id}))
        case r.MixOf(conference_id=conf_id):
            return _all(MixMember, execute(_statement("mix", False), {"conf": conf_id}))
        case r.ParticipantOfCall(call_control_id=cid):
            return _one(Participant, execute(_statement("participant_of_call", False), {"cid": cid}))
        case r.ParticipantByIdOrLabel(conference_id=conf_id, id_or_label=key):
            return _one(Participant, execute(_statement("participant_by_id_or_label", False),
                                             {"conf": conf_id, "key": key}))
        case r.QueueByName(name=name, lock=locked):
            stmt = _lookup(t.queues, "get_queue", locked and lock, account_id="acct", name="name")
            return _one(Queue, execute(stmt, {"name": name, "acct": acct}))
        case r.QueueById(queue_id=queue_id):
            stmt = _lookup(t.queues, "queue_by_id", False, id="id", account_id="acct")
            return _one(Queue, execute(stmt, {"id": queue_id, "acct": acct}))
        case r.EntriesOfQueueNamed(name=name):
            return _all(QueueEntry, execute(_statement("entries_of_queue_named", False), {"name": name, "acct": acct}))
        case r.EntriesOfQueue(queue_id=queue_id):
            return _all(QueueEntry, execute(_statement("entries_of_queue", False), {"q": queue_id}))
        case r.EntryOfCall(call_control_id=cid):
            return _one(QueueEntry, execute(_statement("entry_of_call", False), {"cid": cid}))
        case r.AppById(connection_id=app_id):
            stmt = _lookup(t.applications, "get_app", False, id="id", account_id="acct")
            return _one(Application, execute(stmt, {"id": app_id, "acct": acct}))
        case r.MediaByName(media_name=name):  # (a file past its ttl_secs is gone, swept or not yet)
            params = {"name": name, "acct": acct, "now": time.time()}
            return _one(MediaFile, execute(_statement("live_media_by_name", False), params))
        case r.JobById(job_id=job_id):
            stmt = _lookup(t.media_jobs, "job_by_id", False, id="id", account_id="acct")
            return _one(MediaJob, execute(stmt, {"id": job_id, "acct": acct}))
        case r.OpenJobs(kind=kind, call_control_id=cid, conference_id=conf_id):
            key = "open_jobs_of_call" if cid is not None else "open_jobs_of_conference"
            params = {"kind": kind, "acct": acct, "ref": cid if cid is not None else conf_id}
            return _all(MediaJob, execute(_statement(key, False), params))
        case r.RecordingById(recording_id=rec_id):
            stmt = _lookup(t.recordings, "recording_by_id", False, id="id", account_id="acct")
            return _one(Recording, execute(stmt, {"id": rec_id, "acct": acct}))
        case r.ClaimTimer(timer_id=timer_id, kind=kind, ref=ref, due_at=due_at):
            result = execute(_statement("claim_timer", False), {"id": timer_id, "kind": kind, "ref": ref,
                                                                  "due": due_at})
            return lambda: int(result.rowcount) == 1
    raise TypeError(f"no statement for {read!r}")


def _statement(name: str, locked: bool) -> Any:
    return prebuilt(f"read:{name}:{locked}", lambda: _BUILDERS[name](locked))


def _bridge_partner(locked: bool) -> Any:
    c, other = t.calls.c, t.calls.alias("other")
    partner = (select(other.c.bridged_with)
               .where(other.c.call_control_id == bindparam("cid"), other.c.account_id == bindparam("acct"))
               .scalar_subquery())  # fmt: skip
    stmt = select(t.calls).where(c.call_control_id == partner, c.account_id == bindparam("acct"))
    return stmt.with_for_update() if locked else stmt


def _queue_head_call(locked: bool) -> Any:
    e, q, c = t.queue_entries.c, t.queues.c, t.calls.c
    head = (select(e.call_control_id).join(t.queues, q.id == e.queue_id)
            .where(q.account_id == bindparam("acct"), q.name == bindparam("name"))
            .order_by(e.seq).limit(1).scalar_subquery())  # fmt: skip
    stmt = select(t.calls).where(c.call_control_id == head, c.account_id == bindparam("acct"))
    return stmt.with_for_update() if locked else stmt


def _conference_by_name(locked: bool) -> Any:
    c = t.conferences.c
    stmt = (select(t.conferences)
            .where(c.account_id == bindparam("acct"), c.name == bindparam("name"),
                   c.status != ConferenceStatus.COMPLETED.value)
            .order_by(c.created_at.desc()).limit(1))  # fmt: skip
    return stmt.with_for_update() if locked else stmt


def _members(_locked: bool) -> Any:
    c = t.participants.c
    return (select(t.participants).where(c.conference_id == bindparam("conf"), c.status != ParticipantStatus.LEFT.value)
            .order_by(c.created_at, c.id))  # fmt: skip


def _mix(_locked: bool) -> Any:
    c = t.participants.c
    return (select(*(c[name] for name in field_names(MixMember)))
            .where(c.conference_id == bindparam("conf"), c.status != ParticipantStatus.LEFT.value)
            .order_by(c.created_at, c.id))  # fmt: skip


def _participant_of_call(_locked: bool) -> Any:
    c = t.participants.c
    return select(t.participants).where(c.call_control_id == bindparam("cid"),
                                        c.status != ParticipantStatus.LEFT.value)  # fmt: skip


def _participant_by_id_or_label(_locked: bool) -> Any:
    c = t.participants.c
    return (select(t.participants)
            .where(c.conference_id == bindparam("conf"), (c.id == bindparam("key")) | (c.label == bindparam("key")))
            .order_by(c.created_at.desc()).limit(1))  # fmt: skip


def _entries_of_queue_named(_locked: bool) -> Any:
    return (select(t.queue_entries).join(t.queues, t.queues.c.id == t.queue_entries.c.queue_id)
            .where(t.queues.c.account_id == bindparam("acct"), t.queues.c.name == bindparam("name"))
            .order_by(t.queue_entries.c.seq))  # fmt: skip


def _entries_of_queue(_locked: bool) -> Any:
    c = t.queue_entries.c
    return select(t.queue_entries).where(c.queue_id == bindparam("q")).order_by(c.seq)


def _entry_of_call(_locked: bool) -> Any:
    return select(t.queue_entries).where(t.queue_entries.c.call_control_id == bindparam("cid"))


def _open_jobs(column: str) -> Callable[[bool], Any]:
    def build(_locked: bool) -> Any:
        c = t.media_jobs.c
        return (select(t.media_jobs)
                .where(c.account_id == bindparam("acct"), c.kind == bindparam("kind"), c.status != "done",
                       c[column] == bindparam("ref"))
                .order_by(c.created_at))  # fmt: skip

    return build


def _claim_timer(_locked: bool) -> Any:
    c = t.timers.c
    return delete(t.timers).where(and_(c.id == bindparam("id"), c.kind == bindparam("kind"), c.ref == bindparam("ref"),
                                       c.due_at == bindparam("due")))  # fmt: skip


def _live_media_by_name(_locked: bool) -> Any:
    c = t.media_files.c
    live = or_(c.expires_at.is_(None), c.expires_at > bindparam("now"))
    return select(t.media_files).where(and_(c.media_name == bindparam("name"), c.account_id == bindparam("acct"), live))


_BUILDERS: dict[str, Callable[[bool], Any]] = {
    "live_media_by_name": _live_media_by_name,
    "bridge_partner": _bridge_partner,
    "queue_head_call": _queue_head_call,
    "conference_by_name": _conference_by_name,
    "members": _members,
    "mix": _mix,
    "participant_of_call": _participant_of_call,
    "participant_by_id_or_label": _participant_by_id_or_label,
    "entries_of_queue_named": _entries_of_queue_named,
    "entries_of_queue": _entries_of_queue,
    "entry_of_call": _entry_of_call,
    "open_jobs_of_call": _open_jobs("call_control_id"),
    "open_jobs_of_conference": _open_jobs("conference_id"),
    "claim_timer": _claim_timer,
}
