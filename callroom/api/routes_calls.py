"""``/calls``: dial, status, and the call-control core actions (answer, hangup, reject, bridge, queues)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from callroom.api import schemas as s
from callroom.api import schemas_listen as s_listen
from callroom.api import schemas_media as s_media
from callroom.api import views
from callroom.api.common import OK, Account, Ctl, PageParams, data
from callroom.control import bridges, calls, listening, queues
from callroom.control.service import Duplicate, ReadCtx
from callroom.control.world import Steps, World
from callroom.errors import NotFound
from callroom.model.records import Call

router = APIRouter()


@router.post("/calls")
async def dial(body: s_listen.DialListening, account: Account, ctl: Ctl) -> dict[str, Any]:
    ctl.admit_call()  # a draining or overloaded node refuses at once (503), before anything is written
    to = body.to if isinstance(body.to, str) else body.to[0]
    req = calls.DialRequest(
        connection_id=body.connection_id,
        from_=body.from_,
        to=to,
        client_state=body.client_state,
        timeout_secs=body.timeout_secs,
        time_limit_secs=body.time_limit_secs,
        webhook_url=body.webhook_url,
        webhook_url_method=body.webhook_url_method,
        conference_config=body.conference_config.model_dump() if body.conference_config else None,
        link_to=body.link_to,
        bridge_on_answer=body.bridge_on_answer,
        park_after_unbridge=body.park_after_unbridge,
    )
    listen = body.listening()

    def run(w: World) -> Steps[Call]:
        call = yield from calls.dial(w, req)
        listening.listen_on(w, call, listen)
        return call

    result = await ctl.arun(account, run, dedupe=("dial", body.command_id))
    if isinstance(result, Duplicate):
        # The same command_id within 60 s: answer with the call the first request dialled.
        earlier_id = result.result or ""
        earlier = await ctl.aread(account, lambda ctx: ctx.tx.get_call(account, earlier_id))
        if earlier is None:
            raise NotFound("The call dialled by this command_id no longer exists.", "90015")
        result = earlier
    return data(views.call(result, now=ctl.clock(), dial_response=True))


@router.get("/calls/{call_control_id}")
async def retrieve_call(call_control_id: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    def read(ctx: ReadCtx) -> dict[str, Any]:
        call = ctx.tx.get_call(account, call_control_id)
        if call is None:
            raise NotFound(f"No call with call_control_id {call_control_id!r}.", "90015", "Invalid Call Control ID")
        return data(views.call(call, now=ctx.now))

    return await ctl.aread(account, read)


@router.get("/connections/{connection_id}/active_calls")
async def list_active_calls(connection_id: str, account: Account, ctl: Ctl, page: PageParams) -> dict[str, Any]:
    """The calls of an application (a call control application's id is its connection_id) not ended yet."""
    def read(ctx: ReadCtx) -> dict[str, Any]:
        if ctx.tx.get_application(account, connection_id) is None:
            raise NotFound(f"No connection {connection_id!r}.", "10005", "Resource not found")
        items, total = ctx.tx.list_active_calls(account, connection_id, page.number, page.size)
        return page.envelope([views.active_call(c, now=ctx.now) for c in items], total)

    return await ctl.aread(account, read)


@router.put("/calls/{call_control_id}/actions/client_state_update")
async def client_state_update(
    call_control_id: str, body: s_media.ClientStateUpdate, account: Account, ctl: Ctl
) -> dict[str, Any]:
    await ctl.arun(account, lambda w: calls.update_client_state(w, call_control_id, body.client_state))
    return OK


@router.post("/calls/{call_control_id}/actions/answer")
async def answer(call_control_id: str, account: Account, ctl: Ctl,
                 body: s_listen.AnswerListening | None = None) -> dict[str, Any]:  # fmt: skip
    b = body or s_listen.AnswerListening()
    listen = b.listening()

    def run(w: World) -> Steps[None]:
        yield from calls.answer(w, call_control_id, client_state=b.client_state, webhook_url=b.webhook_url,
                                webhook_url_method=b.webhook_url_method)
        call = w.call(call_control_id)
        if call is not None:
            listening.listen_on(w, call, listen)

    await ctl.arun(account, run, dedupe=(call_control_id, b.command_id))
    return OK


@router.post("/calls/{call_control_id}/actions/hangup")
async def hangup(
    call_control_id: str, account: Account, ctl: Ctl, body: s.CallCommand | None = None
) -> dict[str, Any]:
    b = body or s.CallCommand()
    quality = await ctl.call_quality(call_control_id)  # read before the leg is released
    await ctl.arun(
        account, lambda w: calls.hangup(w, call_control_id, client_state=b.client_state, quality=quality),
        dedupe=(call_control_id, b.command_id),
    )
    return OK


@router.post("/calls/{call_control_id}/actions/reject")
async def reject(call_control_id: str, body: s.Reject, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(
        account, lambda w: calls.reject_call(w, call_control_id, cause=body.cause, client_state=body.client_state),
        dedupe=(call_control_id, body.command_id),
    )
    return OK


@router.post("/calls/{call_control_id}/actions/bridge")
async def bridge(call_control_id: str, body: s.Bridge, account: Account, ctl: Ctl) -> dict[str, Any]:
    def run(w: World) -> Steps[None]:
        if body.queue:
            return bridges.dequeue_to(w, call_control_id, body.queue, body.client_state,
                                      park_after_unbridge=body.park_after_unbridge,
                                      hold_after_unbridge=body.hold_after_unbridge)
        assert body.call_control_id is not None
        return bridges.bridge(
            w, call_control_id, body.call_control_id, client_state=body.client_state,
            park_after_unbridge=body.park_after_unbridge, hold_after_unbridge=body.hold_after_unbridge,
            prevent_double_bridge=body.prevent_double_bridge,
        )

    await ctl.arun(account, run, dedupe=(call_control_id, body.command_id))
    return OK


@router.post("/calls/{call_control_id}/actions/enqueue")
async def enqueue(call_control_id: str, body: s.Enqueue, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(
        account,
        lambda w: queues.enqueue(
            w, call_control_id, body.queue_name, client_state=body.client_state, max_size=body.max_size,
            max_wait_time_secs=body.max_wait_time_secs, keep_after_hangup=body.keep_after_hangup,
        ),
        dedupe=(call_control_id, body.command_id),
    )
    return OK


@router.post("/calls/{call_control_id}/actions/leave_queue")
async def leave_queue(
    call_control_id: str, account: Account, ctl: Ctl, body: s.CallCommand | None = None
) -> dict[str, Any]:
    b = body or s.CallCommand()
    await ctl.arun(
        account, lambda w: queues.leave_queue(w, call_control_id, b.client_state),
        dedupe=(call_control_id, b.command_id),
    )
    return OK
