"""SIP over TCP and TLS for a :class:`~callroom.aio.sip_transport.SipTransport`: the listeners, the
connections made to trunks, and their framing (the sans-I/O ``StreamFramer``).

A connection's peer address is what the endpoint knows it by (``SipEndpoint.stream_opened``): messages
to that address go over the connection, messages from it join the transport's datagrams in the same inbox
(so they are handled in the same slices and pass the same gates). A stream that cannot be framed, or
breaks a message's limits, is closed; so is a connection past ``MAX_CONNECTIONS``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Final, cast

from callroom.aio.tasks import Tasks
from callroom.sip.stream import PONG, StreamError, StreamFramer
from callroom.sip.transaction import Addr

log = logging.getLogger(__name__)

MAX_CONNECTIONS: Final = 1024
CONNECT_TIMEOUT: Final = 5.0


class _Connection(asyncio.Protocol):
    def __init__(self, owner: StreamConnections, kind: str) -> None:
        self.owner = owner
        self.kind = kind  # "TCP" or "TLS"
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Addr | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's are not asyncio.Transport's subclasses)
        name = transport.get_extra_info("peername")
        self.peer = (str(name[0]), int(name[1]))
        if len(self.owner.connections) >= MAX_CONNECTIONS:
            log.info("SIP %s connection from %s refused: %d open", self.kind, self.peer, MAX_CONNECTIONS)
            self.transport.abort()
            return
        self.owner.opened(self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except StreamError as exc:
            log.info("SIP %s connection from %s closed: %s", self.kind, self.peer, exc)
            assert self.transport is not None
            self.transport.abort()
            return
        if self.framer.pongs_due and self.transport is not None:
            self.transport.write(PONG * self.framer.pongs_due)
            self.framer.pongs_due = 0
        assert self.peer is not None
        for message in messages:
            self.owner.deliver(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost(self)


class StreamConnections:
    """Every stream connection of one SIP transport, by peer address."""

    def __init__(self, deliver: Callable[[bytes, Addr], None], opened: Callable[[Addr, str], None],
                 closed: Callable[[Addr], None]) -> None:  # fmt: skip
        self.deliver = deliver  # a message from a peer (to the transport's inbox)
        self._opened = opened  # tell the endpoint
        self._closed = closed
        self.connections: dict[Addr, _Connection] = {}
        # Where we dial over a stream (trunks): connected again when something is sent after a close.
        self.routes: dict[Addr, tuple[str, ssl.SSLContext | None, str | None]] = {}
        self._waiting: dict[Addr, list[bytes]] = {}  # what waits for such a connection
        self._tasks = Tasks()
        self._servers: list[asyncio.Server] = []
        self._locks: dict[Addr, asyncio.Lock] = {}

    async def listen(self, host: str, port: int, kind: str, context: ssl.SSLContext | None = None) -> int:
        """Accept ``kind`` ("TCP", "TLS" with ``context``) connections on ``host:port``; the port bound."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self, kind), host, port, ssl=context)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def connect(self, addr: Addr, kind: str, context: ssl.SSLContext | None = None,
                      server_hostname: str | None = None) -> None:  # fmt: skip
        """A connection to ``addr`` (one already open is used); ``OSError`` when it cannot be made (a TLS
        peer whose certificate does not verify: ``ssl.SSLError``, an ``OSError`` too)."""
        self.routes[addr] = (kind, context, server_hostname)
        lock = self._locks.setdefault(addr, asyncio.Lock())
        async with lock:
            if addr in self.connections:
                return
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(self, kind), addr[0], addr[1], ssl=context,
                server_hostname=server_hostname if context is not None else None), CONNECT_TIMEOUT)

    def opened(self, connection: _Connection) -> None:
        assert connection.peer is not None
        self.connections[connection.peer] = connection
        self._opened(connection.peer, connection.kind)

    def lost(self, connection: _Connection) -> None:
        peer = connection.peer
        if peer is not None and self.connections.get(peer) is connection:
            del self.connections[peer]
            if peer not in self.routes:  # a route of ours stays a stream peer: it is connected again
                self._closed(peer)

    def send(self, addr: Addr, data: bytes) -> bool:
        """Write to ``addr``'s connection; to a route of ours without one, after connecting again."""
        connection = self.connections.get(addr)
        if connection is not None and connection.transport is not None and not connection.transport.is_closing():
            connection.transport.write(data)
            return True
        if addr not in self.routes:
            return False
        waiting = self._waiting.setdefault(addr, [])
        waiting.append(data)
        if len(waiting) == 1:
            self._tasks.spawn(self._reconnect(addr))
        return True

    async def _reconnect(self, addr: Addr) -> None:
        kind, context, hostname = self.routes[addr]
        try:
            await self.connect(addr, kind, context, hostname)
        except OSError as exc:
            log.info("SIP %s connection to %s failed: %s", kind, addr, exc)
        waiting = self._waiting.pop(addr, [])
        connection = self.connections.get(addr)
        if connection is not None and connection.transport is not None:
            for data in waiting:
                connection.transport.write(data)

    def close(self) -> None:
        self._tasks.cancel()
        for server in self._servers:
            server.close()
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.abort()
        self.connections.clear()


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """How we check a trunk's certificate: the system's CAs, or a private CA's file; the name is checked."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
