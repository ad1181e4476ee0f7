"""What a command decided: the rows to write, the webhooks to send, the timers to set or cancel, the media
instructions, and its result. Computed from what the command read, with no I/O; the store writes the rows,
webhooks and timers in the order given and commits them in one transaction (on PostgreSQL in one round
trip, with the COMMIT), and only then are the media instructions handed to the media plane.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from callroom.errors import ApiError
from callroom.model.media import MediaOp
from callroom.model.records import (
    Application,
    Call,
    Conference,
    MediaJob,
    Participant,
    Queue,
    QueueEntry,
    Recording,
    Timer,
)

Record = Call | Conference | Participant | Queue | QueueEntry | MediaJob | Recording | Application


@dataclass(frozen=True, slots=True)
class Insert:
    record: Record


@dataclass(frozen=True, slots=True)
class Update:
    """``record`` as it is now; ``before``: its field values as read, in field order (``records.snapshot``; the
    store writes the columns that changed)."""

    record: Record
    before: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    record: Record


@dataclass(frozen=True, slots=True)
class LockConference:
    """Take the conference's lock with the writes, before them (PostgreSQL ``FOR UPDATE``), for a command
    that read it unlocked because what it writes does not depend on what it read: a flag change sets the
    same values whatever they were. It then holds the lock only while its writes and COMMIT travel, and
    its media instruction still reaches the media plane in the order of the commands that hold the lock
    (joins, leaves and other flag changes alike)."""

    conference_id: str


@dataclass(frozen=True, slots=True)
class SetParticipantFlags:
    """The same values set on many participants (mute, unmute, hold, unhold): one statement, not one per
    participant."""

    participant_ids: tuple[str, ...]
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Schedule:
    timer: Timer


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """The timers of any of ``kinds`` set for ``ref`` are cancelled (one statement however many kinds)."""

    kinds: tuple[str, ...]
    ref: str


@dataclass(frozen=True, slots=True)
class Webhook:
    """A webhook for the outbox. It goes to ``webhook_url`` or else to the application ``connection_id``'s
    URL (and its failover URL and timeout), as the application stands when the command commits."""

    event_id: str  # the webhook's ``data.id``: the same at every attempt and replay
    event_type: str
    payload: dict[str, Any]
    connection_id: str
    webhook_url: str | None
    method: str
    order_key: str  # events with the same key are delivered in order, numbered 1, 2, ...
    occurred_at: float
    occurred_at_in_payload: bool


Write = Insert | Update | Delete | LockConference | SetParticipantFlags | Schedule | CancelTimer | Webhook


@dataclass(slots=True)
class Effects:
    """Everything a command decided. ``error``: a refusal to answer *after* committing (the command changed
    something it must keep, such as a queue's head removed because it had hung up)."""

    writes: list[Write] = field(default_factory=list)
    media: list[MediaOp] = field(default_factory=list)
    error: ApiError | None = None
    command_result: str | None = None  # kept with the request's command_id (the dialled call's id, say)
    # In a cluster: the node of each call, conference and media job the media instructions name.
    placements: dict[str, str] = field(default_factory=dict)

    @property
    def webhooks(self) -> list[Webhook]:
        return [w for w in self.writes if isinstance(w, Webhook)]

    @property
    def earliest_new_timer(self) -> float | None:
        """When the soonest timer this command set is due (None: it set none)."""
        return min((w.timer.due_at for w in self.writes if isinstance(w, Schedule)), default=None)
