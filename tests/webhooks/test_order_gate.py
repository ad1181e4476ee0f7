"""A dispatcher never sends an event while an older event of its call (conference) is pending in the
outbox, even one it does not know of: written by another process or node sharing the outbox, or before a
crash and not loaded yet. Against a real receiver, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from callroom.store import outbox
from callroom.store.engine import Store
from callroom.store.outbox import Fate, PendingDelivery
from callroom.webhooks.dispatcher import Dispatcher
from callroom.webhooks.signing import WebhookSigner
from tests.store import factories as f
from tests.support.receiver import WebhookReceiver


def _write(store: Store, account: str, key: str, url: str, count: int) -> list[PendingDelivery]:
    """``count`` events of ``key``, committed one transaction each, as their writer hands them over."""
    ids = []
    for _ in range(count):
        with store.transaction() as tx:
            appended = outbox.append(tx, f.event(account, order_key=key, url=url, failover_url=None), time.time(),
                                     "call_sequence")
        ids.append(appended.id)
    with store.transaction() as tx:
        return outbox.by_ids(tx, ids)


@asynccontextmanager
async def _dispatching(store: Store, **options: float) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(store, WebhookSigner.load_or_create(store), backoff=(0.05,), order_recheck=0.05,
                            cooperative=not store.is_sqlite, **options)  # type: ignore[arg-type]
    dispatcher.start()
    await asyncio.sleep(0.1)  # it has loaded what was pending at its start (nothing)
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()


def _numbers(receiver: WebhookReceiver, path: str) -> list[int]:
    return [r.payload["call_sequence"] for r in receiver.delivered(path) if r.body]


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_an_event_waits_while_another_node_delivers_the_older_ones(store: Store,
                                                                          receiver: WebhookReceiver) -> None:
    path = f"/gate/{uuid.uuid4().hex}"
    account, key = f.uid(), f"call:{f.uid()}"
    async with _dispatching(store, sweep_grace=3600.0) as here:
        elsewhere = _write(store, account, key, receiver.url(path), 2)  # another node's events 1 and 2
        (mine,) = _write(store, account, key, receiver.url(path), 1)
        here.enqueue([mine])
        await asyncio.sleep(0.5)
        assert _numbers(receiver, path) == []  # 1 and 2 are pending: 3 waits
        with store.transaction() as tx:  # the other node delivered them
            now = time.time()
            outbox.record(tx, [Fate(r.id, "delivered", 1, now, now, None) for r in elsewhere], [])
        await _until(lambda: _numbers(receiver, path) == [3])
        assert here.queue_depth == 0


async def test_events_left_by_a_dead_writer_go_first_once_the_sweep_adopts_them(
    store: Store, receiver: WebhookReceiver
) -> None:
    path = f"/gate/{uuid.uuid4().hex}"
    account, key = f.uid(), f"call:{f.uid()}"
    async with _dispatching(store, sweep_interval=0.1, sweep_grace=0.3) as here:
        _write(store, account, key, receiver.url(path), 2)  # written by a process that died
        mine = _write(store, account, key, receiver.url(path), 2)
        here.enqueue(mine)
        await _until(lambda: len(_numbers(receiver, path)) == 4)
        assert _numbers(receiver, path) == [1, 2, 3, 4]
