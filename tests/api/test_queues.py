"""Queues as a call-centre developer uses them: callers wait, agents dequeue, nobody is lost or doubled."""

from __future__ import annotations

import threading
import time

import pytest
import telnyx

from tests.support.tenant import Tenant


def test_queue_crud(tenant: Tenant) -> None:
    created = tenant.client.queues.create(queue_name="tier_1_support")
    assert created.data is not None
    q = created.data
    assert (q.name, q.max_size, q.current_size, q.record_type) == ("tier_1_support", 300, 0, "queue")
    updated = tenant.client.queues.update("tier_1_support", max_size=200)
    assert updated.data is not None and updated.data.max_size == 200
    assert [x.name for x in tenant.client.queues.list()] == ["tier_1_support"]
    tenant.client.queues.delete("tier_1_support")
    with pytest.raises(telnyx.NotFoundError):
        tenant.client.queues.retrieve("tier_1_support")


def test_call_centre_scenario(tenant: Tenant) -> None:
    callers = [tenant.call_in(from_=f"virtual:caller{i}") for i in range(3)]
    for i, cid in enumerate(callers, start=1):
        tenant.client.calls.actions.enqueue(cid, queue_name="support")
        ev = tenant.event("call.enqueued", cid)
        assert ev.payload["queue"] == "support" and ev.payload["current_position"] == i
        time.sleep(0.05)
    q = tenant.client.queues.retrieve("support")
    assert q.data is not None and q.data.current_size == 3 and q.data.max_size == 100
    listed = list(tenant.client.queues.calls.list("support"))
    assert [c.call_control_id for c in listed] == callers
    assert [c.queue_position for c in listed] == [1, 2, 3]
    one = tenant.client.queues.calls.retrieve(callers[1], queue_name="support")
    assert one.data is not None and one.data.queue_position == 2 and one.data.is_alive is True

    agents = [tenant.dial(f"agent{i}") for i in range(2)]
    errors: list[BaseException] = []

    def take(agent: str) -> None:
        try:
            tenant.dequeue(agent, "support")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for leg in agents + callers[:2]:
        tenant.event("call.bridged", leg)
    dequeued = [tenant.event("call.dequeued", c) for c in callers[:2]]
    assert {d.payload["reason"] for d in dequeued} == {"bridged"}
    assert sorted(d.payload["queue_position"] for d in dequeued) == [1, 1]  # each was the head when taken
    # Each agent is connected to a different one of the two callers at the head.
    partner = {p["call_control_id"]: p["connected_to"] for p in tenant.virtual_phones()}
    assert {partner[a] for a in agents} == {f"bridge:{c}" for c in callers[:2]}
    assert "call.bridged" not in tenant.events(callers[2])
    q = tenant.client.queues.retrieve("support")
    assert q.data is not None and q.data.current_size == 1
    remaining = list(tenant.client.queues.calls.list("support"))
    assert [(c.call_control_id, c.queue_position) for c in remaining] == [(callers[2], 1)]


def test_wait_time_and_average_are_live(tenant: Tenant) -> None:
    cid = tenant.call_in()
    tenant.client.calls.actions.enqueue(cid, queue_name="live")
    time.sleep(1.2)
    call = tenant.client.queues.calls.retrieve(cid, queue_name="live")
    assert call.data is not None and call.data.wait_time_secs >= 1
    q = tenant.client.queues.retrieve("live")
    assert q.data is not None and q.data.average_wait_time_secs >= 1


def test_max_wait_time_times_out_and_parks(tenant: Tenant) -> None:
    cid = tenant.call_in()
    tenant.client.calls.actions.enqueue(cid, queue_name="impatient", max_wait_time_secs=1)
    ev = tenant.event("call.dequeued", cid, timeout=5)
    assert ev.payload["reason"] == "timeout" and ev.payload["queue_position"] == 1
    assert ev.payload["wait_time_secs"] >= 1
    status = tenant.client.calls.retrieve_status(cid)
    assert status.data is not None and status.data.is_alive is True


def test_keep_after_hangup_and_dequeue_of_dead_head(tenant: Tenant) -> None:
    kept = tenant.call_in()
    tenant.client.calls.actions.enqueue(kept, queue_name="kept", keep_after_hangup=True)
    waiting = tenant.call_in()
    tenant.client.calls.actions.enqueue(waiting, queue_name="kept")
    tenant.phone_hangs_up(kept)
    tenant.event("call.hangup", kept)
    listed = {c.call_control_id: c for c in tenant.client.queues.calls.list("kept")}
    assert listed[kept].is_alive is False and listed[waiting].queue_position == 2

    agent = tenant.dial("agent")
    with pytest.raises(telnyx.UnprocessableEntityError) as dead:
        tenant.dequeue(agent, "kept")
    assert dead.value.body["errors"][0]["code"] == "90102"  # type: ignore[index]
    # The dead head was removed even though the bridge failed; the next caller is now first.
    assert [c.call_control_id for c in tenant.client.queues.calls.list("kept")] == [waiting]
    tenant.dequeue(agent, "kept")
    tenant.event("call.bridged", waiting)


def test_remove_dead_call_and_patch(tenant: Tenant) -> None:
    cid = tenant.call_in()
    tenant.client.calls.actions.enqueue(cid, queue_name="tidy")
    tenant.client.queues.calls.update(cid, queue_name="tidy", keep_after_hangup=True)
    tenant.phone_hangs_up(cid)
    tenant.event("call.hangup", cid)
    assert "call.dequeued" not in tenant.events(cid)
    tenant.client.queues.calls.remove(cid, queue_name="tidy")
    assert list(tenant.client.queues.calls.list("tidy")) == []


def test_hangup_while_queued_dequeues(tenant: Tenant) -> None:
    first, second = tenant.call_in(), tenant.call_in()
    for cid in (first, second):
        tenant.client.calls.actions.enqueue(cid, queue_name="q")
    tenant.phone_hangs_up(first)
    ev = tenant.event("call.dequeued", first)
    assert ev.payload["reason"] == "hangup" and ev.payload["queue_position"] == 1
    remaining = list(tenant.client.queues.calls.list("q"))
    assert [(c.call_control_id, c.queue_position) for c in remaining] == [(second, 1)]


def test_leave_queue_full_and_already_queued(tenant: Tenant) -> None:
    a, b = tenant.call_in(), tenant.call_in()
    tenant.client.calls.actions.enqueue(a, queue_name="tiny", max_size=1)
    with pytest.raises(telnyx.UnprocessableEntityError) as full:
        tenant.client.calls.actions.enqueue(b, queue_name="tiny")
    assert full.value.body["errors"][0]["code"] == "90036"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError) as twice:
        tenant.client.calls.actions.enqueue(a, queue_name="other")
    assert twice.value.body["errors"][0]["code"] == "90038"  # type: ignore[index]
    tenant.client.calls.actions.leave_queue(a)
    ev = tenant.event("call.dequeued", a)
    assert ev.payload["reason"] == "leave"
    status = tenant.client.calls.retrieve_status(a)
    assert status.data is not None and status.data.is_alive is True
    q = tenant.client.queues.retrieve("tiny")
    assert q.data is not None and q.data.current_size == 0


def test_dequeue_empty_queue_is_an_error(tenant: Tenant) -> None:
    tenant.client.queues.create(queue_name="empty")
    agent = tenant.dial("agent")
    with pytest.raises(telnyx.UnprocessableEntityError) as empty:
        tenant.dequeue(agent, "empty")
    assert empty.value.body["errors"][0]["code"] == "90101"  # type: ignore[index]


def test_enqueue_bridged_call_unbridges_it(tenant: Tenant) -> None:
    caller = tenant.call_in()
    agent = tenant.dial("agent")
    tenant.client.calls.actions.bridge(caller, call_control_id_to_bridge_with=agent, park_after_unbridge="self")
    tenant.event("call.bridged", agent)
    tenant.client.calls.actions.bridge(agent, call_control_id_to_bridge_with=caller, park_after_unbridge="self")
    tenant.client.calls.actions.enqueue(caller, queue_name="back")
    tenant.event("call.enqueued", caller)
    status = tenant.client.calls.retrieve_status(agent)
    assert status.data is not None and status.data.is_alive is True


def test_an_agent_that_dequeues_with_park_after_unbridge_stays_when_the_caller_goes(tenant: Tenant) -> None:
    caller = tenant.call_in()
    tenant.client.calls.actions.enqueue(caller, queue_name="parking")
    agent = tenant.dial("agent")
    tenant.client.calls.actions.bridge(agent, call_control_id_to_bridge_with=telnyx.omit,  # type: ignore[arg-type]
                                       queue="parking", park_after_unbridge="self")  # fmt: skip
    tenant.event("call.bridged", agent)
    tenant.phone_hangs_up(caller)
    tenant.event("call.hangup", caller)
    time.sleep(0.3)
    assert "call.hangup" not in tenant.events(agent)
    status = tenant.client.calls.retrieve_status(agent)
    assert status.data is not None and status.data.is_alive is True
    assert getattr(status.data, "state", None) == "parked"
