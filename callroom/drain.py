"""How a node stops without losing work: it drains.

From the moment a drain starts (SIGTERM or Ctrl-C, or ``callroom drain`` through the node's row) the node
takes no new call: ``POST /calls`` and virtual calls answer 503 ``Draining``, an INVITE gets SIP 503 (in a
cluster, Kamailio then tries another node). The API keeps answering, so applications go on steering the
calls in progress, which run until they end or the grace period is over. Then the node:

1. ends the calls left as the API's hangup would (BYE or CANCEL, ``call.hangup`` with ``normal_clearing``,
   leaving queues, conferences and bridges with their webhooks);
2. waits for the recordings of those calls and of the conferences it mixes to be saved (their media ended
   with the calls: the files are finished and ``*.recording.saved`` is sent);
3. gives the webhook dispatcher a few seconds to deliver what is due; what is left stays in the outbox
   (delivered by the node when it starts again, or, in a cluster, by another node: see ``Membership.stop``).

A second signal cuts the grace period short; the server stops at a third. The node then says in one line
what the drain did.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from callroom.control.calls import node_drained
from callroom.control.service import Control
from callroom.store import cooperative, nodes
from callroom.webhooks.dispatcher import Dispatcher

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_GRACE_SECS = 30.0
RECORDINGS_SETTLE_SECS = 10.0  # the longest wait for the recordings of the ended calls to be saved
WEBHOOKS_FLUSH_SECS = 5.0  # the longest wait for the webhooks due to be delivered
POLL_SECS = 0.2


@dataclass(frozen=True, slots=True)
class DrainReport:
    calls_at_start: int
    ended_in_grace: int
    ended_by_the_node: int
    recordings_unsaved: int
    webhooks_left: int
    seconds: float

    def line(self, node_id: str) -> str:
        return (f"node {node_id} drained in {self.seconds:.1f} s: {self.calls_at_start} calls at the start, "
                f"{self.ended_in_grace} ended in the grace period, {self.ended_by_the_node} hung up by the node; "
                f"{self.recordings_unsaved} recordings not saved; {self.webhooks_left} webhooks left in the outbox")


class Drain:
    """One node's drain: started once (``start``), hurried by a later signal (``hurry``)."""

    def __init__(self, control: Control, *, grace: float = DEFAULT_GRACE_SECS,
                 dispatcher: Callable[[], Dispatcher | None] = lambda: None,
                 mark_draining: Callable[[], Awaitable[None]] | None = None) -> None:  # fmt: skip
        self.control = control
        self.store = control.store
        self.node_id = control.node_id
        self.grace = grace
        self.dispatcher = dispatcher
        self.mark_draining = mark_draining  # says so in the node's row
        self.on_drained: Callable[[DrainReport], None] = lambda _report: None  # the server stops then
        self.report: DrainReport | None = None
        self._task: asyncio.Task[DrainReport] | None = None
        self._hurry = asyncio.Event()

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Begin draining (once; later calls do nothing)."""
        if self._task is None:
            self.control.draining = True
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="node-drain")

    def hurry(self) -> None:
        """End the grace period now."""
        self._hurry.set()

    async def wait(self) -> DrainReport:
        self.start()
        assert self._task is not None
        return await asyncio.shield(self._task)

    async def _in_store(self, work: Callable[..., T], *args: Any) -> T:
        return await cooperative.run_if(self.control.cooperative, work, *args)

    def _count(self, what: Callable[[Any, str], int]) -> int:
        with self.store.transaction(read_only=True) as tx:
            return what(tx, self.node_id)

    async def _drain(self) -> DrainReport:
        started = time.monotonic()
        try:
            if self.mark_draining is not None:
                await self.mark_draining()
        except Exception:
            log.exception("marking node %s draining failed", self.node_id)
        at_start = await self._live()
        log.warning("node %s drains: no new calls; %d calls may run for up to %g s", self.node_id, at_start,
                    self.grace)
        deadline = started + self.grace
        left = at_start
        while left and not self._hurry.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), min(POLL_SECS, max(0.0, deadline - time.monotonic())))
            left = await self._live()
        ended = await self._end_calls_left()
        await self.control.settle_facts()
        unsaved = await self._recordings_saved(time.monotonic() + RECORDINGS_SETTLE_SECS)
        webhooks_left = await self._webhooks_delivered(WEBHOOKS_FLUSH_SECS)
        self.report = DrainReport(at_start, max(0, at_start - ended), ended, unsaved, webhooks_left,
                                  time.monotonic() - started)
        self.on_drained(self.report)
        return self.report

    async def _live(self) -> int:
        return await self._in_store(self._count, nodes.live_calls_of)

    async def _end_calls_left(self) -> int:
        def calls_left() -> list[tuple[str, str]]:
            with self.store.transaction(read_only=True) as tx:
                return [(c.account_id, c.call_control_id) for c in tx.live_calls_of_node(self.node_id)]

        ended = 0
        for account_id, call_control_id in await self._in_store(calls_left):
            try:
                await self.control.arun(account_id, functools.partial(node_drained, call_control_id=call_control_id))
                ended += 1
            except Exception:
                log.exception("hanging up call %s at the end of the drain failed", call_control_id)
        return ended

    async def _recordings_saved(self, deadline: float) -> int:
        """Wait until the recordings under way are saved (their facts come from the media process)."""
        while True:
            await self.control.settle_facts()
            unsaved = await self._in_store(self._count, nodes.recordings_under_way)
            if not unsaved or time.monotonic() >= deadline:
                return unsaved
            await asyncio.sleep(POLL_SECS / 2)

    async def _webhooks_delivered(self, timeout: float) -> int:
        """Give the dispatcher up to ``timeout`` for the deliveries it can make meanwhile (one waiting for a
        later retry stays in the outbox); how many are left."""
        dispatcher = self.dispatcher()
        if dispatcher is None:
            return 0
        deadline = time.time() + timeout
        ends = time.monotonic() + timeout
        while dispatcher.due_by(deadline) and time.monotonic() < ends:
            await asyncio.sleep(0.02)
        return dispatcher.queue_depth
