"""``/virtual``: virtual phones calling in, and what they are doing (a local testing feature, outside /v2)."""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from callroom.api import schemas as s
from callroom.api.common import Account, Ctl, data
from callroom.audio.encode import encode_wav
from callroom.cluster.media import ClusterMedia
from callroom.control import calls
from callroom.control.service import Control, ReadCtx
from callroom.control.virtual_far_end import virtual_speech
from callroom.endpoints.virtual import VirtualPhones
from callroom.errors import NotFound, ValidationFailed
from callroom.model.records import Call
from callroom.model.virtual_phone import VirtualSpec

router = APIRouter(prefix="/virtual")


class VirtualCall(s.Body):
    connection_id: s.Id
    from_: s.Address = Field(default="virtual:caller", alias="from")
    to: s.Address = "+15550000000"


def _call_of(ctx: ReadCtx, account: str, cid: str) -> Call | None:
    return ctx.tx.get_call(account, cid)


def _phones(request: Request) -> VirtualPhones:
    phones: VirtualPhones = request.app.state.virtual_phones
    return phones


def _elsewhere(request: Request, call: Call | None, ctl: Control) -> ClusterMedia | None:
    """In a cluster, the way to a virtual phone that lives on another node (None: it lives here)."""
    cluster: ClusterMedia | None = request.app.state.cluster_media
    if cluster is None or call is None or call.node_id == ctl.node_id:
        return None
    return cluster


@router.post("/calls")
async def call_in(body: VirtualCall, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    """A virtual phone calls the application ``connection_id``; the app gets ``call.initiated``."""
    ctl.admit_call()
    endpoint = body.from_ if body.from_.startswith("virtual:") else f"virtual:{body.from_}"
    try:
        VirtualSpec.parse(endpoint)
    except ValueError as exc:
        raise ValidationFailed.field("/from", str(exc)) from exc
    speech = await ctl.awrite(account, lambda w: virtual_speech(w, endpoint, "/from"))

    call = await ctl.awrite(
        account, lambda w: calls.incoming(w, connection_id=body.connection_id, from_=body.from_, to=body.to,
                                            endpoint=endpoint)
    )
    cid = call.call_control_id
    _phones(request).incoming(cid, endpoint, speech)
    return data({"call_control_id": cid, "record_type": "virtual_call"})


@router.post("/calls/{call_control_id}/hangup")
async def hang_up(call_control_id: str, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    """The virtual phone puts the receiver down."""
    call = await ctl.aread(account, lambda ctx: ctx.tx.get_call(account, call_control_id))
    if call is None or not call.endpoint.startswith("virtual:"):
        raise NotFound(f"No virtual call {call_control_id!r}.")
    remote = _elsewhere(request, call, ctl)
    if remote is not None:
        await remote.hang_up(call.node_id, call_control_id)
    else:
        _phones(request).hang_up(call_control_id)
    return data({"result": "ok"})


@router.get("/phones")
async def list_phones(request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    """The live virtual legs of this account and what each is connected to."""
    out = []
    for leg in list(_phones(request).legs.values()):
        call = await ctl.aread(account, functools.partial(_call_of, account=account, cid=leg.call_control_id))
        if call is not None:
            out.append({"call_control_id": leg.call_control_id, "name": leg.spec.name,
                        "connected_to": leg.connected_to})
    return {"data": out}


class Press(s.Body):
    digits: str = Field(min_length=1, max_length=64, pattern=r"^[0-9*#A-Da-d]+$")
    duration_millis: int = Field(default=100, ge=40, le=1000)


@router.post("/calls/{call_control_id}/dtmf")
async def press(call_control_id: str, body: Press, request: Request, account: Account, ctl: Ctl) -> dict[str, Any]:
    """The virtual phone's user presses keys; the digits travel in-band, as tones in its audio."""
    call = await ctl.aread(account, lambda ctx: ctx.tx.get_call(account, call_control_id))
    remote = _elsewhere(request, call, ctl)
    if call is None:
        pressed = False
    elif remote is not None:
        pressed = await remote.press(call.node_id, call_control_id, body.digits.upper(), body.duration_millis)
    else:
        pressed = _phones(request).press(call_control_id, body.digits.upper(), body.duration_millis)
    if not pressed:
        raise NotFound(f"No connected virtual call {call_control_id!r}.")
    return data({"result": "ok"})


@router.get("/calls/{call_control_id}/heard.wav")
async def heard(
    call_control_id: str, request: Request, account: Account, ctl: Ctl, seconds: float | None = None
) -> Response:
    """What the virtual phone heard (the last ``seconds``, or all it kept), as 8 kHz 16-bit WAV."""
    call = await ctl.aread(account, lambda ctx: ctx.tx.get_call(account, call_control_id))
    remote = _elsewhere(request, call, ctl)
    if call is None:
        samples = None
    elif remote is not None:
        samples = await remote.heard(call.node_id, call_control_id, seconds)
    else:
        samples = await _phones(request).heard(call_control_id, seconds)
    if samples is None:
        raise NotFound(f"No connected virtual call {call_control_id!r}.")
    return Response(encode_wav([samples]), media_type="audio/wav")
