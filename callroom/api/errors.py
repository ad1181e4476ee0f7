"""Turning exceptions into Telnyx error bodies: ``{"errors": [{code, title, detail, source}]}``.

``response_for`` is the one translation; FastAPI's exception handlers and the compiled routes
(``compiled.py``) both use it, so a client sees the same body whichever path served it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from callroom.api import unsupported
from callroom.errors import (
    NUL_TEXT,
    ApiError,
    BodyTooLarge,
    CommandNotSupported,
    ErrorItem,
    Overloaded,
    RangeNotSatisfiable,
    RateLimited,
    UnstorableText,
)

log = logging.getLogger(__name__)


class RequestInvalid(Exception):
    """The arguments of a request failed validation (pydantic error dicts, locations as FastAPI's)."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


# The member names pydantic puts in the location of an error inside a union (``to: str | list[str]``).
_UNION_TAGS = frozenset({"str", "int", "list[str]", "bool", "constrained-str", "list[constrained-str]"})


def _pointer(loc: tuple[Any, ...]) -> tuple[str | None, str | None]:
    """A pydantic error location as (JSON pointer into the body, or query parameter name)."""
    if not loc:
        return "/", None
    where, *rest = loc
    if where == "body":
        parts = [str(p) for p in rest if not (isinstance(p, str) and p.startswith(("function-", "literal[")))]
        parts = [p for p in parts if p not in _UNION_TAGS]
        return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts), None
    if where in ("query", "path"):
        return None, str(rest[0]) if rest else None
    return "/", None


def validation_items(errors: Sequence[Mapping[str, Any]]) -> list[ErrorItem]:
    items = []
    for err in errors:
        pointer, parameter = _pointer(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "Invalid value"))
        if err.get("type") == "string_nul" and pointer is not None:  # schemas.Body: where in the body it is
            where = str((err.get("ctx") or {}).get("where", ""))
            pointer = pointer.rstrip("/") + where
            msg = NUL_TEXT
        code = "10015" if err.get("type") != "missing" else "10004"
        title = "Missing required parameter" if code == "10004" else "Invalid value"
        items.append(ErrorItem(code, title, msg, pointer=pointer, parameter=parameter))
    return items


def response_for(exc: Exception) -> JSONResponse:
    """The Telnyx error response for any exception a request can end with."""
    if isinstance(exc, ApiError):
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = f"{max(exc.retry_after, 0.001):.3f}"
            headers["x-ratelimit-limit"] = str(exc.limit)
            headers["x-ratelimit-remaining"] = "0"
            headers["x-ratelimit-reset"] = f"{exc.retry_after:.3f}"
        elif isinstance(exc, Overloaded):
            headers["Retry-After"] = str(exc.retry_after)
        elif isinstance(exc, CommandNotSupported):
            headers["x-should-retry"] = "false"  # a 5xx the SDKs would otherwise send twice more
        elif isinstance(exc, BodyTooLarge):
            headers["connection"] = "close"  # the rest of the body is not read: this connection is done
        elif isinstance(exc, RangeNotSatisfiable):
            headers["Content-Range"] = f"bytes */{exc.size}"
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
    if isinstance(exc, RequestValidationError | RequestInvalid):
        found = exc.errors() if isinstance(exc, RequestValidationError) else exc.errors
        return JSONResponse({"errors": [i.to_json() for i in validation_items(found)]}, status_code=422)
    if isinstance(exc, UnstorableText):
        item = ErrorItem("10015", "Invalid value", NUL_TEXT, pointer="/")
        return JSONResponse({"errors": [item.to_json()]}, status_code=422)
    if isinstance(exc, HTTPException):
        code = {404: "10005", 405: "10006"}.get(exc.status_code, "10000")
        title = {404: "Resource not found", 405: "Method not allowed"}.get(exc.status_code, "Request failed")
        body = {"errors": [ErrorItem(code, title, str(exc.detail)).to_json()]}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))
    log.exception("unhandled error", exc_info=exc)
    body = {"errors": [ErrorItem("10000", "Internal error", "Something went wrong on the node.").to_json()]}
    return JSONResponse(body, status_code=500)


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, HTTPException) and exc.status_code in (404, 405):
            not_served = unsupported.refusal(request.method, request.url.path)
            if not_served is not None:
                return response_for(not_served)
        return response_for(exc)

    for kind in (ApiError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, handle)
