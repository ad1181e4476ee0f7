"""One attempt at delivering a webhook: which URL it goes to (``plan``: the primary, then the failover), the
body it carries (``envelope``), and the signed HTTP request with what its answer says (``send``). The
dispatcher decides when an attempt is made and records what came of it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from callroom.errors import AddressRefused
from callroom.outbound import REFUSED_WHY
from callroom.store.outbox import PendingDelivery
from callroom.timefmt import iso
from callroom.webhooks.http import HttpError, WebhookHttp, with_query
from callroom.webhooks.signing import WebhookSigner

log = logging.getLogger(__name__)

ATTEMPTS_PER_URL = 3  # at the URL, then as many at the failover URL
MAX_RESPONSE_BYTES = 8192  # read at most this much of a receiver's response
KEPT_RESPONSE_CHARS = 1024  # and keep at most this much of it in the attempt record


# Events that Telnyx's SDKs model as the bare event (``{event_type, payload, ...}``), not as the envelope
# (``{data: {...}}``): their webhooks carry the event both ways, so that ``webhooks.unwrap`` parses them as
# their own type and a receiver reading ``data`` finds it there as in every other webhook.
BARE_EVENTS = frozenset({"conference.floor.changed"})


def envelope(row: PendingDelivery, attempt: int, url: str) -> bytes:
    data = {
        "record_type": "event",
        "event_type": row.event_type,
        "id": row.event_id,
        "occurred_at": iso(row.occurred_at),
        "payload": row.payload,
    }
    body: dict[str, Any] = {"data": data, "meta": {"attempt": attempt, "delivered_to": url}}
    if row.event_type in BARE_EVENTS:
        body.update(record_type="event", event_type=row.event_type, id=row.event_id, payload=row.payload)
    return orjson.dumps(body)


def plan(attempts_made: int, url: str | None, failover: str | None) -> tuple[str | None, int]:
    """Which URL the next attempt goes to, and its attempt number at that URL (1-based)."""
    if attempts_made < ATTEMPTS_PER_URL:
        return url, attempts_made + 1
    if failover and attempts_made < 2 * ATTEMPTS_PER_URL:
        return failover, attempts_made - ATTEMPTS_PER_URL + 1
    return None, 0


async def send(http: WebhookHttp, signer: WebhookSigner, row: PendingDelivery, url: str,
               attempt: int) -> tuple[int | None, str | None, str | None]:  # fmt: skip
    """Attempt number ``attempt`` at ``url``: (status code, error or None on 2xx, the start of the response
    body)."""
    body = envelope(row, attempt, url)
    headers = signer.headers(body, int(time.time()))
    try:
        async with asyncio.timeout(row.timeout_secs):
            if row.method == "GET":
                reply = await http.request("GET", with_query(url, {"payload": body.decode()}), b"", headers,
                                           MAX_RESPONSE_BYTES)
            else:
                headers["content-type"] = "application/json"
                reply = await http.request("POST", url, body, headers, MAX_RESPONSE_BYTES)
    except TimeoutError:
        return None, f"timeout after {row.timeout_secs:g} s", None
    except AddressRefused as exc:  # never connected: the account is told that much, the log the addresses
        log.info("webhook %s %s to %s: %s", row.event_type, row.event_id, url, exc)
        return None, REFUSED_WHY, None
    except (HttpError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], None
    text = reply.body[:KEPT_RESPONSE_CHARS].decode("utf-8", "replace") or None
    if 200 <= reply.status < 300:
        return reply.status, None, text
    if 300 <= reply.status < 400:
        return reply.status, f"HTTP {reply.status} (redirects are not followed: {reply.location})", text
    return reply.status, f"HTTP {reply.status}", text
