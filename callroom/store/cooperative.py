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
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from greenlet import GreenletExit, greenlet

T = TypeVar("T")


class _Work(greenlet):
    """A greenlet that runs units of store work one after another (see ``run``).

    Kept between units: a new greenlet per unit cost ~6 us more than a switch into an idle one (its
    frame stack is a fresh ``mmap`` each time, unmapped when it ends), at thousands of units a second."""

    def __init__(self) -> None:
        super().__init__(self._serve)

    def _serve(self, work: Callable[..., Any], args: tuple[Any, ...]) -> None:
        while True:
            outcome = _finish(work, args)
            del work, args  # nothing of a finished unit is kept while idle (``run`` empties ``outcome``)
            work, args = self.parent.switch(outcome)  # type: ignore[union-attr]


def _finish(work: Callable[..., Any], args: tuple[Any, ...]) -> _Finished:
    try:
        return _Finished(work(*args), None)
    except GreenletExit:
        raise  # an idle worker being collected: end, never switch back
    except BaseException as exc:
        return _Finished(None, exc)


class _Finished:
    """What ``_Work`` hands back at the end of a unit (as against an awaitable to wait for)."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: BaseException | None) -> None:
        self.value = value
        self.error = error


class _Idle(threading.local):
    """Idle workers of this thread (a greenlet only ever runs on the thread that made it)."""

    def __init__(self) -> None:
        self.workers: list[_Work] = []


_idle = _Idle()
IDLE_KEPT = 64  # idle workers kept per thread (units running at once seldom exceed the store's limit, 32)


async def run(work: Callable[..., T], *args: Any) -> T:
    """Run ``work(*args)`` on this thread; each ``wait_for`` inside it awaits here."""
    idle = _idle.workers
    worker = idle.pop() if idle else _Work()
    worker.parent = greenlet.getcurrent()  # whoever runs this now is where its waits go
    request: Any = worker.switch(work, args)
    while not isinstance(request, _Finished):
        if worker.dead:
            raise RuntimeError("a store worker ended in the middle of a unit of work")
        try:
            value = await request
        except BaseException as exc:
            request = worker.throw(exc)
        else:
            # Resumed by the readiness itself (``ReadableWatch``): it has already run up to its next wait.
            request = value.request if isinstance(value, _Resumed) else worker.switch(value)
    if len(idle) < IDLE_KEPT:
        idle.append(worker)
    result: T = request.value
    error, request.value, request.error = request.error, None, None
    if error is not None:
        raise error
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


class _Resumed:
    """What a ``ReadableWatch`` waiter gets when the readiness resumed its unit of work at once: where the
    unit stands now (waiting for something else, or finished)."""

    __slots__ = ("request",)

    def __init__(self, request: Any) -> None:
        self.request = request


class ReadableWatch:
    """Waits inside ``run`` until one socket is readable, the socket registered with the loop once.

    ``readable`` adds and removes the loop's reader around every wait (two ``epoll_ctl`` and two
    coroutines each time); a PostgreSQL session waits a few times per transaction, thousands of times a
    second. This keeps the registration from one wait to the next. A readiness with nobody waiting (the
    server wrote to an idle session) ends the registration, so the loop never spins on it; the next wait
    registers again. ``close`` before the socket is closed.

    As with a condition variable, a wake-up may be spurious (a readiness the loop saw before the previous
    waiter consumed the data): the caller reads without blocking and waits again if there was nothing,
    as ``pg_wire`` does (``consume_input`` until the result is complete).

    The readiness resumes the waiting unit of work at once, inside the loop's callback, rather than through
    its task at the loop's next turn: a transaction's results are taken, and what it sends next is sent, as
    soon as they arrive, not after the requests that arrived meanwhile have had their turn (a transaction
    that holds row locks holds them for less time)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._worker: _Work | None = None

    def wait(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()
            loop.add_reader(self.fd, self._fire)
            self._loop = loop
        current = greenlet.getcurrent()
        waiter = self._waiter = loop.create_future()
        self._worker = current if isinstance(current, _Work) else None
        try:
            wait_for(waiter)
        finally:
            self._waiter = self._worker = None

    def _fire(self) -> None:
        waiter, worker = self._waiter, self._worker
        if waiter is None:
            self.close()
        elif not waiter.done():
            if worker is not None and worker.parent is greenlet.getcurrent():
                # Its waits switch to this greenlet: run it here up to its next wait, and hand that over.
                waiter.set_result(_Resumed(worker.switch(None)))
            else:
                waiter.set_result(None)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
