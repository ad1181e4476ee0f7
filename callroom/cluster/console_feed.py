"""The consoles' events across a cluster: what one node commits reaches the consoles open on the others.

A console is served by the node its browser reached, but an account's calls live on every node and its
commands may reach any: each node tells the others its committed events (``events`` on the bus, batched
once per turn of its loop, JSON) and hands theirs to its own hub. It tells them only while some node has a
console open: a node with consoles says so every second (``consoles``), and the others send for ``WANTED_SECS``
after hearing it, so a cluster nobody watches pays nothing. Events are account-scoped as on one node (the hub
gives each to its account's consoles only); one lost on the bus costs a console one update, which its next
reload repairs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from callroom.cluster.bus import Bus
from callroom.console.hub import Committed, ConsoleHub

log = logging.getLogger(__name__)

EVENTS, TOUCHED, CONSOLES = "console-events", "console-touched", "consoles"
PING_SECS = 1.0
WANTED_SECS = 3.0  # events are sent this long after the last "consoles open" was heard


@dataclass(frozen=True, slots=True)
class FeedEvent:
    account_id: str
    event_id: str
    event_type: str
    occurred_at: float
    order_key: str
    payload: dict[str, Any]


def encode(node_id: str, events: Iterable[Committed]) -> bytes:
    return orjson.dumps({"node": node_id, "events": [
        [e.account_id, e.event_id, e.event_type, e.occurred_at, e.order_key, e.payload] for e in events]})


def decode(data: bytes) -> tuple[str, list[FeedEvent]]:
    body = orjson.loads(data)
    return str(body["node"]), [FeedEvent(str(a), str(i), str(t), float(at), str(k), dict(p))
                               for a, i, t, at, k, p in body["events"]]  # fmt: skip


class ConsoleFeed:
    def __init__(self, bus: Bus, hub: ConsoleHub, node_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.bus, self.hub, self.node_id, self.clock = bus, hub, node_id, clock
        self.told = 0  # events told to the other nodes
        self.heard = 0  # events heard from them
        self._wanted_until = 0.0
        self._pending: list[Committed] = []
        self._flushing = False
        self._ping: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()

    async def start(self) -> None:
        await self.bus.listen(EVENTS, self._heard_events)
        await self.bus.listen(TOUCHED, self._heard_touched)
        await self.bus.listen(CONSOLES, self._heard_consoles)
        self.hub.subscribed = self._opened.set
        self._ping = asyncio.get_running_loop().create_task(self._pinging(), name="console-feed")

    async def stop(self) -> None:
        if self._ping is not None:
            self._ping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ping

    def committed(self, rows: Iterable[Committed]) -> None:
        """Events this node just committed: to the other nodes, while a console anywhere wants them."""
        if self.clock() >= self._wanted_until:
            return
        self._pending.extend(rows)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the rest of this turn's commits join the batch
        rows, self._pending = self._pending, []
        self._flushing = False
        if rows:
            self.told += len(rows)
            await self.bus.tell(EVENTS, encode(self.node_id, rows))

    def touched(self, conference_ids: set[str]) -> None:
        """Conferences whose mix changed here without an event (mute, hold, role): the other nodes' consoles
        reload them too."""
        if self.clock() < self._wanted_until and conference_ids:
            asyncio.get_running_loop().create_task(
                self.bus.tell(TOUCHED, orjson.dumps({"node": self.node_id, "conferences": sorted(conference_ids)})))

    def _heard_touched(self, data: bytes) -> None:
        body = orjson.loads(data)
        if body["node"] != self.node_id:
            self.hub.touch({str(c) for c in body["conferences"]})

    def _heard_events(self, data: bytes) -> None:
        node, events = decode(data)
        if node != self.node_id:
            self.heard += len(events)
            self.hub.publish(events, here=False)

    def _heard_consoles(self, data: bytes) -> None:
        if data.decode() != self.node_id:
            self._wanted_until = self.clock() + WANTED_SECS

    async def _pinging(self) -> None:
        """Say every ``PING_SECS`` that consoles are open here, and at once when one opens (its events must
        not wait a second to start coming)."""
        while True:
            self._opened.clear()
            if self.hub.subscribers:
                await self.bus.tell(CONSOLES, self.node_id.encode())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._opened.wait(), PING_SECS)
