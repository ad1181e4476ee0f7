"""The lifecycles' tables, entry by entry: where each event leads from each state, and which refusal (with
its Telnyx error) a state gives instead."""

from __future__ import annotations

import pytest

from callroom.errors import CommandRejected, IllegalTransition
from callroom.model.states import (
    CALL_TRANSITIONS,
    CONFERENCE_TRANSITIONS,
    PARTICIPANT_TRANSITIONS,
    CallEvent,
    CallState,
    ConferenceEvent,
    ConferenceStatus,
    ParticipantEvent,
    ParticipantStatus,
    Refusal,
    allowed,
    next_state,
)

S, E = CallState, CallEvent

MOVES = [
    (S.RINGING, E.ANSWER, S.PARKED), (S.RINGING, E.HANGUP, S.ENDED),
    (S.PARKED, E.BRIDGE, S.BRIDGED), (S.PARKED, E.JOIN, S.CONFERENCED), (S.PARKED, E.ENQUEUE, S.QUEUED),
    (S.BRIDGED, E.BRIDGE, S.BRIDGED), (S.BRIDGED, E.UNBRIDGE, S.PARKED), (S.BRIDGED, E.JOIN, S.CONFERENCED),
    (S.BRIDGED, E.ENQUEUE, S.QUEUED), (S.CONFERENCED, E.LEAVE, S.PARKED), (S.QUEUED, E.DEQUEUE, S.PARKED),
    (S.QUEUED, E.BRIDGE, S.BRIDGED), (S.QUEUED, E.JOIN, S.CONFERENCED), (S.QUEUED, E.HANGUP, S.ENDED),
]  # fmt: skip

REFUSALS = [
    (S.QUEUED, E.ENQUEUE, "90038"), (S.CONFERENCED, E.ENQUEUE, "90104"), (S.CONFERENCED, E.JOIN, "90104"),
    (S.CONFERENCED, E.BRIDGE, "90104"), (S.PARKED, E.DEQUEUE, "90100"), (S.BRIDGED, E.DEQUEUE, "90100"),
    (S.RINGING, E.DEQUEUE, "90100"), (S.CONFERENCED, E.DEQUEUE, "90100"),
]  # fmt: skip


@pytest.mark.parametrize(("state", "event", "new"), MOVES)
def test_each_move(state: CallState, event: CallEvent, new: CallState) -> None:
    assert next_state("call", CALL_TRANSITIONS, state, event) is new


@pytest.mark.parametrize(("state", "event", "code"), REFUSALS)
def test_each_refusal_is_the_error_the_client_gets(state: CallState, event: CallEvent, code: str) -> None:
    with pytest.raises(CommandRejected) as refused:
        allowed("call", CALL_TRANSITIONS, state, event)
    [item] = refused.value.items
    assert item.code == code and item.detail


def test_every_entry_is_a_move_or_a_refusal_and_ended_allows_nothing() -> None:
    listed = {(s, e) for s, e, _ in MOVES} | {(s, e) for s, e, _ in REFUSALS}
    for state, row in CALL_TRANSITIONS.items():
        for event, entry in row.items():
            assert isinstance(entry, CallState | Refusal)
            assert (state, event) in listed or entry is S.ENDED, (state, event)
    for event in CallEvent:
        with pytest.raises(IllegalTransition):
            next_state("call", CALL_TRANSITIONS, S.ENDED, event)


def test_conference_and_participant_tables() -> None:
    C, CE = ConferenceStatus, ConferenceEvent
    assert next_state("conference", CONFERENCE_TRANSITIONS, C.INIT, CE.START) is C.IN_PROGRESS
    assert next_state("conference", CONFERENCE_TRANSITIONS, C.IN_PROGRESS, CE.END) is C.COMPLETED
    with pytest.raises(IllegalTransition):
        next_state("conference", CONFERENCE_TRANSITIONS, C.COMPLETED, CE.END)
    P, PE = ParticipantStatus, ParticipantEvent
    assert next_state("participant", PARTICIPANT_TRANSITIONS, P.JOINING, PE.CONNECTED) is P.JOINED
    assert next_state("participant", PARTICIPANT_TRANSITIONS, P.JOINED, PE.LEAVE) is P.LEFT
    with pytest.raises(IllegalTransition):
        next_state("participant", PARTICIPANT_TRANSITIONS, P.LEFT, PE.LEAVE)
