"""A node's membership of its cluster: its heartbeat, and what it does when another node dies.

Every node sharing a database keeps a row in ``nodes`` (``store/nodes.py``) and beats every ``interval``
seconds. A node whose heartbeat is older than ``ttl`` is dead: the first survivor to notice claims it (the
row's lock decides: one survivor per dead node), takes over its pending webhooks (their rows become the
survivor's, and its dispatcher loads them) and ends its calls (``call.hangup``, leaving their queues and
conferences; conferences with members elsewhere go on). Ending the calls is a pass that repeats until none
is left, so a survivor that dies in the middle is replaced by the next.

A node cut off from the cluster's bus (``reachable`` false) while it still reaches the database is no use
to the cluster: nobody can carry out its media instructions, and it cannot carry out theirs. It stops
beating, so that the others take it for dead and end its calls with their webhooks, and it claims nobody
(it may be the one cut off). Seeing its own row dead, it hangs up what it carried; back on the bus, it
registers again. A node that comes back claims nobody for one time to live, so that when the whole bus was
down the first node back does not reap the others before they have beaten again.

On SQLite a node is alone: it beats all the same (``callroom cluster status`` shows it), and nobody dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from callroom.control.calls import node_restarted
from callroom.control.conferences import rehome
from callroom.control.service import Control
from callroom.store import cooperative, nodes, outbox
from callroom.store.engine import Store

log = logging.getLogger(__name__)

HEARTBEAT_SECS = 1.0
TIME_TO_LIVE_SECS = 4.0  # a node silent this long is dead (its calls end within ~TTL + 2 heartbeats)


class Membership:
    def __init__(self, store: Store, control: Control, node_id: str, *, api_url: str | None, sip_host: str | None,
                 sip_port: int | None, load: Callable[[], Awaitable[dict[str, Any]]],
                 took_over: Callable[[], None] = lambda: None,
                 declared_dead: Callable[[list[str]], None] = lambda _calls: None,
                 drain_asked: Callable[[], None] = lambda: None, reachable: Callable[[], bool] = lambda: True,
                 interval: float = HEARTBEAT_SECS,
                 ttl: float = TIME_TO_LIVE_SECS, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self.control = control
        self.node_id = node_id
        self.api_url, self.sip_host, self.sip_port = api_url, sip_host, sip_port
        self.load = load  # the figures each heartbeat carries (legs, calls, tick lateness ...)
        self.took_over = took_over  # called when this node took over a dead node's webhooks
        # called with the calls the cluster ended while it took this node for dead (it was cut off, or stalled)
        self.declared_dead = declared_dead
        self.drain_asked = drain_asked  # called when its row says it drains (``callroom drain`` asked for it)
        self.reachable = reachable  # whether the node is on the cluster's bus
        self._cut_off = False
        self._released = False  # cut off, and what it carried hung up since the cluster took it for dead
        self._claims_from = 0.0  # back on the bus: claims nobody before then
        self.interval = interval
        self.ttl = ttl
        self.clock = clock
        self.reaped = 0  # calls of dead nodes this node ended
        self.rehomed = 0  # conferences of dead nodes this node moved to a live one
        self.view: dict[str, str] = {}  # every node's status as the last pass saw it
        self._task: asyncio.Task[None] | None = None

    async def _in_store(self, work: Callable[..., Any], *args: Any) -> Any:
        return await cooperative.run_if(self.control.cooperative, work, *args)

    def _register(self) -> None:
        with self.store.transaction() as tx:
            nodes.register(tx, self.node_id, self.clock(), api_url=self.api_url, sip_host=self.sip_host,
                           sip_port=self.sip_port)  # fmt: skip

    async def start(self) -> None:
        await self._in_store(self._register)
        await self._in_store(self._rehome, self.node_id)  # what a previous process of this node mixed
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster-membership")

    async def stop(self) -> None:
        """Stop beating and say so: a node that stopped cleanly is not dead (nobody reaps it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._in_store(self._stopped)

    def _stopped(self) -> None:
        with self.store.transaction() as tx:
            nodes.stopped(tx, self.node_id, self.clock())

    async def hand_over_webhooks(self) -> None:
        """Once the node's dispatcher has stopped: its undelivered webhooks go to the up node with the freshest
        heartbeat, whose sweep finds them (kept, they would wait for this node to start again)."""
        await self._in_store(self._hand_over)

    def _hand_over(self) -> None:
        with self.store.transaction() as tx:
            heir = nodes.freshest_up(tx, self.clock(), self.ttl)
            handed = outbox.take_over(tx, self.node_id, heir) if heir is not None else 0
        if handed:
            log.info("node %s handed %d undelivered webhooks to %s", self.node_id, handed, heir)

    async def _run(self) -> None:
        while True:
            try:
                await self.pass_once()
            except Exception:
                log.exception("cluster membership pass failed")
            await asyncio.sleep(self.interval)

    async def pass_once(self) -> None:
        """One heartbeat, then what the cluster's dead need of this node."""
        if not self.reachable():
            await self._while_cut_off()
            return
        if self._cut_off:
            log.warning("node %s is back on the cluster's bus", self.node_id)
            self._cut_off = self._released = False
            self._claims_from = self.clock() + self.ttl
        try:
            load = await asyncio.wait_for(self.load(), self.interval)
        except Exception:
            load = {}
        beat = await self._in_store(self._beat, load)
        if beat.draining_since is not None:
            self.drain_asked()
        if not beat.alive:
            ended = await self._in_store(self._ended_meanwhile)
            log.error("node %s was declared dead by the cluster, which ended its %d calls; it hangs them up and "
                      "registers again", self.node_id, len(ended))
            self.declared_dead(ended)
            await self._in_store(self._register)
        dead = await self._in_store(self._claim) if self.clock() >= self._claims_from else []
        for node_id in dead:
            log.warning("node %s is dead (no heartbeat for %.0f s): %s ends its calls and delivers its webhooks",
                        node_id, self.ttl, self.node_id)
        if dead:
            self.took_over()
        await self._in_store(self._end_orphans)

    async def _while_cut_off(self) -> None:
        if not self._cut_off:
            self._cut_off = True
            log.error("node %s is cut off from the cluster's bus: it stops beating, and the cluster will end its "
                      "calls within %.0f s unless the bus comes back", self.node_id, self.ttl)
        if not self._released and await self._in_store(self._own_status) == nodes.DEAD:
            self._released = True
            ended = await self._in_store(self._ended_meanwhile)
            log.error("node %s was declared dead by the cluster, which ended its %d calls; it hangs them up",
                      self.node_id, len(ended))
            self.declared_dead(ended)

    def _own_status(self) -> str | None:
        with self.store.transaction(read_only=True) as tx:
            return nodes.statuses(tx).get(self.node_id)

    def _ended_meanwhile(self) -> list[str]:
        with self.store.transaction(read_only=True) as tx:
            since = nodes.reaped_at(tx, self.node_id)
            return nodes.ended_by_the_cluster(tx, self.node_id, since) if since is not None else []

    def alive(self, node_id: str) -> bool:
        """Whether ``node_id`` was up at the last pass (a node not seen yet is taken to be)."""
        return self.view.get(node_id, nodes.UP) == nodes.UP

    def _beat(self, load: dict[str, Any]) -> nodes.Beat:
        with self.store.transaction() as tx:
            beat = nodes.beat(tx, self.node_id, self.clock(), load)
            self.view = nodes.statuses(tx)
            return beat

    async def draining(self) -> None:
        """Say in the node's row that it drains (``callroom cluster status`` shows it)."""
        await self._in_store(self._draining)

    def _draining(self) -> None:
        with self.store.transaction() as tx:
            nodes.drain(tx, self.node_id, self.clock())

    def _claim(self) -> list[str]:
        with self.store.transaction() as tx:
            dead = nodes.claim_dead(tx, self.node_id, self.clock(), self.ttl)
            for node_id in dead:
                outbox.take_over(tx, node_id, self.node_id)
                self.view[node_id] = nodes.DEAD
            return dead

    def _end_orphans(self) -> None:
        seen: list[tuple[str, str]] = []
        while True:
            with self.store.transaction(read_only=True) as tx:
                orphans = nodes.orphaned(tx, self.node_id)
            if not orphans or orphans == seen:  # none left, or none of these would end (try again next pass)
                break
            seen = orphans
            for account_id, call_control_id in orphans:
                try:
                    self.control.run(account_id, functools.partial(node_restarted, call_control_id=call_control_id))
                    self.reaped += 1
                except Exception:
                    log.exception("ending call %s of a dead node failed", call_control_id)
        self._rehome()

    def _rehome(self, own: str | None = None) -> None:
        """Conferences mixed on a node that is gone (or, ``own``, by a previous process of this node) are mixed
        from now on where a member lives."""
        with self.store.transaction(read_only=True) as tx:
            if own is None:
                homeless = nodes.homeless_conferences(tx)
            else:
                homeless = [(account, conf, own) for account, conf in nodes.conferences_homed_on(tx, own)]
        for account_id, conference_id, gone in homeless:
            try:
                self.control.run(account_id, functools.partial(rehome, conference_id=conference_id, gone=gone,
                                                               survivor=self.node_id))
                self.rehomed += 1
            except Exception:
                log.exception("moving conference %s off a dead node failed", conference_id)
