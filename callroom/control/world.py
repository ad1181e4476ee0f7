"""What one command sees and decides: the records it read, the changes it makes, and their effects.

A command is a generator of ``Steps``: ``yield from w.load(read, ...)`` asks the store for a batch of reads
(``model.reads``; the batch is one round trip on PostgreSQL) and resumes once their results are in the
world; it then reads records from the world, changes them in place, and records what it decided
(``insert``/``update``/``delete``, webhooks, timers, media instructions). It returns its result; the store
then writes ``effects()`` and commits. Nothing here does I/O, reads a clock or knows SQL: a command runs the
same against the database or against records in memory (the unit tests).

Records are kept once per identity (a call by its call_control_id, a participant by its id ...), so that a
call reached in two ways (by its id, as a queue's head) is one object, changed once.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, TypeVar

from callroom.errors import ApiError
from callroom.model import reads as r
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
    Write,
)
from callroom.model.media import MediaOp
from callroom.model.numbers import NO_NUMBERS, NumberPlan
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
    Timer,
    field_names,
    new_uuid,
    snapshot,
)
from callroom.model.trunks import NO_TRUNKS, TrunkDirectory

T = TypeVar("T")
Steps = Generator[tuple[r.Read, ...], None, T]
"""A command (or a part of one): yields batches of reads, returns its result."""

_IDENTITY: dict[type[Any], str] = {
    Call: "call_control_id", Conference: "id", Participant: "id", Queue: "id", QueueEntry: "call_control_id",
    MediaJob: "id", Recording: "id", Application: "id", MediaFile: "media_name",
}  # fmt: skip


def identity(rec: Any) -> tuple[type[Any], str]:
    return type(rec), getattr(rec, _IDENTITY[type(rec)])


class NotRead(RuntimeError):
    """A command looked at something it did not read first (a bug in the command, caught by its tests)."""


class World:
    def __init__(self, account_id: str, now: float, node_id: str, *, dialable: tuple[str, ...] = ("virtual:",),
                 ring_timeout_secs: float = 0.0, ahead: bool = True, placing: bool = False,
                 numbers: NumberPlan = NO_NUMBERS, trunks: TrunkDirectory = NO_TRUNKS) -> None:  # fmt: skip
        self.account_id = account_id
        self.now = now
        self.node_id = node_id
        self.dialable = dialable  # destinations this node can ring
        self.numbers = numbers  # where numbers ring on this node (its number plan)
        self.trunks = trunks  # the SIP trunks numbers not in the plan go out through, and the numbers they bring
        self.ring_timeout_secs = ring_timeout_secs  # how long an incoming call may ring (0: for ever)
        self.ahead = ahead  # send reads ahead (they save round trips: PostgreSQL; SQLite has none to save)
        self.placing = placing  # a cluster's: the effects say where each call and conference lives
        self.results: dict[r.Read, Any] = {}
        self._records: dict[tuple[type[Any], str], Any] = {}
        self._before: dict[tuple[type[Any], str], tuple[Any, ...]] = {}
        self._inserted: set[tuple[type[Any], str]] = set()
        self._locked: set[tuple[type[Any], str]] = set()  # records read with their row locked
        self._writes: list[Write] = []
        self._updating: set[tuple[type[Any], str]] = set()
        self.media: list[MediaOp] = []
        self.error: ApiError | None = None  # a refusal answered after committing
        self.command_result: str | None = None

    # -- reading --------------------------------------------------------------------------------------

    def load(self, *reads: r.Read) -> Steps[None]:
        """Ask for the reads not made yet, as one batch (nothing when all are in). A call already read in
        another way (as a bridge partner, a queue's head), locked as asked, is not read again; reads ahead are
        left out unless the world sends them (``ahead``)."""
        missing = tuple(read for read in reads if read not in self.results and not self._has(read)
                        and (self.ahead or not getattr(read, "ahead", False)))
        if missing:
            yield missing

    def _has(self, read: r.Read) -> bool:
        if isinstance(read, r.CallById):
            key = (Call, read.call_control_id)
            return key in self._records and (not read.lock or key in self._locked)
        return False

    def take(self, results: dict[r.Read, Any]) -> None:
        """The store's answers to a batch. A record already in the world keeps its object (the command may
        have changed it); one read again without having changed is refreshed."""
        for read, value in results.items():
            if isinstance(value, list):
                if value and type(value[0]) in _IDENTITY:  # (views such as a mix's members are not kept)
                    value = [self._adopt(v) for v in value]
            elif value is not None and not isinstance(value, bool | dict):
                value = self._adopt(value)
                if getattr(read, "lock", True):
                    self._locked.add(identity(value))
            self.results[read] = value

    def _adopt(self, rec: Any) -> Any:
        key = identity(rec)
        known = self._records.get(key)
        if known is None:
            self._records[key] = rec
            self._before[key] = snapshot(rec)
            return rec
        if key not in self._inserted and snapshot(known) == self._before.get(key):
            fresh = snapshot(rec)  # unchanged here: take the fresher read, same object
            for name, value in zip(field_names(type(rec)), fresh, strict=True):
                setattr(known, name, value)
            self._before[key] = fresh
        return known

    def result(self, read: r.Read) -> Any:
        try:
            return self.results[read]
        except KeyError:
            raise NotRead(f"{read!r} was not read") from None

    def call(self, call_control_id: str) -> Call | None:
        """The call, however it was read (by id, as a bridge partner, as a queue's head)."""
        found: Call | None = self._records.get((Call, call_control_id))
        if found is not None:
            return found
        for read in (r.CallById(call_control_id), r.CallById(call_control_id, lock=False)):
            if read in self.results:
                return None
        raise NotRead(f"call {call_control_id!r} was not read")

    def members(self, conference_id: str) -> list[Participant]:
        """The conference's present participants as they are now in this command (joined and left ones
        counted), in joining order."""
        listed: list[Participant] = self.result(r.MembersOf(conference_id))
        return listed

    # -- changing -------------------------------------------------------------------------------------

    def insert(self, rec: Record) -> None:
        key = identity(rec)
        self._records[key] = rec
        self._inserted.add(key)
        self._writes.append(Insert(rec))
        if isinstance(rec, Conference):
            self.results[r.MembersOf(rec.id)] = []  # a new conference has nobody in it
        elif isinstance(rec, Participant):
            members = self.results.get(r.MembersOf(rec.conference_id))
            if members is not None:
                members.append(rec)
            self.results[r.ParticipantOfCall(rec.call_control_id)] = rec
        elif isinstance(rec, QueueEntry):
            self.results[r.EntryOfCall(rec.call_control_id)] = rec

    def update(self, rec: Record) -> None:
        """``rec`` (read or inserted by this command) is to be written as it stands at the end."""
        key = identity(rec)
        if key in self._inserted or key in self._updating:
            return
        self._updating.add(key)
        self._writes.append(Update(rec, self._before.get(key) or snapshot(rec)))

    def delete(self, rec: Record) -> None:
        key = identity(rec)
        self._writes.append(Delete(rec))
        self._records.pop(key, None)
        if isinstance(rec, QueueEntry):
            self.results[r.EntryOfCall(rec.call_control_id)] = None
            for read, value in self.results.items():
                if isinstance(read, r.EntriesOfQueue | r.EntriesOfQueueNamed) and isinstance(value, list):
                    self.results[read] = [e for e in value if e.call_control_id != rec.call_control_id]

    def participant_left(self, p: Participant) -> None:
        """``p`` has left: no longer among its conference's members in this command."""
        members = self.results.get(r.MembersOf(p.conference_id))
        if isinstance(members, list):
            self.results[r.MembersOf(p.conference_id)] = [m for m in members if m.id != p.id]
        if self.results.get(r.ParticipantOfCall(p.call_control_id)) is p:
            self.results[r.ParticipantOfCall(p.call_control_id)] = None

    def lock_with_writes(self, conf: Conference) -> None:
        """Lock ``conf`` (read unlocked) with the writes, ahead of them (``effects.LockConference``)."""
        self._writes.append(LockConference(conf.id))

    def set_participant_flags(self, ps: Sequence[Participant | MixMember], values: dict[str, Any]) -> None:
        """The same ``values`` on many participants (one statement); the records change here too."""
        for p in ps:  # (a later update of one of them writes these columns again: the same values)
            kept = field_names(type(p))
            for name, value in values.items():
                if name in kept:  # (a mix's view of a participant has no updated_at)
                    setattr(p, name, value)
        if ps:
            self._writes.append(SetParticipantFlags(tuple(p.id for p in ps), dict(values)))

    def schedule(self, kind: str, ref: str, due_at: float) -> None:
        self._writes.append(Schedule(Timer(kind=kind, ref=ref, due_at=due_at, account_id=self.account_id)))

    def cancel(self, kind: str | tuple[str, ...], ref: str) -> None:
        """Cancel ``ref``'s timers of ``kind`` (one or several). Joined to an earlier cancel of the same
        ``ref`` in this command, so that one statement deletes them, unless a timer of ``ref`` was set since."""
        kinds = (kind,) if isinstance(kind, str) else kind
        for i in range(len(self._writes) - 1, -1, -1):
            write = self._writes[i]
            if isinstance(write, Schedule) and write.timer.ref == ref:
                break
            if isinstance(write, CancelTimer) and write.ref == ref:
                joined = write.kinds + tuple(k for k in kinds if k not in write.kinds)
                self._writes[i] = CancelTimer(joined, ref)
                return
        self._writes.append(CancelTimer(kinds, ref))

    def emit(self, event_type: str, payload: dict[str, Any], *, connection_id: str, webhook_url: str | None,
             method: str, order_key: str, occurred_at_in_payload: bool) -> None:  # fmt: skip
        self._writes.append(Webhook(new_uuid(), event_type, payload, connection_id, webhook_url, method, order_key,
                                    self.now, occurred_at_in_payload))

    def effects(self) -> Effects:
        placements = self.placements() if self.placing and self.media else {}
        return Effects(self._writes, self.media, self.error, self.command_result, placements)

    def placements(self) -> dict[str, str]:
        """The node each call, conference and media job this command saw lives on (its home, for a
        conference): where a cluster sends the media instructions about it. Unknown ids are this node's."""
        out: dict[str, str] = {}
        jobs: list[MediaJob] = []
        for (kind, key), rec in self._records.items():
            if kind is Call or kind is Conference:
                if rec.node_id:
                    out[key] = rec.node_id
            elif kind is Participant:
                if rec.node_id:
                    out.setdefault(rec.call_control_id, rec.node_id)
            elif kind is MediaJob:
                jobs.append(rec)
        for read, value in self.results.items():
            if isinstance(read, r.MixOf) and isinstance(value, list):
                for member in value:
                    if member.node_id:
                        out.setdefault(member.call_control_id, member.node_id)
        for job in jobs:
            owner = job.conference_id if job.scope == "conference" else job.call_control_id
            where = out.get(owner or "")
            if where:
                out[job.id] = where
        return out
