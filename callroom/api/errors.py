"""Turning exceptions into Telnyx error bodies: ``{"errors": [{code, title, detail, source}]}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from callroom.errors import ApiError, ErrorItem, RateLimited

log = logging.getLogger(__name__)


def _pointer(loc: tuple[Any, ...]) -> tuple[str | None, str | None]:
    """A pydantic error location as (JSON pointer into the body, or query parameter name)."""
    if not loc:
        return "/", None
    where, *rest = loc
    if where == "body":
        parts = [str(p) for p in rest if not (isinstance(p, str) and p.startswith(("function-", "literal[")))]
        parts = [p for p in parts if p not in ("str", "int", "list[str]", "bool")]
        return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts), None
    if where in ("query", "path"):
        return None, str(rest[0]) if rest else None
    return "/", None


def validation_items(exc: RequestValidationError) -> list[ErrorItem]:
    items = []
    for err in exc.errors():
        pointer, parameter = _pointer(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "Invalid value"))
        code = "10015" if err.get("type") != "missing" else "10004"
        title = "Missing required parameter" if code == "10004" else "Invalid value"
        items.append(ErrorItem(code, title, msg, pointer=pointer, parameter=parameter))
    return items


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = f"{max(exc.retry_after, 0.001):.3f}"
            headers["x-ratelimit-limit"] = str(exc.limit)
            headers["x-ratelimit-remaining"] = "0"
            headers["x-ratelimit-reset"] = f"{exc.retry_after:.3f}"
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"errors": [i.to_json() for i in validation_items(exc)]}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "10005", 405: "10006"}.get(exc.status_code, "10000")
        title = {404: "Resource not found", 405: "Method not allowed"}.get(exc.status_code, "Request failed")
        body = {"errors": [ErrorItem(code, title, str(exc.detail)).to_json()]}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        body = {"errors": [ErrorItem("10000", "Internal error", "Something went wrong on the node.").to_json()]}
        return JSONResponse(body, status_code=500)
