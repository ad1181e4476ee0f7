"""The compiled routes answer exactly as FastAPI does for the same declarations: each request below is
sent to the FastAPI app alone and to the compiled routes in front of it, and both answers must match
(status, JSON body), including every kind of validation error."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, params
from fastapi import Body as BodyParam
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from pydantic_core import PydanticUndefined
from starlette.routing import compile_path

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
    assert len(compiled.compiled) == 5, (  # every route above is served by its plan, none by FastAPI
        f"compiled.py compiled {len(compiled.compiled)} of the 5 routes above: has FastAPI or Starlette changed "
        "the internals it reads? (see test_the_fastapi_and_starlette_internals_compiled_py_reads_have_their_shape)")
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


def test_the_fastapi_and_starlette_internals_compiled_py_reads_have_their_shape() -> None:
    """compiled.py reads FastAPI's parameter markers and routes and Starlette's path compiler, none of them
    documented API (see the list at its top). pyproject.toml pins both to the minor versions tested; this
    says what changed, when a new version is tried, before the routes quietly fall back to FastAPI."""
    def check(ok: bool, what: str) -> None:
        assert ok, f"FastAPI/Starlette internals changed: {what} (read by callroom/api/compiled.py)"

    def dep() -> int:
        return 1

    marker = Depends(dep)
    check(isinstance(marker, params.Depends), "fastapi.Depends() no longer returns a fastapi.params.Depends")
    check(marker.dependency is dep and marker.use_cache is True, "params.Depends has no .dependency/.use_cache")
    check(getattr(marker, "scope", None) in (None, "function"), "a plain Depends() has another .scope")
    query = Query(alias="page[size]", default=20)
    check(isinstance(query, params.Query) and isinstance(query, params.Param), "fastapi.Query() is no params.Query")
    check((query.alias, query.default) == ("page[size]", 20), "params.Query has no .alias/.default")
    check(Query().default is PydanticUndefined, "a Query() without a default no longer has PydanticUndefined")
    for other in (Path(), Header()):
        check(isinstance(other, params.Param) and not isinstance(other, params.Query),
              f"{type(other).__name__}() is no params.Param (compiled.py leaves those to FastAPI)")
    check(isinstance(BodyParam(), params.Body), "fastapi.Body() is no params.Body")

    [route] = [r for r in router.routes if isinstance(r, APIRoute) and r.path == "/things/{thing_id}"]
    check(route.endpoint is remove, "APIRoute.endpoint")
    check(route.methods == {"DELETE"} and route.dependencies == [] and route.status_code == 204,
          "APIRoute.methods/.dependencies/.status_code")

    regex, _, convertors = compile_path("/v2/things/{thing_id}/actions/do")
    check(isinstance(regex, re.Pattern) and list(convertors) == ["thing_id"],
          "starlette.routing.compile_path no longer returns (regex, format, {name: convertor})")
    check(type(convertors["thing_id"]).__name__ == "StringConvertor", "Starlette's str convertor was renamed")
    match = regex.match("/v2/things/t1/actions/do")
    check(match is not None and match.groupdict() == {"thing_id": "t1"}, "compile_path's regex groups")

    _apps()  # and every route declared above is served by its plan
