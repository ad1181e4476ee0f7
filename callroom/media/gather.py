"""Collecting DTMF digits for ``gather_using_audio`` / ``gather_using_speak``: a pure state machine.

Time is passed in (seconds). The prompt plays first; waiting starts when it ends (or at once without
a prompt). The gather ends on the terminating digit, on ``maximum_digits``, after
``inter_digit_timeout_millis`` of silence following a digit, after ``initial_timeout_millis`` with no
digit at all (then the prompt is played again while tries remain), or at ``timeout_millis`` overall.
Digits outside ``valid_digits`` are ignored. Fewer than ``minimum_digits`` makes the result
``invalid`` (the invalid prompt, then the prompt, are played again while tries remain).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from callroom.model.media import Gather
from callroom.model.states import next_state


class GatherState(StrEnum):
    PROMPTING = "prompting"
    WAITING = "waiting"
    DONE = "done"


class GatherInput(StrEnum):
    PROMPT_ENDED = "prompt_ended"
    REPROMPT = "reprompt"
    FINISH = "finish"


TRANSITIONS: dict[GatherState, dict[GatherInput, GatherState]] = {
    GatherState.PROMPTING: {
        GatherInput.PROMPT_ENDED: GatherState.WAITING,
        GatherInput.FINISH: GatherState.DONE,
    },
    GatherState.WAITING: {
        GatherInput.REPROMPT: GatherState.PROMPTING,
        GatherInput.FINISH: GatherState.DONE,
    },
    GatherState.DONE: {},
}


@dataclass(frozen=True, slots=True)
class Reprompt:
    """Play the prompt again (after the invalid prompt when ``invalid``)."""

    invalid: bool


@dataclass(frozen=True, slots=True)
class Finished:
    digits: str
    status: str  # valid | invalid | timeout | cancelled | call_hangup


Outcome = Reprompt | Finished | None


class DigitGatherer:
    def __init__(self, op: Gather, now: float, has_prompt: bool) -> None:
        self.op = op
        self.started = now
        self.digits = ""
        self.tries = 1
        self.state = GatherState.PROMPTING if has_prompt else GatherState.WAITING
        self.waiting_since = now
        self.last_digit_at: float | None = None

    def _move(self, event: GatherInput) -> None:
        self.state = next_state("gather", TRANSITIONS, self.state, event)

    def prompt_ended(self, now: float) -> Outcome:
        if self.state is GatherState.PROMPTING:
            self._move(GatherInput.PROMPT_ENDED)
            self.waiting_since = now
        return None

    def digit(self, digit: str, now: float) -> Outcome:
        if self.state is GatherState.DONE:
            return None
        op = self.op
        if op.terminating_digit and digit == op.terminating_digit:
            return self._end_of_input()
        if digit not in op.valid_digits:
            return None
        self.digits += digit
        self.last_digit_at = now
        if self.state is GatherState.PROMPTING:
            self._move(GatherInput.PROMPT_ENDED)
        if len(self.digits) >= op.maximum_digits:
            return self._finish("valid")
        return None

    def tick(self, now: float) -> Outcome:
        if self.state is GatherState.DONE:
            return None
        op = self.op
        if now - self.started >= op.timeout_millis / 1000:
            return self._finish("valid" if len(self.digits) >= op.minimum_digits and self.digits else "timeout")
        if self.state is not GatherState.WAITING:
            return None
        if self.last_digit_at is not None:
            if now - self.last_digit_at >= op.inter_digit_timeout_millis / 1000:
                return self._end_of_input()
        elif now - self.waiting_since >= op.initial_timeout_millis / 1000:
            return self._retry_or(status="timeout", invalid=False)
        return None

    def _end_of_input(self) -> Outcome:
        if len(self.digits) >= self.op.minimum_digits:
            return self._finish("valid")
        return self._retry_or(status="invalid", invalid=True)

    def _retry_or(self, *, status: str, invalid: bool) -> Outcome:
        if self.tries < self.op.maximum_tries:
            self.tries += 1
            self.digits = ""
            self.last_digit_at = None
            self._move(GatherInput.REPROMPT)
            return Reprompt(invalid)
        return self._finish(status)

    def _finish(self, status: str) -> Finished:
        self._move(GatherInput.FINISH)
        return Finished(self.digits, status)

    def cancel(self, status: str = "cancelled") -> Finished | None:
        if self.state is GatherState.DONE:
            return None
        return self._finish(status)
