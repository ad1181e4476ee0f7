"""The bus between the nodes of a cluster: NATS request/reply, one subject per node.

A node answers on ``callroom.<cluster>.node.<node id>``; another node asks it with ``ask`` and gets the
reply or ``NodeUnreachable`` after ``timeout`` (NATS answers at once, with "no responders", when nobody
listens on the subject: a node that stopped or died). Each request is served in its own task, so a request
that asks a third node in turn (a conference's home opening relays on the members' nodes) never holds up
the requests behind it. Messages are ``messages.py``'s, encoded by ``wire.py``; bytes that are not are
answered with ``Failed``.

The cluster's name keeps clusters that share one NATS server apart; it is kept in the database
(``store/settings``), so every node of one database uses the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from callroom.cluster import wire
from callroom.cluster.messages import BusReply, BusRequest, Failed
from callroom.errors import CallroomError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


class NodeUnreachable(CallroomError):
    """Another node did not answer (stopped, dead, or too slow)."""

    def __init__(self, node_id: str, why: str) -> None:
        self.node_id = node_id
        self.why = why
        super().__init__(f"node {node_id} did not answer: {why}")


class Bus:
    def __init__(self, url: str, cluster: str, node_id: str,
                 serve: Callable[[BusRequest], Awaitable[BusReply]]) -> None:  # fmt: skip
        self.url = url
        self.cluster = cluster
        self.node_id = node_id
        self.serve = serve
        self.asked = 0  # requests sent
        self.served = 0  # requests answered
        self._nc: Client | None = None
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._topics: list[Subscription] = []

    @property
    def connected(self) -> bool:
        """Whether the node is on the bus now (not while it reconnects)."""
        return self._nc is not None and self._nc.is_connected

    def subject(self, node_id: str) -> str:
        return f"callroom.{self.cluster}.node.{node_id}"

    def topic(self, name: str) -> str:
        """A subject every node of the cluster may listen on (``listen``) and tell (``tell``)."""
        return f"callroom.{self.cluster}.all.{name}"

    async def listen(self, name: str, heard: Callable[[bytes], None]) -> None:
        """Hear what the nodes tell on ``topic(name)`` (this node's own words too)."""
        if self._nc is None:
            raise NodeUnreachable(self.node_id, "this node is not connected to the bus")

        async def received(msg: Msg) -> None:
            try:
                heard(msg.data)
            except Exception:
                log.exception("bus: %s", name)

        self._topics.append(await self._nc.subscribe(self.topic(name), cb=received))

    async def tell(self, name: str, data: bytes) -> None:
        """Tell every node listening on ``topic(name)``; nothing is kept for a node that is not (no reply, no
        retry: for what a lost message costs little, like the consoles' events)."""
        if self._nc is not None and self._nc.is_connected:
            try:
                await self._nc.publish(self.topic(name), data)
            except nats.errors.Error as exc:
                log.info("bus: telling %s failed: %s", name, exc)

    async def start(self, connect_timeout: float = 5.0) -> None:
        """Connect and listen; fails (``OSError``-like errors from NATS) if the server cannot be reached."""
        self._nc = await nats.connect(
            self.url, name=f"callroom {self.node_id}", connect_timeout=connect_timeout, allow_reconnect=True,
            max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=self._error, disconnected_cb=self._down,
            reconnected_cb=self._up,
            # A link that goes silent (no FIN: a cable, a firewall) is found within ~3 s, not nats-py's 4 minutes:
            # the node then leaves the cluster's heartbeat (``Membership``) before its time to live runs out.
            ping_interval=1, max_outstanding_pings=2,
        )  # fmt: skip
        self._sub = await self._nc.subscribe(self.subject(self.node_id), cb=self._received)
        await self._nc.flush(max(1, round(connect_timeout)))

    async def _error(self, exc: Exception) -> None:
        log.warning("bus: %s", exc)

    async def _down(self) -> None:
        log.warning("bus: disconnected from %s", self.url)

    async def _up(self) -> None:
        log.info("bus: reconnected to %s", self.url)

    async def _received(self, msg: Msg) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        reply: BusReply
        try:
            request = wire.decode(msg.data)
            if not isinstance(request, BusRequest):
                raise wire.WireError(f"{type(request).__name__} is not a request")
            reply = await self.serve(request)
        except Exception as exc:
            log.exception("bus request failed")
            reply = Failed(f"{type(exc).__name__}: {exc}")
        self.served += 1
        if msg.reply:
            try:
                await msg.respond(wire.encode(reply))
            except Exception:
                log.exception("bus: replying failed")

    async def ask(self, node_id: str, request: BusRequest, timeout: float = DEFAULT_TIMEOUT) -> BusReply:
        """Ask ``node_id`` and return its reply; ``NodeUnreachable`` if none came within ``timeout``."""
        if self._nc is None:
            raise NodeUnreachable(node_id, "this node is not connected to the bus")
        self.asked += 1
        try:
            msg = await self._nc.request(self.subject(node_id), wire.encode(request), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NodeUnreachable(node_id, "it is not on the bus") from None
        except nats.errors.TimeoutError:
            raise NodeUnreachable(node_id, f"no reply within {timeout:g} s") from None
        except nats.errors.Error as exc:
            raise NodeUnreachable(node_id, f"{type(exc).__name__}: {exc}") from None
        try:
            reply = wire.decode(msg.data)
        except wire.WireError as exc:
            raise NodeUnreachable(node_id, str(exc)) from None
        if isinstance(reply, Failed):
            raise NodeUnreachable(node_id, reply.detail)
        if isinstance(reply, BusRequest):
            raise NodeUnreachable(node_id, f"answered with a request ({type(reply).__name__})")
        return reply

    async def close(self) -> None:
        if self._nc is None:
            return
        nc, self._nc = self._nc, None
        try:
            if self._sub is not None:
                await self._sub.unsubscribe()
            for sub in self._topics:
                await sub.unsubscribe()
            for task in list(self._tasks):
                await asyncio.wait({task}, timeout=2.0)
            await nc.drain()
        except Exception:
            log.exception("bus: closing failed")
            await nc.close()
