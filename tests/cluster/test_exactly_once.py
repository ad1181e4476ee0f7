"""What must happen once in a cluster happens once, whichever nodes are asked or run the clocks: a
``command_id`` sent to every node, a conference name created on several nodes at once, and timers that
every node's timer loop sees due."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import telnyx

from tests.support.cluster import Cluster

pytestmark = pytest.mark.postgres


def test_a_command_id_sent_to_every_node_runs_once(trio: Cluster) -> None:
    command_id = uuid.uuid4().hex
    dialled = set()
    for i in range(3):
        resp = trio.client(i).calls.dial(connection_id=trio.connection_id, from_="+15550001111",
                                         to="virtual:once;answer_after=0", command_id=command_id)  # fmt: skip
        assert resp.data is not None
        dialled.add(resp.data.call_control_id)
    assert len(dialled) == 1  # the repeats are answered with the first dial's call
    cid = dialled.pop()
    trio.event("call.answered", cid)
    time.sleep(0.3)
    to = "virtual:once;answer_after=0"
    initiated = [r for r in trio.receiver.delivered(trio.path)
                 if r.body and r.event_type == "call.initiated" and r.payload.get("to") == to]
    assert len({r.payload["call_control_id"] for r in initiated}) == 1
    trio.client(2).calls.actions.hangup(cid)


def test_one_conference_name_created_on_three_nodes_at_once(trio: Cluster) -> None:
    name = f"once-{uuid.uuid4().hex[:8]}"
    legs = [trio.dial(i, f"creator{i}") for i in range(3)]
    start = threading.Barrier(3)
    outcomes: list[str] = []

    def create(i: int) -> None:
        start.wait()
        try:
            trio.client(i).conferences.create(call_control_id=legs[i], name=name)
            outcomes.append("created")
        except telnyx.APIStatusError as exc:
            outcomes.append(str(exc.body["errors"][0]["code"]))  # type: ignore[index]

    threads = [threading.Thread(target=create, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["90033", "90033", "created"], outcomes
    listed = [c for c in trio.client(1).conferences.list() if c.name == name]
    assert len(listed) == 1
    for cid in legs:
        trio.client(0).calls.actions.hangup(cid)


def test_timers_every_node_sees_due_fire_once(trio: Cluster) -> None:
    queue = f"waits-{uuid.uuid4().hex[:6]}"
    callers = []
    for i in range(6):
        cid = trio.call_in(i % 3, f"virtual:waiter{i}")
        trio.client(i).calls.actions.answer(cid)
        trio.event("call.answered", cid)
        trio.client(i + 1).calls.actions.enqueue(cid, queue_name=queue, max_wait_time_secs=1)
        callers.append(cid)
    for cid in callers:
        trio.event("call.dequeued", cid, timeout=6, reason="timeout")
    time.sleep(1.5)  # a second firing would have come by now
    for cid in callers:
        fired = {r.json["data"]["id"] for r in trio.events(cid) if r.event_type == "call.dequeued"}
        assert len(fired) == 1, cid
        trio.client(0).calls.actions.hangup(cid)
