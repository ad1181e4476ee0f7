"""Three node processes, one cluster (PostgreSQL + NATS): calls whose legs live on different nodes, driven
through the official SDK with each command sent to another node, sound as they would on one node. The
checks measure the audio each virtual phone heard (per-frequency levels), as the single-node tests do."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
import telnyx

from tests.media.audio import tone_level
from tests.support.cluster import Cluster
from tests.support.polling import until

pytestmark = pytest.mark.postgres

HEARD = 1500.0  # a tone sent at 6,000 peak arrives well above this
SILENT = 150.0


def _levels(trio: Cluster, node: int, cid: str, freqs: dict[str, float]) -> dict[str, float]:
    heard = trio.heard(node, cid, 0.4)
    assert len(heard) >= 2400, "the phone should have heard at least 0.3 s"
    return {name: tone_level(heard, f) for name, f in freqs.items()}


def _until(check: Callable[[], None], timeout: float = 4.0) -> None:
    until(check, timeout)


def test_a_conference_with_legs_on_three_nodes(trio: Cluster) -> None:
    freqs = {"A": 1900.0, "B": 2500.0, "C": 500.0, "W": 1300.0}
    node_of = {"A": 0, "B": 1, "C": 2, "W": 0}
    legs = {n: trio.dial(node_of[n], f"{n}{uuid.uuid4().hex[:4]}", f"answer_after=0;tone={int(f)}")
            for n, f in freqs.items()}  # fmt: skip
    # mixed on n1, the node of the call that creates it; every other command reaches another node
    conf = trio.client(1).conferences.create(call_control_id=legs["B"], name=f"three-{uuid.uuid4().hex}",
                                             comfort_noise=False)  # fmt: skip
    assert conf.data is not None
    cid = conf.data.id
    trio.client(2).conferences.actions.join(cid, call_control_id=legs["A"])
    trio.client(0).conferences.actions.join(cid, call_control_id=legs["C"])
    trio.client(2).conferences.actions.join(cid, call_control_id=legs["W"], supervisor_role="whisper",
                                            whisper_call_control_ids=[legs["A"]])  # fmt: skip

    def everyone_hears_the_others() -> None:
        heard = {n: _levels(trio, (node_of[n] + 1) % 3, legs[n], freqs) for n in ("A", "B", "C")}
        for n in ("A", "B", "C"):
            assert heard[n][n] < SILENT, f"{n} hears itself"
            for other in ("A", "B", "C"):
                if other != n:
                    assert heard[n][other] > HEARD, f"{n} does not hear {other}: {heard}"
        assert heard["A"]["W"] > HEARD, "the whisper does not reach its target on another node"
        assert heard["B"]["W"] < SILENT and heard["C"]["W"] < SILENT, "the whisper reaches others"

    _until(everyone_hears_the_others)

    trio.client(0).conferences.actions.mute(cid, call_control_ids=[legs["C"]])

    def c_is_muted() -> None:
        assert _levels(trio, 1, legs["A"], freqs)["C"] < SILENT
        assert _levels(trio, 0, legs["B"], freqs)["C"] < SILENT
        assert _levels(trio, 2, legs["C"], freqs)["A"] > HEARD  # a muted participant still hears

    _until(c_is_muted)
    trio.client(2).conferences.actions.unmute(cid, call_control_ids=[legs["C"]])
    _until(lambda: _check(_levels(trio, 1, legs["A"], freqs)["C"] > HEARD))

    trio.client(1).conferences.actions.hold(cid, call_control_ids=[legs["A"]])

    def a_is_held() -> None:
        on_hold = trio.heard(2, legs["A"], 0.4)
        assert all(tone_level(on_hold, freqs[n]) < SILENT for n in ("B", "C"))
        assert float(abs(on_hold.astype(float)).mean()) > 100  # the home's hold music, over the relay
        assert _levels(trio, 0, legs["B"], freqs)["A"] < SILENT

    _until(a_is_held)

    # a member hangs up on its own node: it leaves, its relay goes, the others go on
    assert trio.phone(1, legs["C"], "hangup").status_code == 200
    trio.event("conference.participant.left", legs["C"], conference_id=cid)
    trio.client(0).conferences.actions.unhold(cid, call_control_ids=[legs["A"]])
    _until(lambda: _check(_levels(trio, 2, legs["B"], freqs)["A"] > HEARD))
    assert _levels(trio, 0, legs["B"], freqs)["C"] < SILENT


def _check(ok: bool) -> None:
    assert ok


def test_a_queued_caller_on_one_node_is_bridged_to_an_agent_on_another(trio: Cluster) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    caller = trio.call_in(0, "virtual:caller;tone=700")
    trio.client(1).calls.actions.answer(caller)
    trio.event("call.answered", caller)
    trio.client(2).calls.actions.enqueue(caller, queue_name=queue)
    trio.event("call.enqueued", caller)
    _until(lambda: _check(float(abs(trio.heard(1, caller, 0.4).astype(float)).mean()) > 100))  # hold music

    agent = trio.dial(2, "agent", "answer_after=0;tone=1100")
    trio.client(1).calls.actions.bridge(agent, call_control_id_to_bridge_with=telnyx.omit,  # type: ignore[arg-type]
                                        queue=queue)  # fmt: skip
    trio.event("call.bridged", caller)
    trio.event("call.bridged", agent)

    def they_hear_each_other() -> None:
        assert tone_level(trio.heard(2, caller, 0.4), 1100) > HEARD
        assert tone_level(trio.heard(0, agent, 0.4), 700) > HEARD

    _until(they_hear_each_other)
    trio.client(0).calls.actions.hangup(agent)
    trio.event("call.hangup", agent)
    trio.event("call.hangup", caller)  # a bridge ends with either side, across nodes as on one


def test_two_nodes_dequeuing_one_caller_at_once_hand_it_to_one_agent(trio: Cluster) -> None:
    queue = f"race-{uuid.uuid4().hex[:8]}"
    for round_ in range(5):
        caller = trio.call_in(0, f"virtual:racer{round_}")
        trio.client(0).calls.actions.answer(caller)
        trio.event("call.answered", caller)
        trio.client(0).calls.actions.enqueue(caller, queue_name=queue)
        trio.event("call.enqueued", caller)
        agents = [trio.dial(1, f"agent-a{round_}"), trio.dial(2, f"agent-b{round_}")]
        outcomes: list[str] = []
        start = threading.Barrier(2)
        threads = [threading.Thread(target=_take, args=(trio, a, n, queue, start, outcomes))
                   for a, n in zip(agents, (1, 2), strict=True)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes)[-1] == "bridged" and outcomes.count("bridged") == 1, outcomes
        trio.event("call.bridged", caller)
        time.sleep(0.3)
        assert [e.event_type for e in trio.events(caller)].count("call.bridged") == 1
        for cid in agents:
            trio.client(round_).calls.actions.hangup(cid)
        trio.event("call.hangup", caller)


def _take(trio: Cluster, agent: str, node: int, queue: str, start: threading.Barrier, outcomes: list[str]) -> None:
    """An agent on ``node`` dequeues the head of ``queue``, at the same moment as another."""
    start.wait()
    try:
        trio.client(node).calls.actions.bridge(agent, call_control_id_to_bridge_with=telnyx.omit,  # type: ignore[arg-type]
                                               queue=queue)  # fmt: skip
        outcomes.append("bridged")
    except telnyx.APIStatusError as exc:
        outcomes.append(str(exc.body["errors"][0]["code"]))  # type: ignore[index]
