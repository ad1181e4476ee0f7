"""The trunks on the media process's SIP transport: their book (where calls go, whose addresses are whose),
the connections to TCP and TLS gateways, the registrations kept with their registrars, and the order in
which changes of trunks are taken (a dial through a trunk waits for the last change to be in)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from callroom.aio.sip_stream import client_context
from callroom.aio.sip_transport import SipTransport
from callroom.media_worker.trunk_book import TrunkBook
from callroom.model.messages import TrunkStatus
from callroom.model.trunks import Trunk
from callroom.sip.fields import SipUri

log = logging.getLogger(__name__)

REGISTER_RETRY_SECS: float = 30.0  # a trunk we could not connect to for its REGISTER is tried again after this


class TrunkLines:
    def __init__(self, tls_ca: str | None = None) -> None:
        self.tls_ca = tls_ca  # a private CA for TLS gateways' certificates (None: the system's CAs)
        self.book = TrunkBook()
        self.transport: SipTransport | None = None
        self.registering: dict[str, Trunk] = {}  # trunks whose registration we keep, as they were then
        self.on_status: Callable[[TrunkStatus], None] = lambda _status: None
        self._retry: asyncio.TimerHandle | None = None  # registrations that could not connect, tried again
        self._changing: asyncio.Task[None] | None = None  # the last change of trunks being taken
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, transport: SipTransport) -> None:
        """The transport is open: registrations start."""
        self.transport = transport
        self._sync_registrations()

    def change(self, trunks: tuple[Trunk, ...]) -> None:
        """The trunks changed (added, edited, removed): a registration starts afresh when its trunk changed,
        and stops when it is gone."""
        self._changing = self._spawn(self._change(self._changing, trunks))

    async def ready(self) -> None:
        """Once the last change is in (a trunk just added: its gateway's address looked up)."""
        if self._changing is not None:
            await asyncio.wait([self._changing])

    async def connect(self, trunk: Trunk, addr: tuple[str, int]) -> None:
        """A TCP or TLS trunk: a connection to its gateway (its certificate checked, for its host name);
        ``OSError`` when it cannot be made."""
        if trunk.transport == "udp" or self.transport is None:
            return
        context = client_context(self.tls_ca) if trunk.transport == "tls" else None
        await self.transport.streams.connect(addr, trunk.transport.upper(), context, server_hostname=trunk.host)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for task in self._tasks:
            task.cancel()

    async def _change(self, previous: asyncio.Task[None] | None, trunks: tuple[Trunk, ...]) -> None:
        if previous is not None:  # in the order they came
            await asyncio.wait([previous])
        await self.book.set(trunks)
        self._sync_registrations()

    def _sync_registrations(self) -> None:
        transport = self.transport
        if transport is None:
            return
        wanted = {t.id: t for t in self.book.trunks.values() if t.register and t.username and t.password}
        for trunk_id in [k for k, t in self.registering.items() if wanted.get(k) != t]:
            del self.registering[trunk_id]
            transport.unregister(trunk_id)
        for trunk_id, trunk in wanted.items():
            if trunk_id in self.registering:
                continue
            hosts = self.book.addresses.get(trunk_id, ())
            if not hosts:
                self.on_status(TrunkStatus(trunk_id, "failed", None, None, f"{trunk.host} has no address"))
                continue
            self.registering[trunk_id] = trunk
            self._spawn(self._register(trunk, (hosts[0], trunk.port)))

    def _retry_registrations(self) -> None:
        self._retry = None
        self._sync_registrations()

    async def _register(self, trunk: Trunk, addr: tuple[str, int]) -> None:
        assert trunk.username is not None and trunk.password is not None
        try:
            await self.connect(trunk, addr)
        except OSError as exc:
            log.warning("trunk %s: no connection to %s: %s", trunk.name, addr, exc)
            self.on_status(TrunkStatus(trunk.id, "failed", None, None, f"no connection: {exc}"))
            if self.registering.get(trunk.id) is trunk:  # tried again later
                del self.registering[trunk.id]
                if self._retry is None:
                    self._retry = asyncio.get_running_loop().call_later(REGISTER_RETRY_SECS,
                                                                        self._retry_registrations)
            return
        if self.transport is None or self.registering.get(trunk.id) is not trunk:
            return  # changed or gone meanwhile
        params: dict[str, str | None] = {"transport": trunk.transport} if trunk.transport != "udp" else {}
        self.transport.register(trunk.id, SipUri(trunk.host, port=trunk.port, params=params),
                                SipUri(trunk.host, user=trunk.username), addr=addr,
                                credentials=(trunk.username, trunk.password), expires=trunk.register_expires)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("trunk task failed", exc_info=task.exception())
