"""``/queues``: queues and the calls waiting in them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from callroom.api import schemas as s
from callroom.api import views
from callroom.api.common import Account, Ctl, PageParams, data
from callroom.control import queues
from callroom.control.context import Ctx
from callroom.errors import NotFound
from callroom.model.records import QueueEntry

router = APIRouter()


def _queue_view(ctx: Ctx, name: str) -> dict[str, Any]:
    q = queues.get_queue(ctx, name)
    return data(views.queue(q, queues.figures(ctx, [q])[q.id]))


@router.get("/queues")
async def list_queues(account: Account, ctl: Ctl, page: PageParams) -> dict[str, Any]:
    def read(ctx: Ctx) -> dict[str, Any]:
        items, total = ctx.tx.list_queues(account, page.number, page.size)
        figs = queues.figures(ctx, items)
        return page.envelope([views.queue(q, figs[q.id]) for q in items], total)

    return await ctl.aread(account, read)


@router.post("/queues")
async def create_queue(body: s.QueueCreate, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(account, lambda ctx: queues.create_queue(ctx, body.queue_name, body.max_size))
    return await ctl.aread(account, lambda ctx: _queue_view(ctx, body.queue_name))


@router.get("/queues/{queue_name}")
async def retrieve_queue(queue_name: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    return await ctl.aread(account, lambda ctx: _queue_view(ctx, queue_name))


@router.post("/queues/{queue_name}")
async def update_queue(queue_name: str, body: s.QueueUpdate, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(account, lambda ctx: queues.update_queue(ctx, queue_name, body.max_size))
    return await ctl.aread(account, lambda ctx: _queue_view(ctx, queue_name))


@router.delete("/queues/{queue_name}", status_code=204)
async def delete_queue(queue_name: str, account: Account, ctl: Ctl) -> Response:
    await ctl.arun(account, lambda ctx: queues.delete_queue(ctx, queue_name))
    return Response(status_code=204)


@router.get("/queues/{queue_name}/calls")
async def list_queue_calls(queue_name: str, account: Account, ctl: Ctl, page: PageParams) -> dict[str, Any]:
    def read(ctx: Ctx) -> dict[str, Any]:
        q = queues.get_queue(ctx, queue_name)
        entries = ctx.tx.queue_entries(q.id)
        start = (page.number - 1) * page.size
        rows = [
            views.queue_call(e, start + i + 1, ctx.now) for i, e in enumerate(entries[start : start + page.size])
        ]
        return page.envelope(rows, len(entries))

    return await ctl.aread(account, read)


def _entry(ctx: Ctx, queue_name: str, call_control_id: str) -> tuple[QueueEntry, int]:
    q = queues.get_queue(ctx, queue_name)
    entries = ctx.tx.queue_entries(q.id)
    position = queues.entry_position(entries, call_control_id)
    if not position:
        raise NotFound(f"No call {call_control_id!r} in queue {queue_name!r}.", "10005", "Queued call not found")
    return entries[position - 1], position


@router.get("/queues/{queue_name}/calls/{call_control_id}")
async def retrieve_queue_call(queue_name: str, call_control_id: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    def read(ctx: Ctx) -> dict[str, Any]:
        entry, position = _entry(ctx, queue_name, call_control_id)
        return data(views.queue_call(entry, position, ctx.now))

    return await ctl.aread(account, read)


@router.patch("/queues/{queue_name}/calls/{call_control_id}", status_code=204)
async def update_queue_call(
    queue_name: str, call_control_id: str, body: s.QueueCallPatch, account: Account, ctl: Ctl
) -> Response:
    def run(ctx: Ctx) -> None:
        entry, _ = _entry(ctx, queue_name, call_control_id)
        if body.keep_after_hangup is not None:
            entry.keep_after_hangup = body.keep_after_hangup
            ctx.tx.update_queue_entry(entry)

    await ctl.arun(account, run)
    return Response(status_code=204)


@router.delete("/queues/{queue_name}/calls/{call_control_id}", status_code=204)
async def remove_queue_call(queue_name: str, call_control_id: str, account: Account, ctl: Ctl) -> Response:
    await ctl.arun(account, lambda ctx: queues.remove_dead_entry(ctx, queue_name, call_control_id))
    return Response(status_code=204)
