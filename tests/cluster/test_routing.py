"""Which node carries out each media instruction (``cluster/routing.py``)."""

from __future__ import annotations

import typing

import pytest

from callroom.cluster.routing import Unroutable, named, route
from callroom.model import media as m

HERE = "n1"
PLACES = {"a": "n1", "b": "n2", "c": "n3", "conf": "n2", "job-rec": "n3", "job-conf": "n2"}
TONE = m.AudioSpec("url", "http://127.0.0.1/a.wav")


def member(cid: str) -> m.ConferenceMember:
    return m.ConferenceMember(cid, False, False, "none")


def test_a_calls_instructions_go_to_its_node_and_a_conferences_to_its_home() -> None:
    ops: list[m.MediaOp] = [
        m.Answer("b"), m.Park("c"), m.HoldInQueue("a", "q"), m.Release("b"),
        m.ConferenceMix("conf", (member("a"), member("b"), member("c"))), m.ConferenceClosed("conf"),
        m.Play("job-1", TONE, conference_id="conf"), m.StartRecording("job-rec", "/r", "wav", "single", "c"),
        m.ControlRecording("job-rec", "pause"), m.Gather("job-g", "b"), m.StopGather("b"),
    ]  # fmt: skip
    got = route(ops, PLACES, HERE)
    assert got == {
        "n2": [ops[0], ops[3], ops[4], ops[5], ops[6], ops[9], ops[10]],
        "n3": [ops[1], ops[7], ops[8]],
        "n1": [ops[2]],
    }


def test_unplaced_ids_are_the_asking_nodes_own() -> None:
    ring = m.Ring("new", "virtual:x", "+1", "+2", 30)
    assert route([ring, m.Answer("unknown")], PLACES, HERE) == {"n1": [ring, m.Answer("unknown")]}


def test_a_bridge_goes_to_its_first_calls_node() -> None:
    assert route([m.Bridge("b", "a")], PLACES, HERE) == {"n2": [m.Bridge("b", "a")]}


def test_instructions_naming_calls_on_several_nodes_are_split_when_they_can_be() -> None:
    got = route([m.SendDtmf(("a", "b", "c", "a2"), "12"), m.StopPlay(("b", "c"), which="current")], PLACES, HERE)
    assert got == {
        "n1": [m.SendDtmf(("a", "a2"), "12")],
        "n2": [m.SendDtmf(("b",), "12"), m.StopPlay(("b",), which="current")],
        "n3": [m.SendDtmf(("c",), "12"), m.StopPlay(("c",), which="current")],
    }


def test_stopping_a_conferences_playback_goes_home_and_to_each_named_calls_node() -> None:
    op = m.StopPlay(("a", "c"), conference_id="conf")
    got = route([op], PLACES, HERE)
    assert got["n2"] == [op]
    assert got["n1"] == [m.StopPlay(("a",))]
    assert got["n3"] == [m.StopPlay(("c",))]


def test_one_playback_to_calls_on_two_nodes_is_refused_before_anything_moves() -> None:
    with pytest.raises(Unroutable) as refused:
        route([m.Park("a"), m.Play("job", TONE, ("a", "b"))], PLACES, HERE)
    assert refused.value.option == "target_legs"
    assert route([m.Play("job", TONE, ("b", "b"))], PLACES, HERE) == {"n2": [m.Play("job", TONE, ("b", "b"))]}


def test_every_instruction_has_a_route() -> None:
    """A new kind of instruction must be given a place in ``route`` (it would be dropped otherwise)."""
    samples: list[m.MediaOp] = [
        m.Ring("a", "virtual:x", "+1", "+2", 30), m.Answer("a"), m.Reject("a", 486), m.Release("a"), m.Park("a"),
        m.Bridge("a", "b"), m.Supervise("s", "a", "whisper"), m.SipRequestInDialog("a", "INFO", "text/plain", "hi"),
        m.HoldInQueue("a", "q"), m.ConferenceMix("conf", ()), m.ConferenceClosed("conf"),
        m.MemberFlags("conf", ("a",), muted=True),
        m.Play("j", TONE, ("a",)), m.StopPlay(("a",)), m.StartRecording("j", "/r", "wav", "single", "a"),
        m.ControlRecording("j", "stop"), m.Gather("j", "a"), m.StopGather("a"), m.SendDtmf(("a",), "1"),
        m.StartStream("s", "a", "ws://x/"), m.StopStream("a"), m.StartFork("f", "a", "udp:x:1"), m.StopFork("a"),
        m.DetectMachine("d", "a", "detect"), m.StartTranscription("t", "a"), m.StopTranscription("a"),
    ]  # fmt: skip
    assert {type(op) for op in samples} == set(typing.get_args(m.MediaOp))
    for op in samples:
        routed = route([op], PLACES, HERE)
        assert sum(len(v) for v in routed.values()) == 1, op


def test_instructions_that_place_calls_name_them() -> None:
    assert named(m.Park("a")) == ("a",)
    assert named(m.Bridge("a", "b")) == ("a", "b")
    assert named(m.Release("a")) == ("a",)
    assert named(m.HoldInQueue("a", "q")) == ("a",)
    assert named(m.Answer("a")) == ()
    assert named(m.ConferenceMix("conf", (member("a"),))) == ()
