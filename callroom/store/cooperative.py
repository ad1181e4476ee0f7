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


async def readable(fd: int) -> None:
    """Until ``fd`` can be read without blocking."""
    await _ready(fd, writing=False)


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


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
