"""The DTMF gathering state machine, with time passed in."""

from __future__ import annotations

import pytest

from callroom.errors import IllegalTransition
from callroom.media.gather import DigitGatherer, Finished, GatherInput, GatherState, Reprompt
from callroom.model.media import AudioSpec, Gather

PROMPT = AudioSpec("url", "http://127.0.0.1/prompt.wav")


def gather(**kw: object) -> Gather:
    base: dict[str, object] = {"job_id": "g", "call_control_id": "v3:x", "prompt": PROMPT}
    base.update(kw)
    return Gather(**base)  # type: ignore[arg-type]


def test_digits_wait_for_the_prompt_then_terminating_digit_ends() -> None:
    g = DigitGatherer(gather(minimum_digits=2, maximum_digits=5), now=0.0, has_prompt=True)
    assert g.state is GatherState.PROMPTING
    assert g.tick(10.0) is None  # no timeout while the prompt plays
    g.prompt_ended(10.0)
    assert g.digit("1", 11.0) is None and g.digit("2", 11.5) is None
    assert g.digit("#", 12.0) == Finished("12", "valid")
    assert g.digit("3", 12.5) is None  # done: later digits are ignored


def test_valid_digits_filter_and_maximum() -> None:
    g = DigitGatherer(gather(valid_digits="123", maximum_digits=3, terminating_digit=""), 0.0, has_prompt=False)
    for d in "19*2":
        assert g.digit(d, 1.0) is None
    assert g.digit("3", 1.1) == Finished("123", "valid")  # 9 and * were not valid, so not gathered


def test_too_few_digits_reprompts_with_the_invalid_prompt_then_gives_up() -> None:
    g = DigitGatherer(gather(minimum_digits=3, maximum_tries=2), 0.0, has_prompt=True)
    g.prompt_ended(1.0)
    g.digit("7", 2.0)
    assert g.digit("#", 2.5) == Reprompt(invalid=True)
    assert g.state is GatherState.PROMPTING and g.digits == ""
    g.prompt_ended(4.0)
    g.digit("8", 5.0)
    assert g.digit("#", 5.5) == Finished("8", "invalid")


def test_initial_timeout_replays_then_times_out_and_inter_digit_timeout_completes() -> None:
    g = DigitGatherer(gather(initial_timeout_millis=1000, maximum_tries=2), 0.0, has_prompt=True)
    g.prompt_ended(1.0)
    assert g.tick(1.9) is None
    assert g.tick(2.0) == Reprompt(invalid=False)
    g.prompt_ended(3.0)
    assert g.tick(4.0) == Finished("", "timeout")

    h = DigitGatherer(gather(inter_digit_timeout_millis=500, minimum_digits=1), 0.0, has_prompt=False)
    h.digit("5", 1.0)
    assert h.tick(1.4) is None
    assert h.tick(1.5) == Finished("5", "valid")


def test_overall_timeout_and_cancel() -> None:
    g = DigitGatherer(gather(timeout_millis=3000, initial_timeout_millis=10000), 0.0, has_prompt=False)
    g.digit("1", 1.0)
    assert g.tick(3.0) == Finished("1", "valid")
    h = DigitGatherer(gather(), 0.0, has_prompt=False)
    assert h.cancel("call_hangup") == Finished("", "call_hangup")
    assert h.cancel() is None


def test_the_transition_table_refuses_moves_it_does_not_list() -> None:
    g = DigitGatherer(gather(), 0.0, has_prompt=False)
    with pytest.raises(IllegalTransition):
        g._move(GatherInput.PROMPT_ENDED)  # waiting, not prompting
