"""Every lifecycle of the control plane: an Enum of states and an explicit transition table each.

Everything that decides whether a call leg, a conference, a participant or a queued call may move from
one state to another lives here, and nowhere else. An event with no entry in a table raises
``IllegalTransition``; the command handlers translate that into the Telnyx error the client sees.
"""

from __future__ import annotations

import logging
from enum import Enum, StrEnum
from typing import TypeVar

from callroom.errors import IllegalTransition

log = logging.getLogger(__name__)


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


CALL_TRANSITIONS: dict[CallState, dict[CallEvent, CallState]] = {
    CallState.RINGING: {
        CallEvent.ANSWER: CallState.PARKED,
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.PARKED: {
        CallEvent.BRIDGE: CallState.BRIDGED,
        CallEvent.JOIN: CallState.CONFERENCED,
        CallEvent.ENQUEUE: CallState.QUEUED,
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.BRIDGED: {
        CallEvent.BRIDGE: CallState.BRIDGED,  # re-bridge to another leg
        CallEvent.UNBRIDGE: CallState.PARKED,
        CallEvent.JOIN: CallState.CONFERENCED,  # joining a conference unbridges first
        CallEvent.ENQUEUE: CallState.QUEUED,  # enqueuing a bridged call unbridges it
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.CONFERENCED: {
        CallEvent.LEAVE: CallState.PARKED,
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.QUEUED: {
        CallEvent.DEQUEUE: CallState.PARKED,  # leave_queue, max_wait_time_secs
        CallEvent.BRIDGE: CallState.BRIDGED,  # dequeued by an agent's bridge
        CallEvent.JOIN: CallState.CONFERENCED,  # taken from the queue into a conference
        CallEvent.HANGUP: CallState.ENDED,
    },
    CallState.ENDED: {},
}

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


def next_state(machine: str, table: dict[S, dict[E, S]], state: S, event: E) -> S:
    """The state ``event`` leads to from ``state``, or ``IllegalTransition``."""
    try:
        new = table[state][event]
    except KeyError:
        raise IllegalTransition(machine, state, event) from None
    log.debug("%s: %s -> %s on %s", machine, state.value, new.value, event.value)
    return new
