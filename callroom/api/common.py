"""What every route shares: the caller's account, pagination, and the ``data`` envelope."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from callroom.api.keys import KeyCache
from callroom.api.ratelimit import TokenBucket
from callroom.control.service import Control
from callroom.errors import AuthenticationFailed, ErrorItem, RateLimited, ValidationFailed


def hash_key(api_key: str) -> str:
    """API keys are long random strings, so a plain SHA-256 is the right hash (no password stretching)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def _control(request: Request) -> Control:
    ctl: Control = request.app.state.control
    return ctl


async def control(request: Request) -> Control:
    return _control(request)


async def account_id(request: Request) -> str:
    """The account of the Bearer API key, or 401 (code 10009)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("Send 'Authorization: Bearer <API key>'.")
    token = token.strip()
    cache: KeyCache = request.app.state.key_cache  # keys.py: good until a key is revoked anywhere
    now = time.monotonic()
    if cache.due(now):
        cache.saw(await _control(request).aread("", lambda q: q.tx.keys_generation()))
    known, account = cache.get(token)
    if not known:
        hashed = hash_key(token)
        generation, account = await _control(request).aread(
            "", lambda q: (q.tx.keys_generation(), q.tx.account_for_key_hash(hashed)))  # in this order
        cache.put(token, account, generation)
    if account is None:
        raise AuthenticationFailed()
    request.state.account_id = account  # (the access log names it)
    limit: tuple[float, float] | None = request.app.state.rate_limit
    if limit is not None:
        buckets: dict[str, TokenBucket] = request.app.state.rate_buckets
        bucket = buckets.get(token)
        if bucket is None:
            bucket = buckets[token] = TokenBucket(*limit)
        if not bucket.take(now):
            raise RateLimited(bucket.retry_after(), limit=int(limit[1]))
    return account


Account = Annotated[str, Depends(account_id)]
Ctl = Annotated[Control, Depends(control)]


MAX_PAGE_NUMBER = 1_000_000_000  # far past any listing; a larger one would overflow the database's OFFSET


class Page:
    def __init__(self, number: int, size: int) -> None:
        if not 1 <= number <= MAX_PAGE_NUMBER:
            raise ValidationFailed(ErrorItem("10015", "Invalid value", f"must be between 1 and {MAX_PAGE_NUMBER}",
                                             parameter="page[number]"))
        if not 1 <= size <= 250:
            raise ValidationFailed(
                ErrorItem("10015", "Invalid value", "must be between 1 and 250", parameter="page[size]")
            )
        self.number = number
        self.size = size

    def envelope(self, items: list[dict[str, Any]], total: int) -> dict[str, Any]:
        return {
            "data": items,
            "meta": {
                "page_number": self.number,
                "page_size": self.size,
                "total_pages": max(1, math.ceil(total / self.size)),
                "total_results": total,
            },
        }


async def page_params(
    number: Annotated[int, Query(alias="page[number]")] = 1,
    size: Annotated[int, Query(alias="page[size]")] = 20,
) -> Page:
    return Page(number, size)


PageParams = Annotated[Page, Depends(page_params)]

OK: dict[str, Any] = {"data": {"result": "ok"}}


def data(obj: dict[str, Any]) -> dict[str, Any]:
    return {"data": obj}
