"""``/queues``: queues and the calls waiting in them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from callroom.api import schemas as s
from callroom.api import views
from callroom.api.common import Account, Ctl, PageParams, data
from callroom.control import queues
from callroom.control.queries import queue_entry, queue_figures, queue_named
from callroom.control.service import ReadCtx

router = APIRouter()


def _queue_view(ctx: ReadCtx, name: str) -> dict[str, Any]:
    q = queue_named(ctx, name)
    return data(views.queue(q, queue_figures(ctx, [q])[q.id]))


@router.get("/queues")
async def list_queues(account: Account, ctl: Ctl, page: PageParams) -> dict[str, Any]:
    def read(ctx: ReadCtx) -> dict[str, Any]:
        items, total = ctx.tx.list_queues(account, page.number, page.size)
        figs = queue_figures(ctx, items)
        return page.envelope([views.queue(q, figs[q.id]) for q in items], total)

    return await ctl.aread(account, read)


@router.post("/queues")
async def create_queue(body: s.QueueCreate, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(account, lambda w: queues.create_queue(w, body.queue_name, body.max_size))
    return await ctl.aread(account, lambda ctx: _queue_view(ctx, body.queue_name))


@router.get("/queues/{queue_name}")
async def retrieve_queue(queue_name: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    return await ctl.aread(account, lambda ctx: _queue_view(ctx, queue_name))


@router.post("/queues/{queue_name}")
async def update_queue(queue_name: str, body: s.QueueUpdate, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(account, lambda w: queues.update_queue(w, queue_name, body.max_size))
    return await ctl.aread(account, lambda ctx: _queue_view(ctx, queue_name))


@router.delete("/queues/{queue_name}", status_code=204)
async def delete_queue(queue_name: str, account: Account, ctl: Ctl) -> Response:
    await ctl.arun(account, lambda w: queues.delete_queue(w, queue_name))
    return Response(status_code=204)


@router.get("/queues/{queue_name}/calls")
async def list_queue_calls(queue_name: str, account: Account, ctl: Ctl, page: PageParams) -> dict[str, Any]:
    def read(ctx: ReadCtx) -> dict[str, Any]:
        q = queue_named(ctx, queue_name)
        entries = ctx.tx.queue_entries(q.id)
        start = (page.number - 1) * page.size
        rows = [
            views.queue_call(e, start + i + 1, ctx.now) for i, e in enumerate(entries[start : start + page.size])
        ]
        return page.envelope(rows, len(entries))

    return await ctl.aread(account, read)


@router.get("/queues/{queue_name}/calls/{call_control_id}")
async def retrieve_queue_call(queue_name: str, call_control_id: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    def read(ctx: ReadCtx) -> dict[str, Any]:
        entry, position = queue_entry(ctx, queue_name, call_control_id)
        return data(views.queue_call(entry, position, ctx.now))

    return await ctl.aread(account, read)


@router.patch("/queues/{queue_name}/calls/{call_control_id}", status_code=204)
async def update_queue_call(
    queue_name: str, call_control_id: str, body: s.QueueCallPatch, account: Account, ctl: Ctl
) -> Response:
    if body.keep_after_hangup is not None:
        keep = body.keep_after_hangup
        await ctl.arun(account, lambda w: queues.set_keep_after_hangup(w, queue_name, call_control_id, keep))
    else:  # nothing to change, but the queue and the call must exist
        await ctl.aread(account, lambda ctx: queue_entry(ctx, queue_name, call_control_id))
    return Response(status_code=204)


@router.delete("/queues/{queue_name}/calls/{call_control_id}", status_code=204)
async def remove_queue_call(queue_name: str, call_control_id: str, account: Account, ctl: Ctl) -> Response:
    await ctl.arun(account, lambda w: queues.remove_dead_entry(w, queue_name, call_control_id))
    return Response(status_code=204)
