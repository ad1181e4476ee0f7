"""Serving the declared routes without FastAPI's per-request machinery.

Routes are declared once, with FastAPI, which also writes the OpenAPI document and serves whatever is not
compiled here. At start-up each route's endpoint signature is compiled into a plan: where every argument
comes from (path, query string, JSON body, the request, a dependency) and the pydantic validator that
checks it. A request then costs a prefix test and a regex match, those validators and the endpoint
itself. FastAPI's dependency solving, its middleware layers and the re-validation and re-encoding of every
returned dict cost ~250 us per request on a small machine, more than most of our commands' own work.

Behaviour is FastAPI's where clients can see it: the same argument sources and defaults, every
validation error of a request reported together with the same locations, JSON rendered the same way, the
route's status code; errors become Telnyx bodies through the same functions (``errors.py``). A signature
this module does not understand is simply not compiled, and FastAPI serves that route.

It reads FastAPI's and Starlette's internals, none of them documented API, so pyproject.toml pins both to
the minor versions tested, and ``tests/api/test_compiled.py`` says which of these changed when a new one
is tried (rather than the routes quietly falling back to FastAPI):

- ``fastapi.params``: ``Depends`` (``.dependency``, ``.use_cache``, ``.scope``), what ``fastapi.Depends()``
  returns; ``Query`` (``.alias``, ``.default``, ``PydanticUndefined`` when none), what ``fastapi.Query()``
  returns; ``Param`` and ``Body``, the markers of parameters left to FastAPI (path, header, body options);
- ``fastapi.routing``: ``APIRoute`` (``.endpoint``, ``.methods``, ``.dependencies``, ``.path``,
  ``.status_code``) and ``APIRouter.routes``;
- ``starlette.routing.compile_path``: its ``(regex, format, {name: convertor})`` and the class name of its
  ``str`` convertor, ``StringConvertor``; and ``scope["app"]``, which Starlette's ``Request.app`` reads.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Union
from urllib.parse import parse_qsl

import orjson
from fastapi import params
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import Message, Receive, Scope, Send

from callroom.api import errors, limits
from callroom.errors import BodyTooLarge

log = logging.getLogger(__name__)

Err = dict[str, Any]


# -- where arguments come from ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Path:
    name: str


@dataclass(frozen=True, slots=True)
class _Query:
    alias: str
    adapter: TypeAdapter[Any]
    default: Any
    many: bool


@dataclass(frozen=True, slots=True)
class _Body:
    model: type[BaseModel]
    optional: bool


@dataclass(frozen=True, slots=True)
class _Request:
    pass


@dataclass(frozen=True, slots=True)
class _Depends:
    call: Callable[..., Any]
    args: Plan
    is_async: bool


Source = _Path | _Query | _Body | _Request | _Depends
Plan = tuple[tuple[str, Source], ...]  # (argument name, where its value comes from), in signature order


class _Unsupported(Exception):
    """A signature this module does not compile (FastAPI serves the route)."""


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1 and len(members) < len(typing.get_args(tp)):
            return members[0], True
    return tp, False


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _plan(fn: Callable[..., Any], path_names: frozenset[str]) -> Plan:
    hints = typing.get_type_hints(fn, include_extras=True)
    out: list[tuple[str, Source]] = []
    bodies = 0
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise _Unsupported(f"{fn.__name__}: *args/**kwargs")
        tp = hints.get(name, Any)
        marker: Any = param.default if isinstance(param.default, params.Depends | params.Query) else None
        default = PydanticUndefined if marker is not None or param.default is param.empty else param.default
        if typing.get_origin(tp) is typing.Annotated:
            tp, *meta = typing.get_args(tp)
            found = [m for m in meta if isinstance(m, params.Depends | params.Query)]
            if len(found) > 1 or (found and marker is not None):
                raise _Unsupported(f"{fn.__name__}.{name}: several markers")
            if found:
                marker = found[0]
            elif any(isinstance(m, params.Param | params.Body) for m in meta):
                raise _Unsupported(f"{fn.__name__}.{name}: parameter kind")
        if isinstance(marker, params.Depends):
            dep = marker.dependency
            if dep is None or not marker.use_cache or getattr(marker, "scope", None) not in (None, "function"):
                raise _Unsupported(f"{fn.__name__}.{name}: dependency form")
            out.append((name, _Depends(dep, _plan(dep, path_names), inspect.iscoroutinefunction(dep))))
        elif isinstance(marker, params.Query):
            if marker.default is not PydanticUndefined and default is PydanticUndefined:
                default = marker.default
            out.append((name, _query(marker.alias or name, tp, default)))
        elif tp is Request:
            out.append((name, _Request()))
        elif name in path_names:
            if tp is not str:
                raise _Unsupported(f"{fn.__name__}.{name}: non-str path parameter")
            out.append((name, _Path(name)))
        else:
            inner, optional = _strip_optional(tp)
            if _is_model(inner):
                bodies += 1
                if default not in (PydanticUndefined, None):
                    raise _Unsupported(f"{fn.__name__}.{name}: body default")
                out.append((name, _Body(inner, optional or default is None)))
            elif typing.get_origin(inner) is None and inner in (str, int, float, bool):
                out.append((name, _query(name, tp, default)))
            else:
                raise _Unsupported(f"{fn.__name__}.{name}: {tp!r}")
    if bodies > 1:
        raise _Unsupported(f"{fn.__name__}: several body parameters (embedded bodies)")
    return tuple(out)


def _query(alias: str, tp: Any, default: Any) -> _Query:
    inner, _ = _strip_optional(tp)
    many = typing.get_origin(inner) in (list, tuple, set)
    return _Query(alias, TypeAdapter(tp), default, many)


# -- one request --------------------------------------------------------------------------------------------


class _Call:
    """What resolving one request's arguments needs, each piece made at most once."""

    __slots__ = ("_query", "_request", "body", "context", "deps", "errors", "path", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, path: dict[str, str],
                 context: dict[str, Any] | None = None) -> None:
        self.scope = scope
        self.receive = receive
        self.path = path
        self.context = context
        self._query: dict[str, list[str]] | None = None
        self._request: Request | None = None
        self.body: bytes | None = None
        self.deps: dict[Callable[..., Any], Any] = {}
        self.errors: list[Err] = []

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = {}
            raw = self.scope.get("query_string", b"")
            for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
                self._query.setdefault(k, []).append(v)
        return self._query

    @property
    def request(self) -> Request:
        if self._request is None:
            self._request = Request(self.scope, self.receive)
        return self._request

    async def read_body(self) -> bytes:
        if self.body is None:
            chunks = []
            while True:
                message = await self.receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            self.body = b"".join(chunks)
        return self.body


def _prefixed(exc: ValidationError, *loc: str | int) -> list[Err]:
    return [{**e, "loc": (*loc, *e["loc"])} for e in exc.errors(include_url=False)]


async def _resolve(call: _Call, plan: Plan) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, src in plan:
        if isinstance(src, _Path):
            values[name] = call.path[src.name]
        elif isinstance(src, _Query):
            raw = call.query.get(src.alias)
            if raw is None:
                if src.default is PydanticUndefined:
                    call.errors.append({"type": "missing", "loc": ("query", src.alias), "msg": "Field required"})
                else:
                    values[name] = src.default
                continue
            try:
                values[name] = src.adapter.validate_python(raw if src.many else raw[-1])
            except ValidationError as exc:
                call.errors.extend(_prefixed(exc, "query", src.alias))
        elif isinstance(src, _Body):
            values[name] = await _body(call, src)
        elif isinstance(src, _Request):
            values[name] = call.request
        else:
            if src.call in call.deps:
                values[name] = call.deps[src.call]
                continue
            args = await _resolve(call, src.args)
            if call.errors:  # FastAPI does not call a dependency whose own arguments are invalid
                continue
            result = src.call(**args)
            if src.is_async:
                result = await result
            values[name] = call.deps[src.call] = result
    return values


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # the HTTP parser refuses a bad one before
    return None


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive``, raising ``BodyTooLarge`` once the body has grown past ``limit`` bytes."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return bounded


def _declares_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))
    return False


async def _body(call: _Call, src: _Body) -> Any:
    raw = await call.read_body()
    if not raw:
        if not src.optional:
            call.errors.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
        return None
    obj: Any = raw  # FastAPI's strict content type: a body not declared as JSON is not parsed as JSON
    if _declares_json(call.scope):
        try:
            obj = limits.load_json(raw)  # a body nested too deeply is a 422 of its own (ValidationFailed)
        except ValueError as exc:
            pos = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
            call.errors.append({"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error"})
            return None
    try:
        return src.model.model_validate(obj, from_attributes=True, context=call.context)  # as FastAPI does
    except ValidationError as exc:
        call.errors.extend(_prefixed(exc, "body"))
        return None


# -- the router ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    prefix: str
    regex: re.Pattern[str]
    endpoint: Callable[..., Awaitable[Any]]
    plan: Plan
    status_code: int


def _render(content: Any) -> bytes:
    """The JSON FastAPI's response class would write (compact, UTF-8), ~5x faster."""
    try:
        return orjson.dumps(content)
    except TypeError:  # something orjson does not know: FastAPI's encoder does
        return json.dumps(jsonable_encoder(content), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode()


def _compile(prefix: str, route: APIRoute) -> _Route | None:
    methods = route.methods or set()
    if not inspect.iscoroutinefunction(route.endpoint) or route.dependencies or len(methods) != 1:
        return None
    full_path = prefix + route.path
    regex, _, convertors = compile_path(full_path)
    if any(type(c).__name__ != "StringConvertor" for c in convertors.values()):
        return None
    try:
        plan = _plan(route.endpoint, frozenset(convertors))
    except _Unsupported as why:
        log.debug("route %s %s served by FastAPI: %s", route.methods, full_path, why)
        return None
    literal = full_path.split("{", 1)[0]
    return _Route(next(iter(methods)), literal, regex, route.endpoint, plan, route.status_code or 200)


@dataclass
class CompiledRoutes:
    """The node's ASGI application: serves the compiled routes itself and passes everything else
    (lifespan, docs, OpenAPI, routes it did not compile) to the FastAPI ``app`` they were declared on.

    It sits in front of FastAPI rather than inside it, so FastAPI's middleware layers are skipped too. Every
    request's body is bounded here, whichever of the two serves it (``limits.body_limit``: 413 beyond it).
    ``routers`` are (prefix, router) pairs in the order the app includes them, so the first route that
    matches a request here is the one FastAPI would have chosen. ``validation_context`` is handed to every
    body's validators (pydantic's ``context``): what they need to know of the node (FastAPI passes none).
    """

    app: Starlette
    routers: list[tuple[str, APIRouter]]
    validation_context: dict[str, Any] | None = None
    _table: dict[str, list[_Route]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for prefix, router in self.routers:
            for route in router.routes:
                compiled = _compile(prefix, route) if isinstance(route, APIRoute) else None
                if compiled is not None:
                    self._table.setdefault(compiled.method, []).append(compiled)

    @property
    def compiled(self) -> list[tuple[str, str]]:
        return [(r.method, r.regex.pattern) for routes in self._table.values() for r in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            limit = limits.body_limit(scope["method"], path)
            declared = _content_length(scope)
            if declared is None:  # chunked (or no body): counted as it arrives
                receive = _bounded(receive, limit)
            elif declared > limit:  # answered before a byte of it is read
                await errors.response_for(BodyTooLarge(limit))(scope, receive, send)
                return
            for route in self._table.get(scope["method"], ()):
                if path.startswith(route.prefix):
                    match = route.regex.match(path)
                    if match is not None:
                        await self._serve(route, match.groupdict(), scope, receive, send)
                        return
        await self.app(scope, receive, send)

    async def _serve(self, route: _Route, path: dict[str, str], scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.app  # what Starlette sets: ``request.app`` (its ``state``) for the endpoints
        call = _Call(scope, receive, path, self.validation_context)
        try:
            kwargs = await _resolve(call, route.plan)
            if call.errors:
                raise errors.RequestInvalid(call.errors)
            result = await route.endpoint(**kwargs)
        except Exception as exc:  # every failure becomes the same Telnyx body FastAPI's handlers give
            response: Response = errors.response_for(exc)
        else:
            if isinstance(result, Response):
                response = result
            else:
                body = b"" if route.status_code == 204 else _render(result)
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": route.status_code, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await response(scope, receive, send)

