"""What a command may ask the store for: one frozen dataclass per kind of read, each a hashable key.

A command is a generator (``control.world.Steps``): it yields a batch of reads, the store answers them all at
once (on PostgreSQL one round trip: every statement is sent before any result is looked at) and puts the
results in the command's ``World``; the command then decides, or asks for another batch when what it must
read depends on what it has read (a conference's members once the conference is known by its name, say).

Reads run in the command's account: nothing here can name another account's rows. ``lock``: the row is
locked until the command commits (PostgreSQL ``FOR UPDATE``; SQLite's one writer holds the whole database).
Reads that name a row through another (``BridgePartner``, ``QueueHeadCall``) are resolved by the store in
the same statement, so that they travel in the first batch; they are reads *ahead* (``ahead = True``), sent
only where a batch saves round trips (PostgreSQL), since the command reads the row by id when it needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from callroom.model.records import Timer


@dataclass(frozen=True, slots=True)
class CallById:
    """-> ``Call | None``"""

    call_control_id: str
    lock: bool = True


@dataclass(frozen=True, slots=True)
class BridgePartner:
    """The call that ``call_control_id`` is bridged with, locked (read after that call's own lock, so the
    locks keep their order) -> ``Call | None``. A read *ahead*: it saves a round trip, and a command that
    needs the partner reads it by id anyway (a no-op when this read brought it)."""

    ahead: ClassVar[bool] = True
    call_control_id: str


@dataclass(frozen=True, slots=True)
class QueueHeadCall:
    """The call at the head of the queue ``queue_name``, locked (read after the queue's lock) -> ``Call |
    None``. A read ahead, as ``BridgePartner``."""

    ahead: ClassVar[bool] = True
    queue_name: str


@dataclass(frozen=True, slots=True)
class ConferenceById:
    """-> ``Conference | None``"""

    conference_id: str
    lock: bool = True


@dataclass(frozen=True, slots=True)
class ConferenceByName:
    """The account's active (not completed) conference of that name -> ``Conference | None``"""

    name: str
    lock: bool = True


@dataclass(frozen=True, slots=True)
class MembersOf:
    """A conference's present participants (not left), in joining order -> ``list[Participant]``"""

    conference_id: str


@dataclass(frozen=True, slots=True)
class MixOf:
    """A conference's present participants as the mix needs them, in joining order -> ``list[MixMember]``
    (a view: a command changes them only through ``World.set_participant_flags``)"""

    conference_id: str


@dataclass(frozen=True, slots=True)
class ParticipantOfCall:
    """The present participant a call is -> ``Participant | None``"""

    call_control_id: str


@dataclass(frozen=True, slots=True)
class ParticipantByIdOrLabel:
    """A conference's participant (present or not) by id or label, the latest -> ``Participant | None``"""

    conference_id: str
    id_or_label: str


@dataclass(frozen=True, slots=True)
class QueueByName:
    """-> ``Queue | None``"""

    name: str
    lock: bool = True


@dataclass(frozen=True, slots=True)
class QueueById:
    """-> ``Queue | None``"""

    queue_id: str


@dataclass(frozen=True, slots=True)
class EntriesOfQueueNamed:
    """The entries of the queue ``name``, in arrival order -> ``list[QueueEntry]``"""

    name: str


@dataclass(frozen=True, slots=True)
class EntriesOfQueue:
    """-> ``list[QueueEntry]`` in arrival order"""

    queue_id: str


@dataclass(frozen=True, slots=True)
class EntryOfCall:
    """-> ``QueueEntry | None``"""

    call_control_id: str


@dataclass(frozen=True, slots=True)
class AppById:
    """-> ``Application | None``"""

    connection_id: str


@dataclass(frozen=True, slots=True)
class MediaByName:
    """An uploaded media file -> ``MediaFile | None``"""

    media_name: str


@dataclass(frozen=True, slots=True)
class JobById:
    """-> ``MediaJob | None``"""

    job_id: str


@dataclass(frozen=True, slots=True)
class OpenJobs:
    """The media jobs not done of ``kind`` on a call or a conference, oldest first -> ``list[MediaJob]``"""

    kind: str
    call_control_id: str | None = None
    conference_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingById:
    """-> ``Recording | None``"""

    recording_id: str


@dataclass(frozen=True, slots=True)
class ClaimTimer:
    """Take a due timer: True if this command now owns it (the row is deleted with the command's commit),
    False if another worker took it or it was cancelled meanwhile -> ``bool``. Matched on every field, not
    the id alone: SQLite may give a new timer the id of one just deleted."""

    timer_id: int
    kind: str
    ref: str
    due_at: float

    @classmethod
    def of(cls, timer: Timer) -> ClaimTimer:
        return cls(timer.id, timer.kind, timer.ref, timer.due_at)


Read = (
    CallById | BridgePartner | QueueHeadCall | ConferenceById | ConferenceByName | MembersOf | MixOf | ParticipantOfCall
    | ParticipantByIdOrLabel | QueueByName | QueueById | EntriesOfQueueNamed | EntriesOfQueue | EntryOfCall | AppById
    | MediaByName | JobById | OpenJobs | RecordingById | ClaimTimer
)  # fmt: skip
