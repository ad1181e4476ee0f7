"""Commands that let software listen to a call: ``streaming_start``/``streaming_stop`` (Telnyx's media
streaming over WebSocket), ``fork_start``/``fork_stop`` (the call's RTP to UDP targets) and
``transcription_start``/``transcription_stop`` (live transcription, ``media/transcribe.py``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from callroom.api import schemas_listen as s
from callroom.api.common import OK, Account, Ctl
from callroom.control import listening

router = APIRouter()


@router.post("/calls/{cid}/actions/streaming_start")
async def streaming_start(cid: str, body: s.StreamingStart, account: Account, ctl: Ctl) -> dict[str, Any]:
    req = body.stream_request()
    assert req is not None  # stream_url is required here
    await ctl.arun(account, lambda w: listening.streaming_start(w, cid, req, body.client_state),
                   dedupe=(cid, body.command_id))
    return OK


@router.post("/calls/{cid}/actions/streaming_stop")
async def streaming_stop(cid: str, account: Account, ctl: Ctl, body: s.StreamingStop | None = None) -> dict[str, Any]:
    b = body or s.StreamingStop()
    await ctl.arun(account, lambda w: listening.streaming_stop(w, cid, b.stream_id, b.client_state),
                   dedupe=(cid, b.command_id))
    return OK


@router.post("/calls/{cid}/actions/fork_start")
async def fork_start(cid: str, body: s.ForkStart, account: Account, ctl: Ctl) -> dict[str, Any]:
    rx, tx = body.rx or body.target, body.tx or body.target
    await ctl.arun(account, lambda w: listening.fork_start(w, cid, rx, tx, body.client_state),
                   dedupe=(cid, body.command_id))
    return OK


@router.post("/calls/{cid}/actions/fork_stop")
async def fork_stop(cid: str, account: Account, ctl: Ctl, body: s.StreamingStop | None = None) -> dict[str, Any]:
    b = body or s.StreamingStop()
    await ctl.arun(account, lambda w: listening.fork_stop(w, cid, b.client_state), dedupe=(cid, b.command_id))
    return OK


@router.post("/calls/{cid}/actions/transcription_start")
async def transcription_start(cid: str, account: Account, ctl: Ctl,
                              body: s.TranscriptionStart | None = None) -> dict[str, Any]:  # fmt: skip
    b = body or s.TranscriptionStart()
    req = b.transcription_request()
    await ctl.arun(account, lambda w: listening.transcription_start(w, cid, req, b.client_state),
                   dedupe=(cid, b.command_id))
    return OK


@router.post("/calls/{cid}/actions/transcription_stop")
async def transcription_stop(cid: str, account: Account, ctl: Ctl,
                             body: s.StreamingStop | None = None) -> dict[str, Any]:  # fmt: skip
    b = body or s.StreamingStop()
    await ctl.arun(account, lambda w: listening.transcription_stop(w, cid, b.client_state),
                   dedupe=(cid, b.command_id))
    return OK
