"""Call queues: enqueue, leave, time out, dequeue by bridge, and the live figures of a queue.

A queue is created by ``POST /queues`` (``max_size`` default 300) or on the fly by ``enqueue`` (default
100). Calls wait in arrival order hearing hold audio. A dequeue by ``bridge`` takes the head under the
queue's lock (SQLite: the single write lock; PostgreSQL: ``SELECT ... FOR UPDATE`` on the queue row), so
two agents can never be handed the same caller; the head leaves even if the bridge then fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from callroom.control.context import Ctx
from callroom.control.guards import answered_call, live_call, reject
from callroom.control.legs import bridge_pair, leave_current_bridge, move
from callroom.errors import CommandRejected, NotFound
from callroom.model import media as m
from callroom.model.records import Call, Queue, QueueEntry, new_uuid
from callroom.model.states import CallEvent, CallState, DequeueReason

ENQUEUE_DEFAULT_MAX_SIZE = 100
CREATE_DEFAULT_MAX_SIZE = 300


@dataclass(frozen=True, slots=True)
class QueueFigures:
    current_size: int
    average_wait_time_secs: int


def figures(ctx: Ctx, queues: list[Queue]) -> dict[str, QueueFigures]:
    sizes = ctx.tx.queue_sizes([q.id for q in queues])
    return {q.id: _figures(*sizes.get(q.id, (0, 0.0)), now=ctx.now) for q in queues}


def _figures(count: int, sum_enqueued: float, *, now: float) -> QueueFigures:
    """Size and average wait of a queue from its number of entries and the sum of their enqueue times."""
    avg = int((count * now - sum_enqueued) / count) if count else 0
    return QueueFigures(count, max(0, avg))


def get_queue(ctx: Ctx, name: str, *, lock: bool = False, with_entries: bool = False) -> Queue:
    q = ctx.tx.get_queue(ctx.account_id, name, lock=lock, with_entries=with_entries)
    if q is None:
        raise NotFound(f"No queue named {name!r}.", "10005", "Queue not found")
    return q


def create_queue(ctx: Ctx, name: str, max_size: int | None) -> Queue:
    if ctx.tx.get_queue(ctx.account_id, name) is not None:
        raise CommandRejected("10015", "Queue already exists", f"A queue named {name!r} exists.", "/queue_name")
    q = Queue(
        id=new_uuid(),
        account_id=ctx.account_id,
        name=name,
        max_size=max_size if max_size is not None else CREATE_DEFAULT_MAX_SIZE,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.tx.insert_queue(q)
    return q


def update_queue(ctx: Ctx, name: str, max_size: int) -> Queue:
    q = get_queue(ctx, name, lock=True)
    q.max_size = max_size
    q.updated_at = ctx.now
    ctx.tx.update_queue(q)
    return q


def delete_queue(ctx: Ctx, name: str) -> None:
    q = get_queue(ctx, name, lock=True)
    if any(e.is_alive for e in ctx.tx.queue_entries(q.id)):
        raise reject("90106", "Calls are waiting in this queue; bridge them or remove them first.")
    for e in ctx.tx.queue_entries(q.id):
        ctx.tx.delete_queue_entry(e)
    ctx.tx.delete_queue(q)


def enqueue(
    ctx: Ctx,
    call_control_id: str,
    queue_name: str,
    *,
    client_state: str | None,
    max_size: int | None,
    max_wait_time_secs: int | None,
    keep_after_hangup: bool,
) -> QueueEntry:
    if ctx.read_ahead:
        # One round trip reads what the command looks at: the queue (locked), its entries, the call and
        # the call it may be bridged with (both locked, in that order), and the call's application.
        ctx.tx.read_queue_ahead(ctx.account_id, queue_name)
        ctx.tx.read_call_ahead(ctx.account_id, call_control_id, lock=True)
        ctx.tx.read_bridge_partner_ahead(ctx.account_id, call_control_id)
        ctx.read_apps_ahead(of_call=call_control_id)
    call = answered_call(ctx, call_control_id)
    if call.state is CallState.QUEUED:
        raise CommandRejected("90038", "Call already in a queue", "This call is already waiting in a queue.")
    if call.state is CallState.CONFERENCED:
        raise reject("90104", "A conference participant cannot be enqueued; leave the conference first.")
    q = ctx.tx.get_queue(ctx.account_id, queue_name, lock=True, with_entries=True)
    if q is None:
        q = Queue(
            id=new_uuid(),
            account_id=ctx.account_id,
            name=queue_name,
            max_size=max_size if max_size is not None else ENQUEUE_DEFAULT_MAX_SIZE,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        ctx.tx.insert_queue(q)
    entries = ctx.tx.queue_entries(q.id)
    if len(entries) >= q.max_size:
        raise CommandRejected("90036", "Queue is full", f"Queue {queue_name!r} holds its maximum of {q.max_size}.")
    leave_current_bridge(ctx, call)
    if client_state is not None:
        call.client_state = client_state
    entry = ctx.tx.insert_queue_entry(
        QueueEntry(
            queue_id=q.id,
            account_id=ctx.account_id,
            call_control_id=call.call_control_id,
            call_leg_id=call.call_leg_id,
            call_session_id=call.call_session_id,
            connection_id=call.connection_id,
            from_=call.from_,
            to=call.to,
            enqueued_at=ctx.now,
            keep_after_hangup=keep_after_hangup,
            max_wait_time_secs=max_wait_time_secs,
        ),
        numbered=False,  # nothing here needs its arrival number: no round trip for it
    )
    move(call, CallEvent.ENQUEUE)
    call.queue_id = q.id
    ctx.tx.update_call(call)
    if max_wait_time_secs:
        ctx.schedule("queue_timeout", call.call_control_id, ctx.now + max_wait_time_secs)
    all_entries = [*entries, entry]
    avg = _figures(len(all_entries), sum(e.enqueued_at for e in all_entries), now=ctx.now).average_wait_time_secs
    ctx.emit_call(
        "call.enqueued", call, queue=q.name, current_position=len(all_entries), queue_avg_wait_time_secs=avg
    )
    ctx.media.append(m.HoldInQueue(call.call_control_id, q.id))
    return entry


def leave_queue(ctx: Ctx, call_control_id: str, client_state: str | None) -> None:
    call = live_call(ctx, call_control_id)
    if call.state is not CallState.QUEUED:
        raise reject("90100", "This call is not waiting in a queue.")
    if client_state is not None:
        call.client_state = client_state
    remove_from_queue(ctx, call, DequeueReason.LEAVE, park=True)


def on_timeout(ctx: Ctx, call_control_id: str) -> None:
    call = ctx.tx.get_call(ctx.account_id, call_control_id, lock=True)
    if call is not None and call.state is CallState.QUEUED:
        remove_from_queue(ctx, call, DequeueReason.TIMEOUT, park=True)


@dataclass(frozen=True, slots=True)
class Head:
    """The entry at the head of a queue, as a dequeue has just read it (saves reading it again)."""

    entry: QueueEntry
    queue: Queue


def remove_from_queue(ctx: Ctx, call: Call, reason: DequeueReason, *, park: bool, head: Head | None = None) -> None:
    """Take a live ``call`` out of its queue: parked (and saved) with ``park``, otherwise the caller moves
    it on and saves it."""
    if head is not None and head.entry.call_control_id == call.call_control_id:
        entry: QueueEntry | None = head.entry
        q: Queue | None = head.queue
        position = 1
    else:
        entry = ctx.tx.queue_entry_for_call(call.call_control_id)
        q = ctx.tx.get_queue_by_id(call.queue_id) if call.queue_id else None
        position = _position(ctx, entry) if entry is not None else 0
    if entry is not None:
        ctx.tx.delete_queue_entry(entry)
        ctx.emit_call(
            "call.dequeued", call, queue=q.name if q else None, queue_position=position,
            wait_time_secs=entry.wait_time_secs(ctx.now), reason=reason.value,
        )
    if entry is None or entry.max_wait_time_secs:  # enqueue schedules a timeout only with a max wait
        ctx.cancel("queue_timeout", call.call_control_id)
    call.queue_id = None
    if park:
        move(call, CallEvent.DEQUEUE)
        ctx.media.append(m.Park(call.call_control_id))
        ctx.tx.update_call(call)


def leave_on_hangup(ctx: Ctx, call: Call) -> None:
    """A queued caller hung up: it leaves, unless ``keep_after_hangup`` keeps it listed as not alive."""
    entry = ctx.tx.queue_entry_for_call(call.call_control_id)
    ctx.cancel("queue_timeout", call.call_control_id)
    if entry is None:
        return
    if entry.keep_after_hangup:
        entry.is_alive = False
        ctx.tx.update_queue_entry(entry)
        return
    q = ctx.tx.get_queue_by_id(entry.queue_id)
    position = _position(ctx, entry)
    ctx.tx.delete_queue_entry(entry)
    ctx.emit_call(
        "call.dequeued", call, queue=q.name if q else None, queue_position=position,
        wait_time_secs=entry.wait_time_secs(ctx.now), reason=DequeueReason.HANGUP.value,
    )


def dequeue_to(ctx: Ctx, agent_id: str, queue_name: str, client_state: str | None) -> None:
    """``bridge`` with ``queue``: the agent takes the head of the queue."""
    if ctx.read_ahead:
        # One round trip reads what the command looks at: the queue (locked), its entries, the agent and
        # the caller at the head (both locked, in that order), and both calls' applications.
        ctx.tx.read_queue_ahead(ctx.account_id, queue_name)
        ctx.tx.read_call_ahead(ctx.account_id, agent_id, lock=True)
        ctx.tx.read_queue_head_call_ahead(ctx.account_id, queue_name)
        ctx.read_apps_ahead(of_call=agent_id, of_queue_head=queue_name)
    agent = answered_call(ctx, agent_id)
    if agent.state in (CallState.QUEUED, CallState.CONFERENCED):
        raise reject("90107", f"An agent that is {agent.state.value} cannot take a call from a queue.")
    q = get_queue(ctx, queue_name, lock=True, with_entries=True)
    entries = ctx.tx.queue_entries(q.id)
    if not entries:
        raise reject("90101", f"Queue {queue_name!r} is empty.", "/queue")
    head = entries[0]
    caller = ctx.tx.get_call(ctx.account_id, head.call_control_id, lock=True)
    if client_state is not None:
        agent.client_state = client_state
    if caller is None or not caller.is_alive or caller.state is not CallState.QUEUED:
        ctx.tx.delete_queue_entry(head)
        ctx.tx.update_call(agent)
        # Committed anyway: the head has left the queue even though it could not be bridged.
        ctx.deferred_error = CommandRejected(
            "90102",
            "Queued call has hung up",
            f"The call at the head of {queue_name!r} ({head.call_control_id}, from {head.from_} to {head.to}) "
            "hung up while kept in the queue; it has been removed.",
            "/queue",
        )
        return
    bridge_pair(ctx, agent, caller, head=Head(head, q))


def _position(ctx: Ctx, entry: QueueEntry) -> int:
    """The 1-based place of ``entry`` in its queue now."""
    return entry_position(ctx.tx.queue_entries(entry.queue_id), entry.call_control_id)


def entry_position(entries: list[QueueEntry], call_control_id: str) -> int:
    for i, e in enumerate(entries, start=1):
        if e.call_control_id == call_control_id:
            return i
    return 0


def remove_dead_entry(ctx: Ctx, queue_name: str, call_control_id: str) -> None:
    """``DELETE /queues/{name}/calls/{id}``: remove a call that is no longer alive (kept after hangup)."""
    q = get_queue(ctx, queue_name, lock=True)
    entry = ctx.tx.queue_entry_for_call(call_control_id)
    if entry is None or entry.queue_id != q.id:
        raise NotFound(f"No call {call_control_id!r} in queue {queue_name!r}.", "10005", "Queued call not found")
    if entry.is_alive:
        call = ctx.tx.get_call(ctx.account_id, call_control_id, lock=True)
        if call is not None and call.state is CallState.QUEUED:
            raise reject("90107", "The call is still alive; use leave_queue or bridge it instead.")
    ctx.tx.delete_queue_entry(entry)
