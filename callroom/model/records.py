"""The control plane's records: plain dataclasses, no I/O.

Times are Unix seconds (float) throughout; the API layer formats them as ISO 8601.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import operator
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from callroom.model.states import (
    ALIVE_CALL_STATES,
    CallState,
    ConferenceStatus,
    ParticipantStatus,
)

CONFERENCE_MAX_LIFETIME_SECS = 4 * 3600


def new_uuid() -> str:
    """A random (version 4) UUID as text: ``str(uuid.uuid4())`` without the UUID object, ~3x faster
    (every webhook event, participant and queue entry gets one)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_call_control_id() -> str:
    return "v3:" + base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")


def new_application_id() -> str:
    return str(secrets.randbelow(9 * 10**18) + 10**18)


@dataclass(slots=True)
class Account:
    id: str
    name: str
    created_at: float


@dataclass(slots=True)
class Application:
    """A Call Control Application (a "connection"): where a call's webhooks go."""

    id: str
    account_id: str
    application_name: str
    webhook_event_url: str
    created_at: float
    updated_at: float
    webhook_event_failover_url: str | None = None
    webhook_timeout_secs: int | None = None
    webhook_api_version: str = "2"
    active: bool = True
    anchorsite_override: str = "Latency"
    dtmf_type: str = "RFC 2833"
    first_command_timeout: bool = False
    first_command_timeout_secs: int = 30
    inbound: dict[str, Any] = field(default_factory=dict)
    outbound: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    call_cost_in_webhooks: bool = False
    redact_dtmf_debug_logging: bool = False


@dataclass(slots=True)
class Call:
    """One call leg."""

    call_control_id: str
    call_leg_id: str
    call_session_id: str
    account_id: str
    connection_id: str
    direction: str  # "incoming" | "outgoing"
    from_: str
    to: str
    state: CallState
    created_at: float
    node_id: str
    endpoint: str  # where the far end is: "virtual:<spec>" or a SIP URI
    client_state: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    hangup_cause: str | None = None
    hangup_source: str | None = None
    sip_hangup_cause: str | None = None
    bridged_with: str | None = None
    conference_id: str | None = None
    queue_id: str | None = None
    park_after_unbridge: str | None = None
    hold_after_unbridge: bool = False
    webhook_url: str | None = None
    webhook_url_method: str = "POST"
    timeout_secs: int = 30
    time_limit_secs: int = 14400
    # Join this conference as soon as the dialled leg answers (dial's ``conference_config``).
    conference_config: dict[str, Any] | None = None
    link_to: str | None = None
    bridge_on_answer: bool = False
    # What the leg does once it answers and the legs it is tied to (``control/links.py``): ``transfer_of``
    # (a transfer's new leg: the call it is for), ``transfer_to`` (a call being transferred: the leg ringing
    # for it), ``ring_group`` (the other legs of a dial to several destinations), ``audio``, ``digits``,
    # ``record``.
    plan: dict[str, Any] | None = None

    @property
    def is_alive(self) -> bool:
        return self.state in ALIVE_CALL_STATES


@dataclass(slots=True)
class Conference:
    id: str
    account_id: str
    name: str
    status: ConferenceStatus
    connection_id: str
    creator_call_control_id: str
    creator_call_session_id: str
    created_at: float
    updated_at: float
    expires_at: float
    region: str = "US"
    beep_enabled: str = "never"
    comfort_noise: bool = True
    max_participants: int = 250
    hold_audio_url: str | None = None
    hold_media_name: str | None = None
    client_state: str | None = None
    end_reason: str | None = None
    ended_by_call_control_id: str | None = None
    ended_by_call_session_id: str | None = None
    ended_at: float | None = None
    node_id: str | None = None  # its home: the node whose engine mixes it (that of the call that created it)

    @property
    def is_active(self) -> bool:
        return self.status is not ConferenceStatus.COMPLETED


@dataclass(slots=True)
class Participant:
    id: str
    conference_id: str
    account_id: str
    call_control_id: str
    call_leg_id: str
    call_session_id: str
    connection_id: str
    status: ParticipantStatus
    created_at: float
    updated_at: float
    label: str | None = None
    muted: bool = False
    on_hold: bool = False  # held by the API (hold action or join with hold=true)
    supervisor_role: str = "none"
    whisper_call_control_ids: list[str] = field(default_factory=list)
    end_conference_on_exit: bool = False
    soft_end_conference_on_exit: bool = False
    start_conference_on_enter: bool = False
    beep_enabled: str | None = None
    hold_audio_url: str | None = None
    hold_media_name: str | None = None
    left_at: float | None = None
    node_id: str | None = None  # where its call lives (the call's node_id)


@dataclass(slots=True)
class MixMember:
    """What the mix and a flag change (mute, unmute, hold, unhold) need of a present participant: a narrower
    read than ``Participant`` (a flag change reads every member of its conference)."""

    id: str
    call_control_id: str
    muted: bool
    on_hold: bool
    supervisor_role: str
    whisper_call_control_ids: list[str]
    hold_audio_url: str | None
    hold_media_name: str | None
    node_id: str | None


@dataclass(slots=True)
class Queue:
    id: str
    account_id: str
    name: str
    max_size: int
    created_at: float
    updated_at: float


@dataclass(slots=True)
class QueueEntry:
    """A call waiting in (or, with keep_after_hangup, still listed in) a queue."""

    queue_id: str
    account_id: str
    call_control_id: str
    call_leg_id: str
    call_session_id: str
    connection_id: str
    from_: str
    to: str
    enqueued_at: float
    seq: int = 0  # arrival order, assigned by the store
    keep_after_hangup: bool = False
    max_wait_time_secs: int | None = None
    is_alive: bool = True

    def wait_time_secs(self, now: float) -> int:
        return max(0, int(now - self.enqueued_at))


@dataclass(slots=True)
class OutboundEvent:
    """A webhook to deliver, written to the outbox in the same transaction as the change it reports."""

    id: str
    account_id: str
    event_type: str
    occurred_at: float
    payload: dict[str, Any]
    url: str | None
    failover_url: str | None
    method: str
    timeout_secs: float
    order_key: str  # events with the same key are delivered in order
    # Envelope variant: conference.* events other than participant joined/left carry occurred_at in the
    # payload rather than beside it (see the SDK models).
    occurred_at_in_payload: bool = False


@dataclass(slots=True)
class Timer:
    """Something the control plane must do at ``due_at`` even if the node restarts meanwhile."""

    kind: str
    ref: str
    due_at: float
    account_id: str
    id: int = 0


@dataclass(slots=True)
class MediaJob:
    """A playback, speech, recording or gather the media plane is carrying out for the control plane.

    Kept in the database so that the facts the media plane reports later (started, ended, saved)
    turn into the right webhooks, with the right client_state, even after a restart of the API.
    """

    id: str
    account_id: str
    kind: str  # playback | speak | record | gather | stream | fork | amd
    scope: str  # call | conference | participants
    created_at: float
    updated_at: float
    call_control_id: str | None = None
    conference_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"


@dataclass(slots=True)
class Recording:
    id: str
    account_id: str
    source: str  # call | conference
    channels: str
    format: str
    file_name: str
    status: str
    recording_started_at: float
    created_at: float
    updated_at: float
    call_control_id: str | None = None
    call_leg_id: str | None = None
    call_session_id: str | None = None
    conference_id: str | None = None
    connection_id: str | None = None
    path: str | None = None
    size_bytes: int | None = None
    duration_millis: int | None = None
    recording_ended_at: float | None = None


@dataclass(slots=True)
class MediaFile:
    account_id: str
    media_name: str
    path: str
    content_type: str
    size_bytes: int
    created_at: float
    updated_at: float
    expires_at: float | None = None


_FIELDS: dict[type[Any], tuple[str, ...]] = {}
_SNAPSHOTS: dict[type[Any], tuple[tuple[str, ...], Any, tuple[int, ...]]] = {}


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """A record class's field names, in order (cached)."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def snapshot(rec: Any) -> tuple[Any, ...]:
    """A record's field values as they are now, in field order, its lists and dicts copied (a command may
    change them in place, one level deep): what an update compares against to write only the columns that
    changed. One C-level read of every field (``attrgetter``) and a copy of the few container fields: about a
    microsecond a record (every record a command reads is snapshotted)."""
    plan = _SNAPSHOTS.get(type(rec))
    if plan is None:
        names = field_names(type(rec))
        containers = tuple(i for i, f in enumerate(dataclasses.fields(type(rec)))
                           if str(f.type).startswith(("list", "dict")))  # fmt: skip
        plan = _SNAPSHOTS[type(rec)] = (names, operator.attrgetter(*names), containers)
    _names, read, containers = plan
    values: tuple[Any, ...] = read(rec)
    if not containers:
        return values
    copied = list(values)
    for i in containers:
        if copied[i] is not None:
            copied[i] = copy.copy(copied[i])
    return tuple(copied)


def field_index(cls: type[Any]) -> dict[str, int]:
    """Where each field is in a ``snapshot`` of a ``cls`` record."""
    index = _INDEXES.get(cls)
    if index is None:
        index = _INDEXES[cls] = {name: i for i, name in enumerate(field_names(cls))}
    return index


_INDEXES: dict[type[Any], dict[str, int]] = {}


__all__ = [
    "CONFERENCE_MAX_LIFETIME_SECS",
    "Account",
    "Application",
    "Call",
    "CallState",
    "Conference",
    "ConferenceStatus",
    "MediaFile",
    "MediaJob",
    "MixMember",
    "OutboundEvent",
    "Participant",
    "ParticipantStatus",
    "Queue",
    "QueueEntry",
    "Recording",
    "Timer",
    "field_index",
    "field_names",
    "new_application_id",
    "new_call_control_id",
    "new_uuid",
    "snapshot",
]
