"""One account's calls driven through the official SDK with each command sent to the next node of three:
they behave as on one node, and each call's and conference's webhooks arrive in order (their sequence
numbers, in arrival order), though consecutive events were committed by different nodes."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
import telnyx

from tests.support.cluster import Cluster
from tests.support.receiver import Received

pytestmark = pytest.mark.postgres


def _firsts(arrived: list[Received]) -> list[Received]:
    """Each event once (a redelivery is allowed), in the order it first arrived."""
    seen: set[str] = set()
    out = []
    for r in arrived:
        if r.body and r.json["data"]["id"] not in seen:
            seen.add(r.json["data"]["id"])
            out.append(r)
    return out


def test_a_call_centre_day_spread_over_three_nodes(trio: Cluster) -> None:
    queue = f"support-{uuid.uuid4().hex[:6]}"
    callers = [trio.call_in(i % 3, f"virtual:caller{i}") for i in range(3)]
    for cid in callers:
        trio.next().calls.actions.answer(cid, client_state="YQ==")
        trio.event("call.answered", cid)
        trio.next().calls.actions.enqueue(cid, queue_name=queue)
        trio.event("call.enqueued", cid)
    listed = list(trio.next().queues.calls.list(queue))
    assert [c.call_control_id for c in listed] == callers
    assert [c.queue_position for c in listed] == [1, 2, 3]

    agent = trio.dial(1, "agent")
    trio.next().calls.actions.bridge(agent, call_control_id_to_bridge_with=telnyx.omit,  # type: ignore[arg-type]
                                     queue=queue, park_after_unbridge="self")  # fmt: skip
    trio.event("call.bridged", callers[0])
    dequeued = trio.event("call.dequeued", callers[0])
    assert dequeued.payload["reason"] == "bridged"
    q = trio.next().queues.retrieve(queue)
    assert q.data is not None and q.data.current_size == 2

    # the caller is moved into a conference (the agent, parked by the unbridge, follows) and a supervisor
    # listens in: each command through another node's API
    conf = trio.next().conferences.create(call_control_id=callers[0], name=f"escalation-{uuid.uuid4().hex[:6]}")
    assert conf.data is not None
    conf_id = conf.data.id
    trio.event("conference.created", conference_id=conf_id)
    trio.next().conferences.actions.join(conf_id, call_control_id=agent)
    supervisor = trio.dial(2, "supervisor")
    trio.next().conferences.actions.join(conf_id, call_control_id=supervisor, supervisor_role="monitor")
    for cid in (callers[0], agent, supervisor):
        trio.event("conference.participant.joined", cid, conference_id=conf_id)
    for _ in range(2):  # commands for one participant from every node in turn
        trio.next().conferences.actions.mute(conf_id, call_control_ids=[callers[0]])
        trio.next().conferences.actions.unmute(conf_id, call_control_ids=[callers[0]])
        trio.next().conferences.actions.hold(conf_id, call_control_ids=[callers[0]])
        trio.next().conferences.actions.unhold(conf_id, call_control_ids=[callers[0]])
    participants = list(trio.next().conferences.list_participants(conf_id))
    assert {p.call_control_id for p in participants} == {agent, callers[0], supervisor}
    assert next(p for p in participants if p.call_control_id == callers[0]).muted is False

    trio.next().calls.actions.send_dtmf(callers[1], digits="12")
    trio.next().calls.actions.hangup(callers[0])
    trio.event("conference.participant.left", callers[0], conference_id=conf_id)
    trio.next().conferences.actions.end_conference(conf_id)
    trio.event("conference.ended", conference_id=conf_id)
    for cid in (agent, supervisor):  # ending a conference hangs up who is in it
        trio.event("call.hangup", cid)
    for cid in callers[1:]:
        trio.next().calls.actions.hangup(cid)
        trio.event("call.hangup", cid)

    by_key: dict[str, list[int]] = defaultdict(list)
    for r in _firsts(trio.receiver.delivered(trio.path)):
        p = r.payload
        if "call_sequence" in p:
            by_key[f"call:{p['call_control_id']}"].append(p["call_sequence"])
        if "conference_sequence" in p:
            by_key[f"conference:{p['conference_id']}"].append(p["conference_sequence"])
    assert f"conference:{conf_id}" in by_key and f"call:{callers[0]}" in by_key
    for key, numbers in by_key.items():
        assert numbers == list(range(1, len(numbers) + 1)), f"{key} arrived out of order: {numbers}"
    kinds = [r.event_type for r in _firsts(trio.events(callers[0]))]
    assert kinds[:4] == ["call.initiated", "call.answered", "call.enqueued", "call.dequeued"] or \
        kinds[:4] == ["call.initiated", "call.answered", "call.enqueued", "call.bridged"], kinds  # fmt: skip
    assert "call.hangup" in kinds  # (after its conference's events or before: a call and a conference are two orders)
