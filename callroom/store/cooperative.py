"""Synchronous store work run on the event loop, its database waits turned into awaits.

Control handlers are plain functions that read and write through a ``Tx`` (no ``await`` anywhere in the
control plane). On SQLite that is fine inline: the database is in-process. On PostgreSQL a transaction
waits for the server a few times; ``run`` runs the whole unit of work in a greenlet on the loop's
thread, and where ``pg_wire`` would block for the server's reply it calls ``wait_readable`` instead,
which hands an awaitable to ``run``: the loop serves other requests until the socket is readable, then
the greenlet resumes where it was. No worker threads, so no hand-offs between threads and no contention
for the GIL; a transaction waiting for a row lock costs a suspended greenlet, not a thread.

The technique is SQLAlchemy's own for its asyncio extension (``greenlet_spawn`` / ``await_only``),
kept here small and specific: only the socket waits of ``pg_wire`` switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from greenlet import greenlet

T = TypeVar("T")


class _Work(greenlet):
    """A unit of store work running cooperatively (see ``run``)."""


async def run(work: Callable[..., T], *args: Any) -> T:
    """Run ``work(*args)`` on this thread; each ``wait_for`` inside it awaits here."""
    child = _Work(work)
    request: Any = child.switch(*args)
    while not child.dead:
        try:
            value = await request
        except BaseException as exc:
            request = child.throw(exc)
        else:
            request = child.switch(value)
    result: T = request
    return result


async def run_if(cooperatively: bool, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` inline (SQLite: nothing to wait for) or, with ``cooperatively``, through ``run``."""
    if not cooperatively:
        return work(*args)
    return await run(work, *args)


def cooperative() -> bool:
    """Whether the caller runs inside ``run`` (and may ``wait_for``)."""
    return isinstance(greenlet.getcurrent(), _Work)


def wait_for(awaitable: Awaitable[T]) -> T:
    """Inside ``run``: wait for ``awaitable`` while the event loop goes on with other work."""
    current = greenlet.getcurrent()
    if not isinstance(current, _Work) or current.parent is None:
        raise RuntimeError("wait_for outside of cooperative.run")
    result: T = current.parent.switch(awaitable)
    return result


async def writable(fd: int) -> None:
    """Until ``fd`` can be written without blocking."""
    await _ready(fd, writing=True)


async def _ready(fd: int, *, writing: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    (loop.add_writer if writing else loop.add_reader)(fd, _wake, ready)
    try:
        await ready
    finally:
        (loop.remove_writer if writing else loop.remove_reader)(fd)


class ReadableWatch:
    """Waits inside ``run`` until one socket is readable, the socket registered with the loop once.

    ``readable`` adds and removes the loop's reader around every wait (two ``epoll_ctl`` and two
    coroutines each time); a PostgreSQL session waits a few times per transaction, thousands of times a
    second. This keeps the registration from one wait to the next. A readiness with nobody waiting (the
    server wrote to an idle session) ends the registration, so the loop never spins on it; the next wait
    registers again. ``close`` before the socket is closed.

    As with a condition variable, a wake-up may be spurious (a readiness the loop saw before the previous
    waiter consumed the data): the caller reads without blocking and waits again if there was nothing,
    as ``pg_wire`` does (``consume_input`` until the result is complete)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None

    def wait(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()
            loop.add_reader(self.fd, self._fire)
            self._loop = loop
        waiter = self._waiter = loop.create_future()
        try:
            wait_for(waiter)
        finally:
            self._waiter = None

    def _fire(self) -> None:
        waiter = self._waiter
        if waiter is None:
            self.close()
        elif not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
