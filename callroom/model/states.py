"""Every lifecycle of the control plane: an Enum of states and an explicit transition table each.

Everything that decides whether a call leg, a conference, a participant or a queued call may move from
one state to another lives here, and nowhere else. A table's entry is the new state, or a ``Refusal``: the
Telnyx error the client gets for that event in that state (as h11's table is its own refusal). An event
with no entry at all raises ``IllegalTransition``, which the API answers as 90107 (the state does not allow
the command).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TypeVar

from callroom.errors import CommandRejected, IllegalTransition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An event a state refuses, with the error the client gets."""

    code: str
    title: str
    detail: str
    pointer: str | None = None

    def error(self) -> CommandRejected:
        return CommandRejected(self.code, self.title, self.detail, self.pointer)


_IN_CONFERENCE = "Call is already in a conference"
_NOT_QUEUED = Refusal("90100", "Call is not in a queue", "This call is not waiting in a queue.")


class CallState(StrEnum):
    RINGING = "ringing"  # exists, not answered yet (incoming: waiting for answer; outgoing: dialling)
    PARKED = "parked"  # answered, connected to nothing
    BRIDGED = "bridged"  # answered, connected to exactly one other leg
    CONFERENCED = "conferenced"  # answered, a participant of a conference
    QUEUED = "queued"  # answered, waiting in a queue, hearing hold audio
    ENDED = "ended"


class CallEvent(StrEnum):
    ANSWER = "answer"
    BRIDGE = "bridge"
    UNBRIDGE = "unbridge"
    JOIN = "join"
    LEAVE = "leave"
    ENQUEUE = "enqueue"
    DEQUEUE = "dequeue"
    HANGUP = "hangup"


CALL_TRANSITIONS: dict[CallState, dict[CallEvent, CallState | Refusal]] = {
    CallState.RINGING: {
        CallEvent.ANSWER: CallState.PARKED,
        CallEvent.DEQUEUE: _NOT_QUEUED,
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.PARKED: {
        CallEvent.BRIDGE: CallState.BRIDGED,
        CallEvent.JOIN: CallState.CONFERENCED,
        CallEvent.ENQUEUE: CallState.QUEUED,
        CallEvent.DEQUEUE: _NOT_QUEUED,
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.BRIDGED: {
        CallEvent.BRIDGE: CallState.BRIDGED,  # re-bridge to another leg
        CallEvent.UNBRIDGE: CallState.PARKED,
        CallEvent.JOIN: CallState.CONFERENCED,  # joining a conference unbridges first
        CallEvent.ENQUEUE: CallState.QUEUED,  # enqueuing a bridged call unbridges it
        CallEvent.DEQUEUE: _NOT_QUEUED,
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.CONFERENCED: {
        CallEvent.LEAVE: CallState.PARKED,
        CallEvent.JOIN: Refusal("90104", _IN_CONFERENCE, "The call is already in a conference.", "/call_control_id"),
        CallEvent.BRIDGE: Refusal(
            "90104", _IN_CONFERENCE, "A conference participant cannot be bridged; leave the conference first."),
        CallEvent.ENQUEUE: Refusal(
            "90104", _IN_CONFERENCE, "A conference participant cannot be enqueued; leave the conference first."),
        CallEvent.DEQUEUE: _NOT_QUEUED,
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.QUEUED: {
        CallEvent.DEQUEUE: CallState.PARKED,  # leave_queue, max_wait_time_secs
        CallEvent.BRIDGE: CallState.BRIDGED,  # dequeued by an agent's bridge
        CallEvent.JOIN: CallState.CONFERENCED,  # taken from the queue into a conference
        CallEvent.ENQUEUE: Refusal("90038", "Call already in a queue", "This call is already waiting in a queue."),
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.ENDED: {},
}  # fmt: skip

ALIVE_CALL_STATES = frozenset(s for s in CallState if s is not CallState.ENDED)
ANSWERED_CALL_STATES = frozenset(ALIVE_CALL_STATES - {CallState.RINGING})


class ConferenceStatus(StrEnum):
    INIT = "init"  # created, not started: everyone who joins is held
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class ConferenceEvent(StrEnum):
    START = "start"
    END = "end"


CONFERENCE_TRANSITIONS: dict[ConferenceStatus, dict[ConferenceEvent, ConferenceStatus]] = {
    ConferenceStatus.INIT: {
        ConferenceEvent.START: ConferenceStatus.IN_PROGRESS,
        ConferenceEvent.END: ConferenceStatus.COMPLETED,
    },
    ConferenceStatus.IN_PROGRESS: {ConferenceEvent.END: ConferenceStatus.COMPLETED},
    ConferenceStatus.COMPLETED: {},
}


class ParticipantStatus(StrEnum):
    JOINING = "joining"
    JOINED = "joined"
    LEFT = "left"


class ParticipantEvent(StrEnum):
    CONNECTED = "connected"
    LEAVE = "leave"


PARTICIPANT_TRANSITIONS: dict[ParticipantStatus, dict[ParticipantEvent, ParticipantStatus]] = {
    ParticipantStatus.JOINING: {
        ParticipantEvent.CONNECTED: ParticipantStatus.JOINED,
        ParticipantEvent.LEAVE: ParticipantStatus.LEFT,
    },
    ParticipantStatus.JOINED: {ParticipantEvent.LEAVE: ParticipantStatus.LEFT},
    ParticipantStatus.LEFT: {},
}


class DequeueReason(StrEnum):
    """Why a call left a queue (``call.dequeued`` ``reason``)."""

    BRIDGED = "bridged"
    BRIDGING_IN_PROCESS = "bridging-in-process"
    HANGUP = "hangup"
    LEAVE = "leave"
    TIMEOUT = "timeout"


S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


def next_state(machine: str, table: dict[S, dict[E, S | Refusal]] | dict[S, dict[E, S]], state: S, event: E) -> S:
    """The state ``event`` leads to from ``state``: the table's refusal (a ``CommandRejected``) or
    ``IllegalTransition`` when there is none."""
    new = allowed(machine, table, state, event)
    log.debug("%s: %s -> %s on %s", machine, state.value, new.value, event.value)
    return new


def allowed(machine: str, table: dict[S, dict[E, S | Refusal]] | dict[S, dict[E, S]], state: S, event: E) -> S:
    """``next_state`` without moving: raises the refusal, or returns where the event would lead."""
    try:
        new = table[state][event]
    except KeyError:
        raise IllegalTransition(machine, state, event) from None
    if isinstance(new, Refusal):
        raise new.error()
    result: S = new
    return result
