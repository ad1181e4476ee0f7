"""Commands run without a database: records in lists answer the reads, as the store would, and the effects a
command decides are applied to them. Each batch a command asks for is recorded, so a test can say how many
round trips a command would take."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, TypeVar

from callroom.control.world import Steps, World
from callroom.errors import ApiError
from callroom.model import reads as r
from callroom.model.effects import CancelTimer, Delete, Effects, Insert, Schedule, SetParticipantFlags, Update, Webhook
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
)
from callroom.model.states import ConferenceStatus, ParticipantStatus

T = TypeVar("T")
ACCOUNT = "acct"
NOW = 1_000_000.0


@dataclass
class Memory:
    """One account's records (all copied in and out, as rows would be)."""

    calls: list[Call] = field(default_factory=list)
    conferences: list[Conference] = field(default_factory=list)
    participants: list[Participant] = field(default_factory=list)
    queues: list[Queue] = field(default_factory=list)
    entries: list[QueueEntry] = field(default_factory=list)
    apps: list[Application] = field(default_factory=list)
    media: list[MediaFile] = field(default_factory=list)
    jobs: list[MediaJob] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    webhooks: list[Webhook] = field(default_factory=list)
    batches: list[tuple[r.Read, ...]] = field(default_factory=list)
    _seq: int = 0

    # -- running a command --------------------------------------------------------------------------

    def run(self, command: Any, *, now: float = NOW, dialable: tuple[str, ...] = ("virtual:",),
            ring_timeout_secs: float = 0.0, numbers: NumberPlan = NO_NUMBERS) -> tuple[Any, Effects]:  # fmt: skip
        """Run ``command(world)`` to its end; apply its effects unless it raised (then nothing changes)."""
        w = World(ACCOUNT, now, "node-test", dialable=dialable, ring_timeout_secs=ring_timeout_secs, numbers=numbers)
        steps: Steps[Any] = command(w)
        self.batches = []
        try:
            batch = next(steps)
            while True:
                self.batches.append(batch)
                w.take({read: self.answer(read) for read in batch})
                batch = steps.send(None)
        except StopIteration as stop:
            result = stop.value
        effects = w.effects()
        self.apply(effects)
        return result, effects

    def refused(self, command: Any, **options: Any) -> ApiError:
        """The error ``command`` refuses with; the records are checked to be unchanged."""
        before = copy.deepcopy(self._state())
        try:
            self.run(command, **options)
        except ApiError as exc:
            assert self._state() == before, "a refused command changed something"
            return exc
        raise AssertionError("the command was not refused")

    def _state(self) -> tuple[Any, ...]:
        return (self.calls, self.conferences, self.participants, self.queues, self.entries, self.jobs,
                self.recordings, self.timers, self.webhooks)  # fmt: skip

    # -- reads ----------------------------------------------------------------------------------------

    def answer(self, read: r.Read) -> Any:
        match read:
            case r.CallById(call_control_id=cid):
                return self._one(self.calls, call_control_id=cid)
            case r.BridgePartner(call_control_id=cid):
                call = self._one(self.calls, call_control_id=cid)
                return self._one(self.calls, call_control_id=call.bridged_with) if call and call.bridged_with else None
            case r.QueueHeadCall(queue_name=name):
                entries = self.answer(r.EntriesOfQueueNamed(name))
                return self._one(self.calls, call_control_id=entries[0].call_control_id) if entries else None
            case r.ConferenceById(conference_id=conf_id):
                return self._one(self.conferences, id=conf_id)
            case r.ConferenceByName(name=name):
                live = [c for c in self.conferences if c.name == name and c.status is not ConferenceStatus.COMPLETED]
                return copy.deepcopy(max(live, key=lambda c: c.created_at)) if live else None
            case r.MembersOf(conference_id=conf_id):
                return [copy.deepcopy(p) for p in sorted(self.participants, key=lambda p: (p.created_at, p.id))
                        if p.conference_id == conf_id and p.status is not ParticipantStatus.LEFT]
            case r.MixOf(conference_id=conf_id):
                return [MixMember(p.id, p.call_control_id, p.muted, p.on_hold, p.supervisor_role,
                                  list(p.whisper_call_control_ids), p.hold_audio_url, p.hold_media_name, p.node_id)
                        for p in self.answer(r.MembersOf(conf_id))]
            case r.ParticipantOfCall(call_control_id=cid):
                found = [p for p in self.participants if p.call_control_id == cid
                         and p.status is not ParticipantStatus.LEFT]
                return copy.deepcopy(found[0]) if found else None
            case r.ParticipantByIdOrLabel(conference_id=conf_id, id_or_label=key):
                found = [p for p in self.participants if p.conference_id == conf_id and key in (p.id, p.label)]
                return copy.deepcopy(max(found, key=lambda p: p.created_at)) if found else None
            case r.QueueByName(name=name):
                return self._one(self.queues, name=name)
            case r.QueueById(queue_id=queue_id):
                return self._one(self.queues, id=queue_id)
            case r.EntriesOfQueueNamed(name=name):
                q = self._one(self.queues, name=name)
                return self.answer(r.EntriesOfQueue(q.id)) if q else []
            case r.EntriesOfQueue(queue_id=queue_id):
                return [copy.deepcopy(e) for e in sorted(self.entries, key=lambda e: e.seq) if e.queue_id == queue_id]
            case r.EntryOfCall(call_control_id=cid):
                return self._one(self.entries, call_control_id=cid)
            case r.AppById(connection_id=app_id):
                return self._one(self.apps, id=app_id)
            case r.MediaByName(media_name=name):
                return self._one(self.media, media_name=name)
            case r.JobById(job_id=job_id):
                return self._one(self.jobs, id=job_id)
            case r.OpenJobs(kind=kind, call_control_id=cid, conference_id=conf_id):
                return [copy.deepcopy(j) for j in self.jobs if j.kind == kind and j.status != "done"
                        and (j.call_control_id == cid if cid is not None else j.conference_id == conf_id)]
            case r.RecordingById(recording_id=rec_id):
                return self._one(self.recordings, id=rec_id)
            case r.ClaimTimer(kind=kind, ref=ref, due_at=due_at):
                for t in self.timers:
                    if (t.kind, t.ref, t.due_at) == (kind, ref, due_at):
                        self.timers.remove(t)
                        return True
                return False
        raise TypeError(read)

    @staticmethod
    def _one(rows: list[Any], **match: Any) -> Any:
        for row in rows:
            if all(getattr(row, k) == v for k, v in match.items()):
                return copy.deepcopy(row)
        return None

    # -- effects --------------------------------------------------------------------------------------

    def _table(self, rec: Any) -> tuple[list[Any], str]:
        kinds: dict[type[Any], tuple[list[Any], str]] = {
            Call: (self.calls, "call_control_id"), Conference: (self.conferences, "id"),
            Participant: (self.participants, "id"), Queue: (self.queues, "id"),
            QueueEntry: (self.entries, "call_control_id"), MediaJob: (self.jobs, "id"),
            Recording: (self.recordings, "id"), Application: (self.apps, "id"),
        }  # fmt: skip
        return kinds[type(rec)]

    def apply(self, effects: Effects) -> None:
        for w in effects.writes:
            match w:
                case Insert(record=rec):
                    rows, _ = self._table(rec)
                    rec = copy.deepcopy(rec)
                    if isinstance(rec, QueueEntry):
                        self._seq += 1
                        rec.seq = self._seq
                    rows.append(rec)
                case Update(record=rec):
                    rows, key = self._table(rec)
                    for i, row in enumerate(rows):
                        if getattr(row, key) == getattr(rec, key):
                            seq = getattr(row, "seq", None)
                            rows[i] = copy.deepcopy(rec)
                            if seq is not None:
                                rows[i].seq = seq
                case Delete(record=rec):
                    rows, key = self._table(rec)
                    rows[:] = [row for row in rows if getattr(row, key) != getattr(rec, key)]
                case SetParticipantFlags(participant_ids=ids, values=values):
                    for p in self.participants:
                        if p.id in ids and p.status is not ParticipantStatus.LEFT:
                            for k, v in values.items():
                                setattr(p, k, v)
                case Schedule(timer=timer):
                    self.timers.append(timer)
                case CancelTimer(kinds=kinds, ref=ref):
                    self.timers[:] = [t for t in self.timers if t.ref != ref or t.kind not in kinds]
                case Webhook():
                    self.webhooks.append(w)

    # -- looking -------------------------------------------------------------------------------------

    def call(self, cid: str) -> Call:
        found: Call = self._one(self.calls, call_control_id=cid)
        return found

    def events(self, key: str | None = None) -> list[str]:
        return [h.event_type for h in self.webhooks if key is None or h.order_key == key]


# -- records for the tests -----------------------------------------------------------------------------

_ids = iter(range(1, 1_000_000))


def new_call(mem: Memory, state: str = "parked", **fields: Any) -> Call:
    from callroom.model.states import CallState

    n = next(_ids)
    call = Call(call_control_id=f"v3:call-{n}", call_leg_id=f"leg-{n}", call_session_id=f"session-{n}",
                account_id=ACCOUNT, connection_id="app", direction="outgoing", from_="+1", to="virtual:x",
                state=CallState(state), created_at=NOW - 60, node_id="node-test", endpoint="virtual:x",
                answered_at=None if state == "ringing" else NOW - 50)  # fmt: skip
    for k, v in fields.items():
        setattr(call, k, v)
    mem.calls.append(call)
    return copy.deepcopy(call)


def new_app(mem: Memory, **fields: Any) -> Application:
    app = Application(id="app", account_id=ACCOUNT, application_name="app", webhook_event_url="http://hooks/",
                      created_at=NOW, updated_at=NOW)  # fmt: skip
    for k, v in fields.items():
        setattr(app, k, v)
    mem.apps.append(app)
    return app
