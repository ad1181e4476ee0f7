"""Delivering the outbox: signed HTTP requests, retries with backoff, the failover URL, order per key.

Every event reaches the dispatcher through the outbox table, written in the same transaction as the
state change it reports, so a crash loses nothing: on restart the pending rows are simply sent (at
least once; receivers de-duplicate on ``data.id``). Events that share an order key (one call, or one
conference) are delivered one after another: a later one waits until the earlier one succeeded or was
given up. Different keys do not wait for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from callroom.store import outbox
from callroom.store.engine import Store
from callroom.store.outbox import PendingDelivery
from callroom.timefmt import iso
from callroom.webhooks.signing import WebhookSigner

log = logging.getLogger(__name__)

# Attempts per URL, and the pause before each retry (seconds, before jitter).
ATTEMPTS_PER_URL = 3
BACKOFF = (1.0, 4.0)


def envelope(row: PendingDelivery, attempt: int, url: str) -> bytes:
    occurred = iso(row.occurred_at)
    payload = dict(row.payload)
    data = {
        "record_type": "event",
        "event_type": row.event_type,
        "id": row.event_id,
        "occurred_at": occurred,
        "payload": payload,
    }
    body = {"data": data, "meta": {"attempt": attempt, "delivered_to": url}}
    return json.dumps(body, separators=(",", ":")).encode()


def plan(attempts_made: int, url: str | None, failover: str | None) -> tuple[str | None, int]:
    """Which URL the next attempt goes to, and its attempt number at that URL (1-based)."""
    if attempts_made < ATTEMPTS_PER_URL:
        return url, attempts_made + 1
    if failover and attempts_made < 2 * ATTEMPTS_PER_URL:
        return failover, attempts_made - ATTEMPTS_PER_URL + 1
    return None, 0


class Dispatcher:
    def __init__(
        self,
        store: Store,
        signer: WebhookSigner,
        *,
        client: httpx.AsyncClient | None = None,
        concurrency: int = 64,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.5,
        backoff: tuple[float, ...] = BACKOFF,
    ) -> None:
        self.backoff = backoff
        self.store = store
        self.signer = signer
        self.client = client or httpx.AsyncClient(follow_redirects=False, headers={"User-Agent": "telnyx-webhooks"})
        self._own_client = client is None
        self.concurrency = concurrency
        self.clock = clock
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.delivered = 0
        self.failed = 0

    def wake(self) -> None:
        self._wake.set()

    def enqueue(self, deliveries: list[PendingDelivery]) -> None:
        """Deliveries just committed to the outbox (the dispatcher finds them in the table too)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if self._own_client:
            await self.client.aclose()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            next_due = None
            try:
                next_due = self._dispatch_ready()
            except Exception:
                log.exception("webhook dispatcher pass failed")
            timeout = self.poll_interval
            if next_due is not None:
                timeout = max(0.0, min(timeout, next_due - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _dispatch_ready(self) -> float | None:
        now = self.clock()
        with self.store.transaction() as tx:
            rows = outbox.pending(tx, limit=2000)
        blocked: set[str] = set(self._inflight)
        next_due: float | None = None
        for row in rows:
            if len(self._inflight) >= self.concurrency:
                break
            if row.order_key in blocked:
                continue
            blocked.add(row.order_key)
            if row.next_attempt_at > now:
                next_due = row.next_attempt_at if next_due is None else min(next_due, row.next_attempt_at)
                continue
            task = asyncio.create_task(self._deliver(row))
            self._inflight[row.order_key] = task
            task.add_done_callback(lambda _t, key=row.order_key: self._done(key))
        return next_due

    def _done(self, key: str) -> None:
        self._inflight.pop(key, None)
        self._wake.set()

    async def _deliver(self, row: PendingDelivery) -> None:
        url, attempt = plan(row.attempts, row.url, row.failover_url)
        attempts = row.attempts + 1
        if url is None:
            with self.store.transaction() as tx:
                outbox.mark_failed(tx, row.id, row.attempts, (row.failover_url and "failover exhausted") or "no URL")
            self.failed += 1
            return
        error = await self._post(row, url, attempt)
        with self.store.transaction() as tx:
            if error is None:
                outbox.mark_delivered(tx, row.id, attempts, self.clock())
                self.delivered += 1
                return
            next_url, _ = plan(attempts, row.url, row.failover_url)
            if next_url is None:
                outbox.mark_failed(tx, row.id, attempts, error)
                self.failed += 1
                log.warning("webhook %s %s to %s given up: %s", row.event_type, row.event_id, url, error)
                return
            pause = 0.0 if next_url != url else self.backoff[min(attempt - 1, len(self.backoff) - 1)]
            pause *= random.uniform(0.8, 1.2)
            outbox.mark_retry(tx, row.id, attempts, self.clock() + pause, error)

    async def _post(self, row: PendingDelivery, url: str, attempt: int) -> str | None:
        body = envelope(row, attempt, url)
        headers: dict[str, Any] = {"content-type": "application/json"}
        headers.update(self.signer.headers(body, int(time.time())))
        try:
            if row.method == "GET":
                resp = await self.client.get(url, params={"payload": body.decode()}, headers=headers,
                                             timeout=row.timeout_secs)
            else:
                resp = await self.client.post(url, content=body, headers=headers, timeout=row.timeout_secs)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= resp.status_code < 300:
            return None
        return f"HTTP {resp.status_code}"
