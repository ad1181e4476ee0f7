"""The web console's routes: the page and its files (from ``callroom/console/static``, shipped in the
package), the push channel (``/console/events``, server-sent events of the key's account only) and the
operations figures' recent history."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from callroom.api.common import Account, Ctl
from callroom.console.figures import OperationsFigures
from callroom.console.hub import ConsoleHub, sse
from callroom.errors import NotFound
from callroom.store import console as console_store
from callroom.timefmt import iso

router = APIRouter(include_in_schema=False)

KEEPALIVE_SECS = 15.0
_STATIC = resources.files("callroom.console") / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png",
          ".svg": "image/svg+xml", ".LICENSE": "text/plain", "": "text/plain"}  # fmt: skip


def _files() -> dict[str, tuple[bytes, str]]:
    """Every file the page may load, by its path under /console/static: nothing else is served."""
    found: dict[str, tuple[bytes, str]] = {}
    for top in _STATIC.iterdir():
        for entry in (top.iterdir() if top.is_dir() else [top]):
            name = entry.name if not top.is_dir() else f"{top.name}/{entry.name}"
            suffix = "." + entry.name.rsplit(".", 1)[1] if "." in entry.name else ""
            found[name] = (entry.read_bytes(), _TYPES.get(suffix, "application/octet-stream"))
    return found


FILES = _files()
INDEX = FILES["index.html"][0]
# The page's one inline script is its import map; the policy allows it by its hash, and nothing else
# inline (the page puts names and client states in as text, and this stops any markup that got through).
_IMPORT_MAP = re.search(rb'<script type="importmap">(.*?)</script>', INDEX, re.S)
_MAP_HASH = base64.b64encode(hashlib.sha256(_IMPORT_MAP.group(1) if _IMPORT_MAP else b"").digest()).decode()
POLICY = (f"default-src 'self'; script-src 'self' 'sha256-{_MAP_HASH}'; style-src 'self'; img-src 'self' data:; "
          "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"content-security-policy": POLICY, "x-content-type-options": "nosniff", "cache-control": "no-cache"}


@router.get("/console")
async def console_page() -> HTMLResponse:
    return HTMLResponse(INDEX, headers=HEADERS)


@router.get("/console/static/{name:path}")
async def console_file(name: str) -> Response:
    found = FILES.get(name)
    if found is None:
        raise NotFound(f"No console file {name!r}.")
    return Response(found[0], media_type=found[1], headers=HEADERS)


def _hub(request: Request) -> ConsoleHub:
    hub: ConsoleHub = request.app.state.console_hub
    return hub


def _figures(request: Request) -> OperationsFigures | None:
    figures: OperationsFigures | None = getattr(request.app.state, "operations_figures", None)
    return figures


@router.get("/console/events")
async def console_events(account: Account, request: Request) -> StreamingResponse:
    """The account's events as they are committed (``webhook``), who has the floor of its conferences
    (``floor``), the node's figures each second (``figures``); ``resync`` when it fell behind."""
    hub = _hub(request)
    sub = hub.subscribe(account)
    figures = _figures(request)
    hello = sse("hello", {"account_id": account, "floors": hub.floor_of(account),
                          "figures": list(figures.history) if figures is not None else []})

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield hello
            while True:
                try:
                    yield await asyncio.wait_for(sub.next(), KEEPALIVE_SECS)
                except TimeoutError:
                    yield b": keepalive\n\n"
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


@router.get("/console/figures")
async def console_figures(account: Account, request: Request) -> JSONResponse:
    figures = _figures(request)
    body: dict[str, Any] = {"data": list(figures.history) if figures is not None else []}
    return JSONResponse(body)


@router.get("/console/calls")
async def console_calls(account: Account, ctl: Ctl) -> dict[str, Any]:
    """The account's live calls and where each is (Telnyx's API lists no calls)."""
    rows = await ctl.aread(account, lambda q: console_store.live_calls(q.tx, account))
    return {"data": [{**{k: v for k, v in r.items() if k != "from_"}, "from": r["from_"],
                      "created_at": iso(r["created_at"]), "answered_at": iso(r["answered_at"])} for r in rows]}
