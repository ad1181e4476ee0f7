"""The compiled routes answer exactly as FastAPI does for the same declarations: each request below is
sent to the FastAPI app alone and to the compiled routes in front of it, and both answers must match
(status, JSON body), including every kind of validation error."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from callroom.api import errors
from callroom.api.compiled import CompiledRoutes
from callroom.errors import NotFound

router = APIRouter()


class Body(BaseModel):
    name: str = Field(min_length=2)
    size: int = Field(default=3, ge=1, le=9)
    ids: list[str] | None = None


class Paging:
    def __init__(self, number: int, size: int) -> None:
        self.number, self.size = number, size


async def paging(
    number: Annotated[int, Query(alias="page[number]")] = 1,
    size: Annotated[int, Query(alias="page[size]")] = 20,
) -> Paging:
    return Paging(number, size)


async def caller(request: Request) -> str:
    return request.headers.get("x-caller", "nobody") + ":" + str(request.app.state.marker)


Caller = Annotated[str, Depends(caller)]


@router.get("/things")
async def list_things(
    who: Caller,
    page: Annotated[Paging, Depends(paging)],
    flag: Annotated[bool | None, Query(alias="filter[flag]")] = None,
    kind: Annotated[Literal["a", "b"] | None, Query(alias="filter[kind]")] = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    return {"who": who, "page": [page.number, page.size], "flag": flag, "kind": kind, "seconds": seconds}


@router.post("/things/{thing_id}/actions/do")
async def do(thing_id: str, body: Body, who: Caller) -> dict[str, Any]:
    if thing_id == "missing":
        raise NotFound("No such thing.", "10005")
    return {"data": {"id": thing_id, "body": body.model_dump(), "who": who, "text": "naïve"}}


@router.post("/things/{thing_id}/actions/maybe")
async def maybe(thing_id: str, body: Body | None = None) -> dict[str, Any]:
    return {"id": thing_id, "body": None if body is None else body.model_dump()}


@router.delete("/things/{thing_id}", status_code=204)
async def remove(thing_id: str) -> Response:
    return Response(status_code=204)


@router.get("/boom")
async def boom() -> dict[str, Any]:
    raise RuntimeError("unexpected")


def _apps() -> tuple[FastAPI, CompiledRoutes]:
    app = FastAPI()
    errors.install(app)
    app.state.marker = 7
    app.include_router(router, prefix="/v2")
    compiled = CompiledRoutes(app, [("/v2", router)])
    assert len(compiled.compiled) == 5  # every route above is served by its plan, none by FastAPI
    return app, compiled


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v2/things", {}),
    ("GET", "/v2/things?page[number]=2&page[size]=5&filter[flag]=true&filter[kind]=b&seconds=1.5", {}),
    ("GET", "/v2/things?page[number]=x&filter[flag]=maybe&filter[kind]=c", {}),
    ("GET", "/v2/things", {"headers": {"x-caller": "alice"}}),
    ("POST", "/v2/things/t1/actions/do", {"json": {"name": "ok", "ids": ["a", "b"]}}),
    ("POST", "/v2/things/t1/actions/do", {"json": {"name": "x", "size": 10, "ids": [1]}}),
    ("POST", "/v2/things/t1/actions/do", {"json": {}}),
    ("POST", "/v2/things/t1/actions/do", {}),
    ("POST", "/v2/things/t1/actions/do", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("POST", "/v2/things/t1/actions/do", {"json": ["a list"]}),
    ("POST", "/v2/things/t1/actions/do", {"content": b'{"name": "ok"}'}),  # JSON without a JSON content type
    ("POST", "/v2/things/t1/actions/do", {"content": b'{"name": "ok"}', "headers": {"content-type": "text/plain"}}),
    ("POST", "/v2/things/t1/actions/do",
     {"content": b'{"name": "ok"}', "headers": {"content-type": "application/vnd.api+json; charset=utf-8"}}),
    ("POST", "/v2/things/missing/actions/do", {"json": {"name": "ok"}}),
    ("POST", "/v2/things/t1/actions/maybe", {}),
    ("POST", "/v2/things/t1/actions/maybe", {"json": {"name": "ok"}}),
    ("POST", "/v2/things/t1/actions/maybe", {"json": {"name": ""}}),
    ("DELETE", "/v2/things/t1", {}),
    ("GET", "/v2/boom", {}),
    ("GET", "/v2/nowhere", {}),
    ("PUT", "/v2/things", {}),
]


@pytest.mark.parametrize(("method", "url", "kwargs"), REQUESTS, ids=[f"{m} {u}" for m, u, _ in REQUESTS])
def test_compiled_routes_answer_as_fastapi_does(method: str, url: str, kwargs: dict[str, Any]) -> None:
    app, compiled = _apps()

    async def send(target: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=target, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.request(method, url, **kwargs)

    plain = asyncio.run(send(app))
    fast = asyncio.run(send(compiled))
    assert fast.status_code == plain.status_code
    assert fast.content == plain.content or fast.json() == plain.json()
    if plain.status_code == 422:
        assert all("source" in e for e in fast.json()["errors"])  # every invalid field is pointed at


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_a_body_nested_too_deeply_is_a_422_not_a_500(depth: int) -> None:
    """json.loads gives up at ~1,000 levels with a RecursionError (a 500 once); the compiled routes answer
    every body deeper than limits.MAX_JSON_DEPTH with the Telnyx 422 instead."""
    _, compiled = _apps()
    deep = b'{"name": "ok", "ids": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=compiled, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.post("/v2/things/t1/actions/do", content=deep,
                                     headers={"content-type": "application/json"})

    resp = asyncio.run(send())
    assert resp.status_code == 422, resp.text
    [error] = resp.json()["errors"]
    assert (error["code"], error["source"]) == ("10015", {"pointer": "/"})
    assert "more than 32 levels deep" in error["detail"]


def test_a_body_as_deep_as_allowed_is_validated_as_usual() -> None:
    _, compiled = _apps()
    ok = b'{"name": "ok", "extra": ' + b"[" * 31 + b"]" * 31 + b"}"  # the body is level 1: 32 in all

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=compiled, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.post("/v2/things/t1/actions/do", content=ok,
                                     headers={"content-type": "application/json"})

    resp = asyncio.run(send())
    assert resp.status_code == 200, resp.text
