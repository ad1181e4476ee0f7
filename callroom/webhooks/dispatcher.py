"""Delivering the outbox: signed HTTP requests, retries with backoff, the failover URL, order per key.

Every event reaches the dispatcher through the outbox table, written in the same transaction as the
state change it reports, so a crash loses nothing: on start every pending row is loaded and sent (at
least once; receivers de-duplicate on ``data.id``). Rows committed by this process are handed over
right after commit (``enqueue``); a periodic sweep picks up pending rows that nobody here knows of
(committed by another process or node, whose dispatcher did not deliver them in time).

In memory, each order key (one call, or one conference) has a FIFO of rows in outbox order. At most one
row per key is in flight, so a later event waits until the earlier one succeeded or was given up;
different keys do not wait for each other. Nor is a row sent while an older row of its key is pending in
the outbox unknown here: written before a crash and not loaded yet, or by another process or node
sharing the outbox (``order.py`` tells when the store must be asked). Such a key is held, and looked at
again every ``order_recheck`` seconds or as soon as an older row of it is queued here. A heap holds the
keys whose head waits (for a retry, or held), and at most ``concurrency`` requests run at once. Fates
(delivered, retry, failed) and attempt records are written in batches, one transaction every
``flush_interval``, not one per delivery. Everything runs on the API's event loop. Its database work is
short: on SQLite it runs inline; on PostgreSQL cooperatively (``store/cooperative.py``), so that the
loop never waits for a round trip. What one attempt sends, where, and what its answer says is
``attempt.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from callroom.outbound import UNRESTRICTED, AddressPolicy
from callroom.store import cooperative, outbox
from callroom.store.engine import Store
from callroom.store.outbox import AttemptRecord, Fate, PendingDelivery, sequence_of
from callroom.webhooks.attempt import plan, send
from callroom.webhooks.http import WebhookHttp
from callroom.webhooks.order import Settled
from callroom.webhooks.signing import WebhookSigner

log = logging.getLogger(__name__)

T = TypeVar("T")

# The pause before each retry at the same URL (seconds, before jitter); attempts per URL: ``attempt.py``.
BACKOFF = (1.0, 4.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Metrics:
    """Counters since start (Prometheus text via ``render``)."""

    delivered: int = 0
    failed: int = 0
    retried: int = 0
    attempts: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_sum: float = 0.0
    latency_count: int = 0

    def observe_latency(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1
                break


class Dispatcher:
    def __init__(
        self,
        store: Store,
        signer: WebhookSigner,
        *,
        http: WebhookHttp | None = None,
        concurrency: int = 64,
        clock: Callable[[], float] = time.time,
        backoff: tuple[float, ...] = BACKOFF,
        flush_interval: float = 0.02,
        sweep_interval: float = 1.0,
        sweep_grace: float = 2.0,
        order_recheck: float = 0.25,
        cooperative: bool = False,
        url_policy: AddressPolicy = UNRESTRICTED,
        owner: str | None = None,
    ) -> None:
        self.store = store
        # The node whose rows this dispatcher delivers (None: every row; a process that is all there is).
        self.owner = owner
        self.cooperative = cooperative
        self.signer = signer
        self.http = http or WebhookHttp(policy=url_policy)
        self._own_http = http is None
        self.concurrency = concurrency
        self.clock = clock
        self.backoff = backoff
        self.flush_interval = flush_interval
        self.sweep_interval = sweep_interval
        self.sweep_grace = sweep_grace
        self.order_recheck = order_recheck
        self.metrics = Metrics()
        self._queues: dict[str, deque[PendingDelivery]] = {}
        self._queued_ids: set[int] = set()  # in a queue or in flight
        self._flushing_ids: set[int] = set()  # finished here, fate not yet committed
        self._ready: deque[str] = deque()
        self._ready_set: set[str] = set()
        self._heap: list[tuple[float, int, str]] = []
        self._tie = itertools.count()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._settled = Settled()
        self._held: dict[str, float] = {}  # keys waiting for older rows unknown here: until when
        self._fates: list[Fate] = []
        self._attempt_records: list[AttemptRecord] = []
        self._final_in_batch: list[int] = []
        self._last_flush = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._reload = False

    # -- the public surface ---------------------------------------------------------------------------

    @property
    def delivered(self) -> int:
        return self.metrics.delivered

    @property
    def failed(self) -> int:
        return self.metrics.failed

    @property
    def queue_depth(self) -> int:
        return len(self._queued_ids)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def due_by(self, when: float) -> int:
        """Deliveries in flight, and keys whose next row is due by ``when``: what a flush that ends then can
        still deliver (a row waiting for a later retry is not)."""
        return len(self._inflight) + sum(1 for q in self._queues.values() if q and q[0].next_attempt_at <= when)

    def is_queued(self, row_id: int) -> bool:
        """Whether the row waits here (or is in flight): it will be sent without being asked again."""
        return row_id in self._queued_ids

    def wake(self) -> None:
        self._wake.set()

    def enqueue(self, deliveries: Iterable[PendingDelivery], *, replay: bool = False) -> None:
        """Rows just committed to the outbox (called on the loop right after commit).

        ``replay``: rows made pending again; they are queued even if an earlier delivery of the same
        row is still waiting for its fate to be written."""
        now = self.clock()
        touched: list[str] = []
        for row in deliveries:
            if row.id in self._queued_ids or (row.id in self._flushing_ids and not replay):
                continue
            self._queued_ids.add(row.id)
            if replay:
                self._settled.forget(row.order_key)
            q = self._queues.get(row.order_key)
            if q is None:
                q = self._queues[row.order_key] = deque()
            if q and q[-1].id > row.id:
                head = q[0]
                items = sorted([*q, row], key=lambda r: r.id)
                q.clear()
                q.extend(items)
                if q[0] is not head:
                    self._held.pop(row.order_key, None)  # an older row: it may be what the key waited for
            else:
                q.append(row)
            touched.append(row.order_key)
        for key in touched:
            self._consider(key, now)
        self._pump()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._flush()
        except Exception:
            log.exception("writing the last webhook fates failed (they will be delivered again)")
        if self._own_http:
            await self.http.aclose()

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or in flight (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._queued_ids or self._inflight:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- scheduling -----------------------------------------------------------------------------------

    def _consider(self, key: str, now: float) -> None:
        """Make ``key`` ready if its head may be sent now, or remember when it may."""
        if key in self._inflight or key in self._ready_set:
            return
        q = self._queues.get(key)
        if not q:
            self._queues.pop(key, None)
            self._held.pop(key, None)
            return
        due = max(q[0].next_attempt_at, self._held.get(key, 0.0))
        if due <= now:
            self._held.pop(key, None)
            self._ready.append(key)
            self._ready_set.add(key)
        else:
            heapq.heappush(self._heap, (due, next(self._tie), key))
            self._wake.set()

    def _pump(self) -> None:
        if self._stopping:
            return
        while self._ready and len(self._inflight) < self.concurrency:
            key = self._ready.popleft()
            self._ready_set.discard(key)
            q = self._queues.get(key)
            if not q or key in self._inflight:
                continue
            self._inflight[key] = asyncio.create_task(self._attempt(key, q[0]))

    async def _run(self) -> None:
        try:
            self._load_all()
        except Exception:
            log.exception("loading pending webhooks failed; the sweep will find them")
        next_sweep = self.clock() + self.sweep_interval
        while not self._stopping:
            self._wake.clear()
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                _, _, key = heapq.heappop(self._heap)
                self._consider(key, now)
            self._pump()
            if self._fates and now - self._last_flush >= self.flush_interval:
                try:
                    await self._flush()
                except Exception:
                    log.exception("writing webhook fates failed; retrying")
                self._last_flush = now
            if now >= next_sweep:
                try:
                    await self._sweep(now)
                except Exception:
                    log.exception("webhook sweep failed")
                next_sweep = now + self.sweep_interval
            timeout = next_sweep - now
            if self._heap:
                timeout = min(timeout, self._heap[0][0] - now)
            if self._fates:
                timeout = min(timeout, self._last_flush + self.flush_interval - now)
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            else:
                await asyncio.sleep(0)

    def reload(self) -> None:
        """Rows became this dispatcher's (a dead node's, taken over): load them at the next sweep, which finds
        pending rows it does not know of whatever their due time."""
        self._reload = True
        self.wake()

    def _load_all(self) -> None:
        """Crash recovery: every pending row, oldest first, in chunks."""
        after = 0
        while True:
            with self.store.transaction() as tx:
                rows = outbox.pending_after(tx, after, 2000, self.owner)
            if not rows:
                return
            self.enqueue(rows)
            after = rows[-1].id

    async def _sweep(self, now: float) -> None:
        """Pending rows due for a while that nobody here knows of (another process committed them); after
        ``reload``, every pending row of this owner nobody here knows of, due or not."""
        reload, self._reload = self._reload, False
        ids = await self._in_store(self._stale_ids, float("inf") if reload else now)
        unknown = [i for i in ids if i not in self._queued_ids and i not in self._flushing_ids]
        for start in range(0, len(unknown), 500):
            self.enqueue(await self._in_store(self._rows_by_ids, unknown[start : start + 500]))

    def _stale_ids(self, now: float) -> list[int]:
        self.signer.reload(self.store)
        with self.store.transaction() as tx:
            return outbox.stale_pending_ids(tx, now - self.sweep_grace, self.owner)

    def _rows_by_ids(self, ids: list[int]) -> list[PendingDelivery]:
        with self.store.transaction() as tx:
            return outbox.by_ids(tx, ids)

    async def _in_store(self, work: Callable[..., T], *args: Any) -> T:
        """Run store work inline (SQLite) or cooperatively (PostgreSQL: the loop goes on while it waits)."""
        return await cooperative.run_if(self.cooperative, work, *args)

    async def _flush(self) -> None:
        """Write the batched fates and attempts in one transaction (one flush at a time: the dispatcher's
        loop awaits it, so a later batch never commits before an earlier one)."""
        if not self._fates and not self._attempt_records:
            return
        fates, attempts, finals = self._fates, self._attempt_records, self._final_in_batch
        self._fates, self._attempt_records, self._final_in_batch = [], [], []
        try:
            await self._in_store(self._write_fates, fates, attempts)
        except BaseException:
            # Put back ahead of what finished meanwhile, for the next flush.
            self._fates[:0], self._attempt_records[:0], self._final_in_batch[:0] = fates, attempts, finals
            raise
        self._flushing_ids.difference_update(finals)

    def _write_fates(self, fates: list[Fate], attempts: list[AttemptRecord]) -> None:
        with self.store.transaction() as tx:
            outbox.record(tx, fates, attempts)

    # -- one attempt ----------------------------------------------------------------------------------

    async def _attempt(self, key: str, row: PendingDelivery) -> None:
        final = False
        try:
            if await self._in_turn(key, row):
                final = await self._try(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook %s %s: attempt failed unexpectedly", row.event_type, row.event_id)
            row.next_attempt_at = self.clock() + self.backoff[-1]
        finally:
            self._inflight.pop(key, None)
        if final:
            q = self._queues.get(key)
            if q:
                if q[0] is row:
                    q.popleft()
                else:
                    with contextlib.suppress(ValueError):
                        q.remove(row)
            self._queued_ids.discard(row.id)
            self._flushing_ids.add(row.id)
            self._final_in_batch.append(row.id)
            number = sequence_of(row)
            if number is not None:
                self._settled.settle(key, number)
        if len(self._fates) == 1:
            self._wake.set()  # the first fate since the last flush: have the loop schedule one
        self._consider(key, self.clock())
        self._pump()

    async def _in_turn(self, key: str, row: PendingDelivery) -> bool:
        """Whether ``row``, the head of its key here, may be sent: no older row of its key is pending in the
        outbox but for those finished here whose fate is not written yet. If one is, the key is held."""
        number = sequence_of(row)
        if self._settled.may_send(key, number):
            return True
        try:
            older = await self._in_store(self._older_pending, key, row.id)
        except Exception:
            log.exception("looking for older webhooks of %s failed; trying again", key)
            older = None
        q = self._queues.get(key)
        if not q or q[0] is not row:
            return False  # an older row was queued meanwhile: it goes first
        if older is None or len(older) >= outbox.OLDER_PENDING_LIMIT or not self._flushing_ids.issuperset(older):
            self._held[key] = self.clock() + self.order_recheck
            return False
        if number is not None:
            self._settled.settle(key, number - 1)
        return True

    def _older_pending(self, key: str, before_id: int) -> list[int]:
        with self.store.transaction(read_only=True) as tx:
            return outbox.older_pending_ids(tx, key, before_id)

    async def _try(self, row: PendingDelivery) -> bool:
        """One attempt; True when the row's fate is final (delivered or given up)."""
        url, attempt = plan(row.attempts, row.url, row.failover_url)
        if url is None:
            why = "failover exhausted" if row.failover_url else ("retries exhausted" if row.url else "no URL")
            self._fates.append(Fate(row.id, "failed", row.attempts, row.next_attempt_at, None, why))
            self.metrics.failed += 1
            return True
        started = self.clock()
        status, error, body = await send(self.http, self.signer, row, url, attempt)
        ended = self.clock()
        row.attempts += 1
        self.metrics.attempts += 1
        self._attempt_records.append(
            AttemptRecord(row.id, row.account_id, row.attempts, url, row.method, started, ended, status, error,
                          body)
        )
        if error is None:
            self._fates.append(Fate(row.id, "delivered", row.attempts, row.next_attempt_at, ended, None))
            self.metrics.delivered += 1
            if row.created_at:
                self.metrics.observe_latency(ended - row.created_at)
            return True
        next_url, _ = plan(row.attempts, row.url, row.failover_url)
        if next_url is None:
            self._fates.append(Fate(row.id, "failed", row.attempts, row.next_attempt_at, None, error))
            self.metrics.failed += 1
            log.warning("webhook %s %s to %s given up: %s", row.event_type, row.event_id, url, error)
            return True
        pause = 0.0 if next_url != url else self.backoff[min(attempt - 1, len(self.backoff) - 1)]
        row.next_attempt_at = ended + pause * random.uniform(0.8, 1.2)
        self._fates.append(Fate(row.id, "pending", row.attempts, row.next_attempt_at, None, error))
        self.metrics.retried += 1
        return False

    # -- metrics --------------------------------------------------------------------------------------

    def render_metrics(self) -> str:
        m = self.metrics
        lines = [
            "# HELP callroom_webhook_deliveries_total Webhook events delivered (2xx).",
            "# TYPE callroom_webhook_deliveries_total counter",
            f"callroom_webhook_deliveries_total {m.delivered}",
            "# HELP callroom_webhook_failures_total Webhook events given up after every retry and the failover.",
            "# TYPE callroom_webhook_failures_total counter",
            f"callroom_webhook_failures_total {m.failed}",
            "# HELP callroom_webhook_retries_total Failed attempts that were scheduled for a retry.",
            "# TYPE callroom_webhook_retries_total counter",
            f"callroom_webhook_retries_total {m.retried}",
            "# HELP callroom_webhook_attempts_total HTTP requests made to webhook URLs.",
            "# TYPE callroom_webhook_attempts_total counter",
            f"callroom_webhook_attempts_total {m.attempts}",
            "# HELP callroom_webhook_queue_depth Events waiting for delivery (including in flight).",
            "# TYPE callroom_webhook_queue_depth gauge",
            f"callroom_webhook_queue_depth {self.queue_depth}",
            "# HELP callroom_webhook_in_flight Webhook requests in flight.",
            "# TYPE callroom_webhook_in_flight gauge",
            f"callroom_webhook_in_flight {self.in_flight}",
            "# HELP callroom_webhook_delivery_latency_seconds From the state change's commit to the 2xx.",
            "# TYPE callroom_webhook_delivery_latency_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip(LATENCY_BUCKETS, m.latency_buckets, strict=True):
            cumulative += n
            lines.append(f'callroom_webhook_delivery_latency_seconds_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'callroom_webhook_delivery_latency_seconds_bucket{{le="+Inf"}} {m.latency_count}')
        lines.append(f"callroom_webhook_delivery_latency_seconds_sum {m.latency_sum:.6f}")
        lines.append(f"callroom_webhook_delivery_latency_seconds_count {m.latency_count}")
        return "\n".join(lines) + "\n"
