"""Bridging two answered legs: the ``bridge`` command, with another call or with the head of a queue."""

from __future__ import annotations

from callroom.control import queues
from callroom.control.guards import answered, reject
from callroom.control.legs import check, leave_bridge, move
from callroom.control.webhooks import emit_call
from callroom.control.world import Steps, World
from callroom.errors import CommandRejected, NotFound
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import Call, Queue, QueueEntry
from callroom.model.states import CallEvent, CallState, DequeueReason


def bridge(w: World, call_control_id: str, other_id: str, *, client_state: str | None,
           park_after_unbridge: str | None, hold_after_unbridge: bool | None,
           prevent_double_bridge: bool) -> Steps[None]:  # fmt: skip
    yield from w.load(r.CallById(call_control_id), r.CallById(other_id), r.BridgePartner(call_control_id),
                      r.BridgePartner(other_id))  # fmt: skip
    a = answered(w, call_control_id)
    if other_id == call_control_id:
        raise CommandRejected("10015", "Invalid value", "A call cannot be bridged with itself.", "/call_control_id")
    b = answered(w, other_id, pointer="/call_control_id")
    if prevent_double_bridge and b.state is CallState.BRIDGED:
        raise reject("90107", "The target call is already bridged.", "/call_control_id")
    check(a, CallEvent.BRIDGE)
    check(b, CallEvent.BRIDGE)
    if client_state is not None:
        a.client_state = client_state
    if park_after_unbridge is not None:
        a.park_after_unbridge = park_after_unbridge
    if hold_after_unbridge is not None:
        a.hold_after_unbridge = hold_after_unbridge
    yield from pair(w, a, b)


def pair(w: World, a: Call, b: Call, *, head: tuple[QueueEntry, Queue] | None = None) -> Steps[None]:
    """Connect two answered legs; each gets ``call.bridged``. A queued leg leaves its queue first
    (``head``: the queue's head entry and queue, already read by a dequeue), a leg bridged elsewhere lets
    its partner go."""
    for leg in (a, b):
        if leg.state is CallState.QUEUED:
            if head is not None and head[0].call_control_id == leg.call_control_id:
                queues.remove_head(w, leg, *head)
            else:
                yield from queues.remove(w, leg, DequeueReason.BRIDGED)
        elif leg.state is CallState.BRIDGED and leg.bridged_with not in (a.call_control_id, b.call_control_id):
            yield from leave_bridge(w, leg)
    for leg, other in ((a, b), (b, a)):
        move(leg, CallEvent.BRIDGE)
        leg.bridged_with = other.call_control_id
        w.update(leg)
    w.media.append(m.Bridge(a.call_control_id, b.call_control_id))
    emit_call(w, "call.bridged", a)
    emit_call(w, "call.bridged", b)


def dequeue_to(w: World, agent_id: str, queue_name: str, client_state: str | None, *,
               park_after_unbridge: str | None = None, hold_after_unbridge: bool | None = None) -> Steps[None]:
    """``bridge`` with ``queue``: the agent takes the head of the queue (``park_after_unbridge`` and
    ``hold_after_unbridge`` are the agent's, as in ``bridge``)."""
    # One batch: the queue (locked), its entries, the agent and the caller at the head (both locked, in that
    # order), and whoever the agent is bridged with now.
    yield from w.load(r.QueueByName(queue_name), r.EntriesOfQueueNamed(queue_name), r.CallById(agent_id),
                      r.QueueHeadCall(queue_name), r.BridgePartner(agent_id))  # fmt: skip
    agent = answered(w, agent_id)
    if agent.state in (CallState.QUEUED, CallState.CONFERENCED):
        raise reject("90107", f"An agent that is {agent.state.value} cannot take a call from a queue.")
    q: Queue | None = w.result(r.QueueByName(queue_name))
    if q is None:
        raise NotFound(f"No queue named {queue_name!r}.", "10005", "Queue not found")
    entries: list[QueueEntry] = w.result(r.EntriesOfQueueNamed(queue_name))
    if not entries:
        raise reject("90101", f"Queue {queue_name!r} is empty.", "/queue")
    head = entries[0]
    yield from w.load(r.CallById(head.call_control_id))  # brought by the read ahead, where there was one
    caller = w.call(head.call_control_id)
    if client_state is not None:
        agent.client_state = client_state
    if park_after_unbridge is not None:
        agent.park_after_unbridge = park_after_unbridge
    if hold_after_unbridge is not None:
        agent.hold_after_unbridge = hold_after_unbridge
    if caller is None or not caller.is_alive or caller.state is not CallState.QUEUED:
        w.delete(head)
        w.update(agent)
        # Committed anyway: the head has left the queue even though it could not be bridged.
        w.error = CommandRejected(
            "90102", "Queued call has hung up",
            f"The call at the head of {queue_name!r} ({head.call_control_id}, from {head.from_} to {head.to}) "
            "hung up while kept in the queue; it has been removed.", "/queue",
        )
        return
    yield from pair(w, agent, caller, head=(head, q))
