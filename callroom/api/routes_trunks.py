"""``/trunks`` (callroom's: an account's SIP trunks to the phone network) and ``/phone_numbers`` (Telnyx's
shape, as far as it applies: the numbers the trunks bring, each assigned to an application by its
``connection_id``). A change here reaches this node's routing at once (``TrunkSync.reload``), other nodes
within their refresh."""

from __future__ import annotations

import re
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Query, Request
from pydantic import Field

from callroom.api.common import Account, Ctl, PageParams, data
from callroom.api.schemas import Body, IdText, Name
from callroom.control.service import ReadCtx
from callroom.errors import NotFound, ValidationFailed
from callroom.model.trunks import TRUNK_SETTINGS, PhoneNumber, Trunk, TrunkSettings, apply_settings
from callroom.timefmt import iso

router = APIRouter()


class TrunkSync(Protocol):
    """The node's trunks as these routes see them (``callroom/trunk_sync.py``)."""

    async def reload(self) -> None: ...
    def registration(self, trunk_id: str) -> dict[str, object] | None: ...


class TrunkBody(Body):
    """A trunk's settings (``callroom/model/trunks.py``); ``numbers`` are added to the account's numbers."""

    name: Name | None = None
    numbers: list[Annotated[str, Field(max_length=32)]] | None = Field(default=None, max_length=1000)


class PhoneNumberUpdate(Body):
    connection_id: IdText | None = None
    tags: list[Annotated[str, Field(max_length=255)]] | None = Field(default=None, max_length=100)


def trunk_view(t: Trunk, sync: TrunkSync | None) -> dict[str, Any]:
    return {
        "id": t.id, "record_type": "trunk", "name": t.name, "host": t.host, "port": t.port,
        "transport": t.transport, "username": t.username, "password_set": t.password is not None,
        "register": t.register, "register_expires": t.register_expires,
        "registration": sync.registration(t.id) if sync is not None else None,
        "inbound_networks": t.inbound_networks, "allowed_from": t.allowed_from,
        "caller_id_header": t.caller_id_header, "number_format": t.number_format, "tech_prefix": t.tech_prefix,
        "codecs": t.codecs, "srtp": t.srtp, "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
    }  # fmt: skip


def number_view(n: PhoneNumber) -> dict[str, Any]:
    return {
        "id": n.id, "record_type": "phone_number", "phone_number": n.phone_number, "status": "active",
        "connection_id": n.connection_id, "trunk_id": n.trunk_id, "tags": n.tags,
        "created_at": iso(n.created_at), "updated_at": iso(n.updated_at),
    }  # fmt: skip


def _sync(request: Request) -> TrunkSync | None:
    sync: TrunkSync | None = getattr(request.app.state, "trunks", None)
    return sync


async def _changed(request: Request) -> None:
    sync = _sync(request)
    if sync is not None:
        await sync.reload()


def _settings(body: TrunkBody, name: str) -> TrunkSettings:
    table = {k: v for k, v in body.model_dump(exclude_unset=True).items() if k != "name"}
    try:
        return TrunkSettings.of(name, table)
    except ValueError as exc:
        raise _invalid(exc) from exc


def _invalid(exc: ValueError) -> ValidationFailed:
    """A 422 whose pointer names the setting the message is about (``trunk NAME: SETTING ...``)."""
    m = re.match(r"trunk [^:]*: (\w+)", str(exc))
    setting = m.group(1) if m is not None and m.group(1) in TRUNK_SETTINGS else ""
    return ValidationFailed.field(f"/{setting}", str(exc))


def _trunk(ctx: ReadCtx, trunk_id: str) -> Trunk:
    trunk = ctx.tx.get_trunk(ctx.account_id, trunk_id)
    if trunk is None:
        raise NotFound(f"No trunk {trunk_id!r}.")
    return trunk


@router.post("/trunks")
async def create_trunk(body: TrunkBody, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    if not body.name:
        raise ValidationFailed.field("/name", "A trunk needs a name.")
    spec = _settings(body, body.name)

    def run(ctx: ReadCtx) -> Trunk:
        if ctx.tx.get_trunk(ctx.account_id, spec.name) is not None:
            raise ValidationFailed.field("/name", f"There is a trunk named {spec.name!r} already.")
        try:
            return ctx.tx.put_trunk(ctx.account_id, spec, ctx.now)
        except ValueError as exc:
            raise _invalid(exc) from exc

    trunk = await ctl.astore_rows(account, run)
    await _changed(request)
    return data(trunk_view(trunk, _sync(request)))


@router.get("/trunks")
async def list_trunks(request: Request, account: Account, ctl: Ctl, page: PageParams) -> dict[str, Any]:
    items, total = await ctl.aread(account, lambda ctx: ctx.tx.list_trunks(account, page.number, page.size))
    return page.envelope([trunk_view(t, _sync(request)) for t in items], total)


@router.get("/trunks/{trunk_id}")
async def retrieve_trunk(trunk_id: str, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    trunk = await ctl.aread(account, lambda ctx: _trunk(ctx, trunk_id))
    return data(trunk_view(trunk, _sync(request)))


@router.patch("/trunks/{trunk_id}")
async def update_trunk(trunk_id: str, body: TrunkBody, request: Request, account: Account,
                       ctl: Ctl) -> dict[str, Any]:  # fmt: skip
    def run(ctx: ReadCtx) -> Trunk:
        trunk = _trunk(ctx, trunk_id)
        spec = _settings(body, body.name or trunk.name)
        try:
            apply_settings(trunk, spec.settings)
        except ValueError as exc:
            raise _invalid(exc) from exc
        trunk.name, trunk.updated_at = spec.name, ctx.now
        ctx.tx.update_trunk(trunk)
        for number in spec.numbers:
            try:
                ctx.tx.add_phone_number(ctx.account_id, number, trunk.id, ctx.now)
            except ValueError as exc:
                raise ValidationFailed.field("/numbers", str(exc)) from exc
        return trunk

    trunk = await ctl.astore_rows(account, run)
    await _changed(request)
    return data(trunk_view(trunk, _sync(request)))


@router.delete("/trunks/{trunk_id}")
async def delete_trunk(trunk_id: str, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    def run(ctx: ReadCtx) -> Trunk:
        trunk = _trunk(ctx, trunk_id)
        ctx.tx.delete_trunk(ctx.account_id, trunk.id)
        return trunk

    trunk = await ctl.astore_rows(account, run)
    await _changed(request)
    return data(trunk_view(trunk, None))


# -- phone numbers ------------------------------------------------------------------------------------------


def _number(ctx: ReadCtx, number_id: str) -> PhoneNumber:
    found = ctx.tx.get_phone_number(ctx.account_id, number_id)
    if found is None:
        raise NotFound(f"No phone number {number_id!r}.")
    return found


@router.get("/phone_numbers")
async def list_phone_numbers(
    account: Account, ctl: Ctl, page: PageParams,
    phone_number: Annotated[str | None, Query(alias="filter[phone_number]", max_length=32)] = None,
    connection_id: Annotated[str | None, Query(alias="filter[connection_id]", max_length=64)] = None,
) -> dict[str, Any]:  # fmt: skip
    items, total = await ctl.aread(account, lambda ctx: ctx.tx.list_phone_numbers(
        account, page.number, page.size, connection_id=connection_id, contains=phone_number))
    return page.envelope([number_view(n) for n in items], total)


@router.get("/phone_numbers/{number_id}")
async def retrieve_phone_number(number_id: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    return data(number_view(await ctl.aread(account, lambda ctx: _number(ctx, number_id))))


@router.patch("/phone_numbers/{number_id}")
async def update_phone_number(number_id: str, body: PhoneNumberUpdate, request: Request, account: Account,
                              ctl: Ctl) -> dict[str, Any]:  # fmt: skip
    fields = body.model_dump(exclude_unset=True)

    def run(ctx: ReadCtx) -> PhoneNumber:
        found = _number(ctx, number_id)
        if "connection_id" in fields:
            connection_id = fields["connection_id"] or None
            if connection_id is not None and ctx.tx.get_application(ctx.account_id, connection_id) is None:
                raise ValidationFailed.field("/connection_id", f"No call control application {connection_id!r}.")
            found.connection_id = connection_id
        if body.tags is not None:
            found.tags = list(body.tags)
        found.updated_at = ctx.now
        ctx.tx.update_phone_number(found)
        return found

    updated = await ctl.astore_rows(account, run)
    await _changed(request)
    return data(number_view(updated))
