"""Call queues: create, update, delete, enqueue, leave, time out, and taking a call out of its queue.

A queue is created by ``POST /queues`` (``max_size`` default 300) or on the fly by ``enqueue`` (default
100). Calls wait in arrival order hearing hold audio. A dequeue by ``bridge`` (``bridges.dequeue_to``) takes
the head under the queue's lock (SQLite: the single write lock; PostgreSQL: ``SELECT ... FOR UPDATE`` on the
queue row), so two agents can never be handed the same caller; the head leaves even if the bridge then fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from callroom.control.guards import answered, live, reject
from callroom.control.legs import check, leave_bridge, move, park
from callroom.control.webhooks import emit_call
from callroom.control.world import Steps, World
from callroom.errors import CommandRejected, NotFound
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import Call, Queue, QueueEntry, new_uuid
from callroom.model.states import CallEvent, CallState, DequeueReason

ENQUEUE_DEFAULT_MAX_SIZE = 100
CREATE_DEFAULT_MAX_SIZE = 300


@dataclass(frozen=True, slots=True)
class QueueFigures:
    current_size: int
    average_wait_time_secs: int


def figures_of(count: int, sum_enqueued: float, *, now: float) -> QueueFigures:
    """Size and average wait of a queue from its number of entries and the sum of their enqueue times."""
    avg = int((count * now - sum_enqueued) / count) if count else 0
    return QueueFigures(count, max(0, avg))


def _named(w: World, name: str, *, lock: bool = True) -> Steps[Queue]:
    yield from w.load(r.QueueByName(name, lock))
    q: Queue | None = w.result(r.QueueByName(name, lock))
    if q is None:
        raise NotFound(f"No queue named {name!r}.", "10005", "Queue not found")
    return q


def create_queue(w: World, name: str, max_size: int | None) -> Steps[Queue]:
    yield from w.load(r.QueueByName(name))
    if w.result(r.QueueByName(name)) is not None:
        raise CommandRejected("10015", "Queue already exists", f"A queue named {name!r} exists.", "/queue_name")
    q = Queue(id=new_uuid(), account_id=w.account_id, name=name,
              max_size=max_size if max_size is not None else CREATE_DEFAULT_MAX_SIZE, created_at=w.now,
              updated_at=w.now)  # fmt: skip
    w.insert(q)
    return q


def update_queue(w: World, name: str, max_size: int) -> Steps[Queue]:
    q = yield from _named(w, name)
    q.max_size = max_size
    q.updated_at = w.now
    w.update(q)
    return q


def delete_queue(w: World, name: str) -> Steps[None]:
    q = yield from _named(w, name)
    yield from w.load(r.EntriesOfQueue(q.id))
    entries: list[QueueEntry] = w.result(r.EntriesOfQueue(q.id))
    if any(e.is_alive for e in entries):
        raise reject("90106", "Calls are waiting in this queue; bridge them or remove them first.")
    for e in entries:
        w.delete(e)
    w.delete(q)


def enqueue(w: World, call_control_id: str, queue_name: str, *, client_state: str | None, max_size: int | None,
            max_wait_time_secs: int | None, keep_after_hangup: bool) -> Steps[QueueEntry]:  # fmt: skip
    # One batch: the queue (locked), its entries, the call and the call it may be bridged with (both locked,
    # in that order).
    yield from w.load(r.QueueByName(queue_name), r.EntriesOfQueueNamed(queue_name), r.CallById(call_control_id),
                      r.BridgePartner(call_control_id))  # fmt: skip
    call = answered(w, call_control_id)
    check(call, CallEvent.ENQUEUE)
    q: Queue | None = w.result(r.QueueByName(queue_name))
    entries: list[QueueEntry] = w.result(r.EntriesOfQueueNamed(queue_name))
    if q is None:
        q = Queue(id=new_uuid(), account_id=w.account_id, name=queue_name,
                  max_size=max_size if max_size is not None else ENQUEUE_DEFAULT_MAX_SIZE, created_at=w.now,
                  updated_at=w.now)  # fmt: skip
        w.insert(q)
        entries = []
    if len(entries) >= q.max_size:
        raise CommandRejected("90036", "Queue is full", f"Queue {queue_name!r} holds its maximum of {q.max_size}.")
    yield from leave_bridge(w, call)
    if client_state is not None:
        call.client_state = client_state
    entry = QueueEntry(
        queue_id=q.id, account_id=w.account_id, call_control_id=call.call_control_id, call_leg_id=call.call_leg_id,
        call_session_id=call.call_session_id, connection_id=call.connection_id, from_=call.from_, to=call.to,
        enqueued_at=w.now, keep_after_hangup=keep_after_hangup, max_wait_time_secs=max_wait_time_secs,
    )
    w.insert(entry)
    move(call, CallEvent.ENQUEUE)
    call.queue_id = q.id
    w.update(call)
    if max_wait_time_secs:
        w.schedule("queue_timeout", call.call_control_id, w.now + max_wait_time_secs)
    waiting = [*entries, entry]
    avg = figures_of(len(waiting), sum(e.enqueued_at for e in waiting), now=w.now).average_wait_time_secs
    emit_call(w, "call.enqueued", call, queue=q.name, current_position=len(waiting), queue_avg_wait_time_secs=avg)
    w.media.append(m.HoldInQueue(call.call_control_id, q.id))
    return entry


def leave_queue(w: World, call_control_id: str, client_state: str | None) -> Steps[None]:
    yield from w.load(r.CallById(call_control_id), r.EntryOfCall(call_control_id))
    call = live(w, call_control_id)
    check(call, CallEvent.DEQUEUE)
    if client_state is not None:
        call.client_state = client_state
    yield from remove(w, call, DequeueReason.LEAVE)
    park(w, call, CallEvent.DEQUEUE)


def on_timeout(w: World, call_control_id: str) -> Steps[None]:
    yield from w.load(r.CallById(call_control_id), r.EntryOfCall(call_control_id))
    call = w.call(call_control_id)
    if call is not None and call.state is CallState.QUEUED:
        yield from remove(w, call, DequeueReason.TIMEOUT)
        park(w, call, CallEvent.DEQUEUE)


def remove(w: World, call: Call, reason: DequeueReason) -> Steps[None]:
    """Take a live queued ``call`` out of its queue with ``call.dequeued``; the caller moves it on (parks,
    bridges, conferences it) and saves it."""
    yield from w.load(r.EntryOfCall(call.call_control_id))
    entry: QueueEntry | None = w.result(r.EntryOfCall(call.call_control_id))
    if entry is not None:
        yield from w.load(r.QueueById(entry.queue_id), r.EntriesOfQueue(entry.queue_id))
        q: Queue | None = w.result(r.QueueById(entry.queue_id))
        position = position_of(w.result(r.EntriesOfQueue(entry.queue_id)), call.call_control_id)
        w.delete(entry)
        emit_call(w, "call.dequeued", call, queue=q.name if q else None, queue_position=position,
                  wait_time_secs=entry.wait_time_secs(w.now), reason=reason.value)
    if entry is None or entry.max_wait_time_secs:  # enqueue schedules a timeout only with a max wait
        w.cancel("queue_timeout", call.call_control_id)
    call.queue_id = None


def remove_head(w: World, call: Call, head: QueueEntry, q: Queue) -> None:
    """``remove`` for the head of a queue, already read with its queue (the dequeue's one batch)."""
    w.delete(head)
    emit_call(w, "call.dequeued", call, queue=q.name, queue_position=1, wait_time_secs=head.wait_time_secs(w.now),
              reason=DequeueReason.BRIDGED.value)
    if head.max_wait_time_secs:
        w.cancel("queue_timeout", call.call_control_id)
    call.queue_id = None


def leave_on_hangup(w: World, call: Call) -> Steps[None]:
    """A queued caller hung up: it leaves, unless ``keep_after_hangup`` keeps it listed as not alive."""
    yield from w.load(r.EntryOfCall(call.call_control_id))
    entry: QueueEntry | None = w.result(r.EntryOfCall(call.call_control_id))
    w.cancel("queue_timeout", call.call_control_id)
    if entry is None:
        return
    if entry.keep_after_hangup:
        entry.is_alive = False
        w.update(entry)
        return
    yield from w.load(r.QueueById(entry.queue_id), r.EntriesOfQueue(entry.queue_id))
    q: Queue | None = w.result(r.QueueById(entry.queue_id))
    position = position_of(w.result(r.EntriesOfQueue(entry.queue_id)), call.call_control_id)
    w.delete(entry)
    emit_call(w, "call.dequeued", call, queue=q.name if q else None, queue_position=position,
              wait_time_secs=entry.wait_time_secs(w.now), reason=DequeueReason.HANGUP.value)


def position_of(entries: list[QueueEntry], call_control_id: str) -> int:
    """The 1-based place of the call in its queue's entries (0 if not there)."""
    for i, e in enumerate(entries, start=1):
        if e.call_control_id == call_control_id:
            return i
    return 0


def set_keep_after_hangup(w: World, queue_name: str, call_control_id: str, keep: bool) -> Steps[None]:
    """``PATCH /queues/{name}/calls/{id}``."""
    yield from w.load(r.QueueByName(queue_name), r.EntryOfCall(call_control_id))
    q = yield from _named(w, queue_name)
    entry: QueueEntry | None = w.result(r.EntryOfCall(call_control_id))
    if entry is None or entry.queue_id != q.id:
        raise NotFound(f"No call {call_control_id!r} in queue {queue_name!r}.", "10005", "Queued call not found")
    entry.keep_after_hangup = keep
    w.update(entry)


def remove_dead_entry(w: World, queue_name: str, call_control_id: str) -> Steps[None]:
    """``DELETE /queues/{name}/calls/{id}``: remove a call that is no longer alive (kept after hangup)."""
    yield from w.load(r.QueueByName(queue_name), r.EntryOfCall(call_control_id), r.CallById(call_control_id))
    q = yield from _named(w, queue_name)
    entry: QueueEntry | None = w.result(r.EntryOfCall(call_control_id))
    if entry is None or entry.queue_id != q.id:
        raise NotFound(f"No call {call_control_id!r} in queue {queue_name!r}.", "10005", "Queued call not found")
    if entry.is_alive:
        call = w.call(call_control_id)
        if call is not None and call.state is CallState.QUEUED:
            raise reject("90107", "The call is still alive; use leave_queue or bridge it instead.")
    w.delete(entry)
