"""Lookups the API's read-only routes share (a conference by id or name, a queue and its figures): no locks,
nothing decided."""

from __future__ import annotations

from callroom.control.queues import QueueFigures, figures_of, position_of
from callroom.control.service import ReadCtx
from callroom.errors import NotFound
from callroom.model.records import Conference, Queue, QueueEntry


def find_conference(q: ReadCtx, id_or_name: str, *, by_name: bool = True) -> Conference:
    """A conference by id, or by the name of an active one; 404 90058 otherwise."""
    conf = q.tx.get_conference(q.account_id, id_or_name)
    if conf is None and by_name:
        conf = q.tx.active_conference_by_name(q.account_id, id_or_name)
    if conf is None:
        raise NotFound(f"No conference with id{' or name' if by_name else ''} {id_or_name!r}.", "90058",
                       "Conference not found")
    return conf


def queue_named(q: ReadCtx, name: str) -> Queue:
    queue = q.tx.get_queue(q.account_id, name)
    if queue is None:
        raise NotFound(f"No queue named {name!r}.", "10005", "Queue not found")
    return queue


def queue_figures(q: ReadCtx, listed: list[Queue]) -> dict[str, QueueFigures]:
    """Each queue's size and average wait now."""
    sizes = q.tx.queue_sizes([queue.id for queue in listed])
    return {queue.id: figures_of(*sizes.get(queue.id, (0, 0.0)), now=q.now) for queue in listed}


def queue_entry(q: ReadCtx, queue_name: str, call_control_id: str) -> tuple[QueueEntry, int]:
    """A call listed in a queue and its 1-based place there; 404 if it is not listed."""
    entries = q.tx.queue_entries(queue_named(q, queue_name).id)
    position = position_of(entries, call_control_id)
    if not position:
        raise NotFound(f"No call {call_control_id!r} in queue {queue_name!r}.", "10005", "Queued call not found")
    return entries[position - 1], position
