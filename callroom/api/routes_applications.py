"""``/call_control_applications``: where each call's webhooks go."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from callroom.api import schemas as s
from callroom.api import views
from callroom.api.common import Account, Ctl, PageParams, data
from callroom.control.service import ReadCtx
from callroom.errors import NotFound
from callroom.model.records import Application, new_application_id

router = APIRouter()


def _get(ctx: ReadCtx, app_id: str) -> Application:
    app = ctx.tx.get_application(ctx.account_id, app_id)
    if app is None:
        raise NotFound(f"No call control application {app_id!r}.", "10005", "Resource not found")
    return app


def _apply(app: Application, body: s.Application) -> None:
    fields = body.model_dump(exclude_unset=True)
    for name in (
        "application_name", "webhook_event_url", "webhook_event_failover_url", "webhook_timeout_secs",
        "webhook_api_version", "active", "anchorsite_override", "dtmf_type", "first_command_timeout",
        "first_command_timeout_secs", "tags", "call_cost_in_webhooks", "redact_dtmf_debug_logging",
    ):
        if name in fields:
            setattr(app, name, fields[name])
    if body.inbound is not None:
        app.inbound = body.inbound.model_dump(exclude_none=True)
    if body.outbound is not None:
        app.outbound = body.outbound.model_dump(exclude_none=True)


@router.post("/call_control_applications")
async def create_application(body: s.Application, account: Account, ctl: Ctl) -> dict[str, Any]:
    def run(ctx: ReadCtx) -> dict[str, Any]:
        app = Application(
            id=new_application_id(), account_id=account, application_name=body.application_name,
            webhook_event_url=body.webhook_event_url, created_at=ctx.now, updated_at=ctx.now,
        )
        _apply(app, body)
        ctx.tx.insert_application(app)
        return data(views.application(app))

    return await ctl.astore_rows(account, run)


@router.get("/call_control_applications")
async def list_applications(
    account: Account,
    ctl: Ctl,
    page: PageParams,
    name: Annotated[str | None, Query(alias="filter[application_name][contains]")] = None,
) -> dict[str, Any]:
    items, total = await ctl.aread(account, lambda ctx: ctx.tx.list_applications(account, page.number, page.size, name))
    return page.envelope([views.application(a) for a in items], total)


@router.get("/call_control_applications/{app_id}")
async def retrieve_application(app_id: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    return await ctl.aread(account, lambda ctx: data(views.application(_get(ctx, app_id))))


@router.patch("/call_control_applications/{app_id}")
async def update_application(app_id: str, body: s.Application, account: Account, ctl: Ctl) -> dict[str, Any]:
    def run(ctx: ReadCtx) -> dict[str, Any]:
        app = _get(ctx, app_id)
        _apply(app, body)
        app.updated_at = ctx.now
        ctx.tx.update_application(app)
        return data(views.application(app))

    return await ctl.astore_rows(account, run)


@router.delete("/call_control_applications/{app_id}")
async def delete_application(app_id: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    def run(ctx: ReadCtx) -> dict[str, Any]:
        app = _get(ctx, app_id)
        ctx.tx.delete_application(account, app_id)
        return data(views.application(app))

    return await ctl.astore_rows(account, run)
