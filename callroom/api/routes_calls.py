"""``/calls``: dial, status, and the call-control core actions (answer, hangup, reject, bridge, queues)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from callroom.api import schemas as s
from callroom.api import schemas_listen as s_listen
from callroom.api import schemas_media as s_media
from callroom.api import views
from callroom.api.common import OK, Account, Ctl, PageParams, data
from callroom.api.unhonoured import refuse_unhonoured
from callroom.control import bridges, calls, listening, queues, sip_actions, transfer
from callroom.control.links import OnAnswer, switch_role
from callroom.control.service import Duplicate, ReadCtx
from callroom.control.world import Steps, World
from callroom.errors import CommandRejected, NotFound
from callroom.model.records import Call

router = APIRouter()


def _record(body: s.OnAnswer | s.Answer, request: Request) -> dict[str, Any] | None:
    """``record: record-from-answer``'s options, with where this node keeps recordings and serves them."""
    if body.record is None:
        return None
    return {"format": body.record_format, "channels": body.record_channels, "trim": body.record_trim is not None,
            "max_length": body.record_max_length, "custom_file_name": body.record_custom_file_name,
            "timeout_secs": body.record_timeout_secs,
            "storage": str(request.app.state.recordings_dir),
            "download_base": str(request.base_url).rstrip("/")}  # fmt: skip


def _no_credentials(body: s.SipHeaders, command: str) -> None:
    if body.credentials() is not None:
        raise CommandRejected("10015", "Invalid value", f"sip_auth_username is not supported by callroom's "
                              f"{command}; leave it out.", "/sip_auth_username")


@router.post("/calls")
async def dial(body: s_listen.DialListening, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    refuse_unhonoured("dial", body)
    ctl.admit_call()  # a draining or overloaded node refuses at once (503), before anything is written
    targets = [body.to] if isinstance(body.to, str) else body.to
    req = calls.DialRequest(
        connection_id=body.connection_id,
        from_=body.from_,
        to=targets[0],
        ring_also=tuple(targets[1:]),
        supervise=body.supervise_call_control_id or None,
        supervisor_role=body.supervisor_role,
        headers=body.invite_headers(),
        credentials=body.credentials(),
        prevent_double_bridge=body.prevent_double_bridge,
        from_display_name=body.from_display_name,
        anonymous=body.privacy == "id",
        client_state=body.client_state,
        timeout_secs=body.timeout_secs,
        time_limit_secs=body.time_limit_secs,
        webhook_url=body.webhook_url,
        webhook_url_method=body.webhook_url_method,
        conference_config=body.conference_config.model_dump() if body.conference_config else None,
        link_to=body.link_to,
        bridge_on_answer=body.bridge_on_answer,
        park_after_unbridge=body.park_after_unbridge,
        on_answer=OnAnswer(audio_url=body.audio_url, media_name=body.media_name, digits=body.send_digits_on_answer,
                           record=_record(body, request)),
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
async def answer(call_control_id: str, request: Request, account: Account, ctl: Ctl,
                 body: s_listen.AnswerListening | None = None) -> dict[str, Any]:  # fmt: skip
    b = body or s_listen.AnswerListening()
    refuse_unhonoured("answer", b)
    _no_credentials(b, "answer")  # (an answer sends no request to be challenged)
    record = _record(b, request)
    listen = b.listening()

    def run(w: World) -> Steps[None]:
        yield from calls.answer(w, call_control_id, client_state=b.client_state, webhook_url=b.webhook_url,
                                webhook_url_method=b.webhook_url_method, record=record, headers=b.invite_headers())
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


@router.post("/calls/{call_control_id}/actions/transfer")
async def transfer_call(call_control_id: str, body: s.Transfer, request: Request, account: Account,
                        ctl: Ctl) -> dict[str, Any]:  # fmt: skip
    refuse_unhonoured("transfer", body)
    ctl.admit_call()  # a new leg: a draining or overloaded node refuses it as it refuses a dial
    req = transfer.TransferRequest(
        to=body.to, from_=body.from_, client_state=body.client_state,
        target_leg_client_state=body.target_leg_client_state, timeout_secs=body.timeout_secs,
        time_limit_secs=body.time_limit_secs, audio_url=body.audio_url, media_name=body.media_name,
        early_media=body.early_media, webhook_url=body.webhook_url, webhook_url_method=body.webhook_url_method,
        park_after_unbridge=body.park_after_unbridge,
        on_answer=OnAnswer(digits=body.send_digits_on_answer, record=_record(body, request)),
        headers=body.invite_headers(), credentials=body.credentials(), from_display_name=body.from_display_name,
        anonymous=body.privacy == "id",
    )  # fmt: skip
    await ctl.arun(account, lambda w: transfer.transfer(w, call_control_id, req),
                   dedupe=(call_control_id, body.command_id))
    return OK


@router.post("/calls/{call_control_id}/actions/switch_supervisor_role")
async def switch_supervisor_role(call_control_id: str, body: s.SwitchSupervisorRole, account: Account,
                                 ctl: Ctl) -> dict[str, Any]:  # fmt: skip
    await ctl.arun(account, lambda w: switch_role(w, call_control_id, body.role))
    return OK


@router.post("/calls/{call_control_id}/actions/send_sip_info")
async def send_sip_info(call_control_id: str, body: s.SendSipInfo, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(account, lambda w: sip_actions.send_sip_info(
        w, call_control_id, content_type=body.content_type, body=body.body, client_state=body.client_state,
    ), dedupe=(call_control_id, body.command_id))
    return OK


@router.post("/calls/{call_control_id}/actions/refer")
async def refer(call_control_id: str, body: s.Refer, account: Account, ctl: Ctl) -> dict[str, Any]:
    _no_credentials(body, "refer")  # (a challenge to the REFER itself is not answered)
    await ctl.arun(account, lambda w: sip_actions.refer(
        w, call_control_id, sip_address=body.sip_address, headers=body.invite_headers(),
        client_state=body.client_state,
    ), dedupe=(call_control_id, body.command_id))
    return OK
