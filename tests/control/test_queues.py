"""Queue commands without a database: what each reads (and in how many batches), what it refuses, and what
it decides."""

from __future__ import annotations

from callroom.control import bridges, queues
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.states import CallState
from tests.control.memory import Memory, new_call


def _enqueue(mem: Memory, cid: str, name: str = "support", **options: object) -> None:
    mem.run(lambda w: queues.enqueue(w, cid, name, client_state=None, max_size=options.get("max_size"),  # type: ignore[arg-type]
                                     max_wait_time_secs=options.get("max_wait_time_secs"),  # type: ignore[arg-type]
                                     keep_after_hangup=bool(options.get("keep_after_hangup"))))


def test_enqueue_reads_in_one_batch_and_creates_the_queue() -> None:
    mem = Memory()
    call = new_call(mem)
    _, effects = mem.run(lambda w: queues.enqueue(w, call.call_control_id, "support", client_state="c2Q=",
                                                  max_size=None, max_wait_time_secs=30, keep_after_hangup=False))
    assert len(mem.batches) == 1
    assert set(mem.batches[0]) == {r.QueueByName("support"), r.EntriesOfQueueNamed("support"),
                                   r.CallById(call.call_control_id), r.BridgePartner(call.call_control_id)}
    [q] = mem.queues
    assert (q.name, q.max_size) == ("support", queues.ENQUEUE_DEFAULT_MAX_SIZE)
    after = mem.call(call.call_control_id)
    assert (after.state, after.queue_id, after.client_state) == (CallState.QUEUED, q.id, "c2Q=")
    assert mem.events() == ["call.enqueued"] and mem.webhooks[0].payload["current_position"] == 1
    assert [t.kind for t in mem.timers] == ["queue_timeout"]
    assert effects.media == [m.HoldInQueue(call.call_control_id, q.id)]


def test_enqueue_refusals_come_from_the_table_and_change_nothing() -> None:
    mem = Memory()
    queued, conferenced = new_call(mem), new_call(mem, "conferenced")
    _enqueue(mem, queued.call_control_id)
    assert [i.code for i in mem.refused(lambda w: queues.enqueue(
        w, queued.call_control_id, "other", client_state=None, max_size=None, max_wait_time_secs=None,
        keep_after_hangup=False)).items] == ["90038"]
    assert [i.code for i in mem.refused(lambda w: queues.enqueue(
        w, conferenced.call_control_id, "support", client_state=None, max_size=None, max_wait_time_secs=None,
        keep_after_hangup=False)).items] == ["90104"]
    ringing = new_call(mem, "ringing")
    assert [i.code for i in mem.refused(lambda w: queues.enqueue(
        w, ringing.call_control_id, "support", client_state=None, max_size=None, max_wait_time_secs=None,
        keep_after_hangup=False)).items] == ["90034"]


def test_a_full_queue_refuses() -> None:
    mem = Memory()
    first, second = new_call(mem), new_call(mem)
    _enqueue(mem, first.call_control_id, max_size=1)
    refused = mem.refused(lambda w: queues.enqueue(w, second.call_control_id, "support", client_state=None,
                                                   max_size=None, max_wait_time_secs=None, keep_after_hangup=False))
    assert [i.code for i in refused.items] == ["90036"]


def test_a_bridged_call_enqueued_lets_its_partner_go() -> None:
    mem = Memory()
    a = new_call(mem, "bridged")
    b = new_call(mem, "bridged", bridged_with=a.call_control_id)
    mem.calls[0].bridged_with = b.call_control_id
    _enqueue(mem, a.call_control_id)
    assert len(mem.batches) == 1  # the partner came in the first batch
    partner = mem.call(b.call_control_id)
    assert partner.state is CallState.ENDED and partner.hangup_cause == "normal_clearing"
    assert mem.events(f"call:{b.call_control_id}") == ["call.hangup"]


def test_dequeue_takes_the_head_in_one_batch() -> None:
    mem = Memory()
    callers = [new_call(mem), new_call(mem)]
    for c in callers:
        _enqueue(mem, c.call_control_id)
    agent = new_call(mem)
    mem.webhooks.clear()
    _, effects = mem.run(lambda w: bridges.dequeue_to(w, agent.call_control_id, "support", None))
    assert len(mem.batches) == 1
    head = mem.call(callers[0].call_control_id)
    assert (head.state, head.bridged_with) == (CallState.BRIDGED, agent.call_control_id)
    assert [e.call_control_id for e in mem.entries] == [callers[1].call_control_id]
    assert mem.events() == ["call.dequeued", "call.bridged", "call.bridged"]
    dequeued = mem.webhooks[0].payload
    assert (dequeued["queue_position"], dequeued["reason"]) == (1, "bridged")
    assert effects.media == [m.Bridge(agent.call_control_id, head.call_control_id)]


def test_a_dead_head_is_removed_and_the_dequeue_answers_90102_after_committing() -> None:
    mem = Memory()
    caller = new_call(mem)
    _enqueue(mem, caller.call_control_id, keep_after_hangup=True)
    mem.calls[0].state = CallState.ENDED  # hung up, kept listed
    agent = new_call(mem)
    _, effects = mem.run(lambda w: bridges.dequeue_to(w, agent.call_control_id, "support", None))
    assert effects.error is not None and [i.code for i in effects.error.items] == ["90102"]
    assert mem.entries == []  # committed anyway


def test_leave_queue_and_its_refusal() -> None:
    mem = Memory()
    call = new_call(mem)
    assert [i.code for i in mem.refused(lambda w: queues.leave_queue(w, call.call_control_id, None)).items] == [
        "90100"]
    _enqueue(mem, call.call_control_id)
    _, effects = mem.run(lambda w: queues.leave_queue(w, call.call_control_id, None))
    assert mem.call(call.call_control_id).state is CallState.PARKED and mem.entries == []
    assert effects.media == [m.Park(call.call_control_id)]
    assert mem.events()[-1] == "call.dequeued" and mem.webhooks[-1].payload["reason"] == "leave"


def test_deleting_a_queue_with_live_callers_is_refused() -> None:
    mem = Memory()
    call = new_call(mem)
    _enqueue(mem, call.call_control_id)
    assert [i.code for i in mem.refused(lambda w: queues.delete_queue(w, "support")).items] == ["90106"]
    mem.run(lambda w: queues.leave_queue(w, call.call_control_id, None))
    mem.run(lambda w: queues.delete_queue(w, "support"))
    assert mem.queues == []
