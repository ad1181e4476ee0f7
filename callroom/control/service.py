"""Running control-plane commands: one transaction each, then their effects.

``Control.run`` opens a transaction, checks the ``command_id`` (a repeat within 60 s is acknowledged and
not executed), runs the handler, commits, and only then hands the media instructions to the media plane
and wakes the webhook dispatcher and the timer loop. Handlers do no I/O of their own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from callroom.control import calls, conferences, queues
from callroom.control.context import Ctx
from callroom.model.media import MediaOp, MediaPlane
from callroom.model.records import Timer
from callroom.store import cooperative
from callroom.store.engine import Store
from callroom.store.outbox import PendingDelivery

log = logging.getLogger(__name__)

T = TypeVar("T")

COMMAND_ID_WINDOW_SECS = 60.0
# An incoming call the application neither answers nor rejects rings at most this long (PBXs and carriers
# give up after 60-180 s); the caller then gets 480 and the application call.hangup with cause timeout.
DEFAULT_RING_TIMEOUT_SECS = 120.0
# PostgreSQL: transactions under way at once (each holds a server connection until it commits).
MAX_TRANSACTIONS_IN_FLIGHT = 32


class Duplicate:
    """The result of a command whose ``command_id`` was already executed (``result``: what the first
    execution recorded in ``ctx.command_result``, such as the id of the call it dialled)."""

    def __init__(self, result: str | None) -> None:
        self.result = result


class Control:
    def __init__(
        self,
        store: Store,
        node_id: str,
        media: MediaPlane,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.media = media
        self.clock = clock
        self.on_events: Callable[[list[PendingDelivery]], None] = lambda _events: None
        self.on_timers: Callable[[], None] = lambda: None
        # Where a leg's call_quality_stats can be asked for before the API ends it (SIP legs' RTP counters
        # live in the media process); None: hangups carry no quality.
        self.quality_source: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None
        self.dialable: tuple[str, ...] = ("virtual:",)
        # An incoming call nobody answers or rejects is ended after this long with SIP 480 (0: never).
        self.ring_timeout_secs = DEFAULT_RING_TIMEOUT_SECS
        # Set on PostgreSQL: API transactions run cooperatively on the event loop (see ``arun``).
        self.cooperative = False
        self._in_flight = asyncio.Semaphore(MAX_TRANSACTIONS_IN_FLIGHT)
        self._facts: deque[Callable[[], object]] = deque()
        self._fact_task: asyncio.Task[None] | None = None

    async def call_quality(self, call_control_id: str) -> dict[str, Any] | None:
        if self.quality_source is None:
            return None
        return await self.quality_source(call_control_id)

    def run(
        self,
        account_id: str,
        handler: Callable[[Ctx], T],
        *,
        command: tuple[str, str | None] | None = None,
    ) -> T | Duplicate:
        """Run ``handler`` in one transaction. ``command`` is (scope, command_id) for deduplication."""
        return self._finish(*self._transact(account_id, handler, command))

    async def arun(
        self,
        account_id: str,
        handler: Callable[[Ctx], T],
        *,
        command: tuple[str, str | None] | None = None,
    ) -> T | Duplicate:
        """``run`` for the API. On PostgreSQL the transaction runs cooperatively (``store/cooperative.py``):
        while it waits for the server the loop serves other requests. Its effects are applied here, on the
        loop, right after it commits; a request cancelled meanwhile does not cancel them (the transaction
        and its effects complete, the reply is dropped)."""
        if not self.cooperative:
            return self.run(account_id, handler, command=command)
        return await asyncio.shield(asyncio.ensure_future(self._cooperatively(account_id, handler, command)))

    async def _cooperatively(
        self, account_id: str, handler: Callable[[Ctx], T], command: tuple[str, str | None] | None
    ) -> T | Duplicate:
        async with self._in_flight:
            outcome = await cooperative.run(self._transact, account_id, handler, command)
        return self._finish(*outcome)

    async def awrite(self, account_id: str, handler: Callable[[Ctx], T]) -> T:
        result = await self.arun(account_id, handler)
        assert not isinstance(result, Duplicate)
        return result

    async def aread(self, account_id: str, handler: Callable[[Ctx], T]) -> T:
        if not self.cooperative:
            return self.read(account_id, handler)
        async with self._in_flight:
            return await cooperative.run(self.read, account_id, handler)

    def _transact(
        self, account_id: str, handler: Callable[[Ctx], T], command: tuple[str, str | None] | None,
        *, plainly: bool = False,
    ) -> tuple[T | Duplicate, Ctx | None]:
        """``plainly``: without reads ahead (a second run after ``Ctx.again``)."""
        with self.store.transaction() as tx:
            command_id = command[1] if command is not None else None
            ctx = Ctx(tx=tx, account_id=account_id, now=self.clock(), node_id=self.node_id, dialable=self.dialable,
                      ring_timeout_secs=self.ring_timeout_secs,
                      read_ahead=not self.store.is_sqlite and not plainly, command_id=command_id or None)
            if command is not None and command_id:
                scope = command[0]
                fresh, earlier = tx.remember_command(account_id, scope, command_id, ctx.now, COMMAND_ID_WINDOW_SECS)
                if not fresh:
                    return Duplicate(earlier), None
            result = handler(ctx)
            if command is not None and command[1] and ctx.command_result is not None:
                tx.set_command_result(account_id, command[0], command[1], ctx.command_result)
        ctx.settle()
        if ctx.again and not plainly:
            return self._transact(account_id, handler, command, plainly=True)
        return result, ctx

    def _finish(self, result: T | Duplicate, ctx: Ctx | None) -> T | Duplicate:
        if ctx is None:
            return result
        self._after_commit(ctx)
        if ctx.deferred_error is not None:
            raise ctx.deferred_error
        return result

    def write(self, account_id: str, handler: Callable[[Ctx], T]) -> T:
        """``run`` without a command_id: always executes, so always returns the handler's result."""
        result = self.run(account_id, handler)
        assert not isinstance(result, Duplicate)
        return result

    def read(self, account_id: str, handler: Callable[[Ctx], T]) -> T:
        """A read-only handler (listings): same context, nothing to apply afterwards."""
        with self.store.transaction(read_only=True) as tx:
            return handler(Ctx(tx=tx, account_id=account_id, now=self.clock(), node_id=self.node_id))

    def _after_commit(self, ctx: Ctx) -> None:
        if ctx.media:
            ops: list[MediaOp] = list(ctx.media)
            try:
                self.media.apply(ops)
            except Exception:  # the state is committed; a media failure must not undo it
                log.exception("media plane failed to apply %d ops", len(ops))
        if ctx.emitted:
            self.on_events(ctx.emitted)
        if ctx.timers_added:
            self.on_timers()

    # -- facts from outside the API -----------------------------------------------------------------

    def report(self, work: Callable[[], object]) -> None:
        """Apply a fact from outside the API (the media process, SIP, virtual phones) in arrival order. On
        SQLite at once (errors reach the caller); on PostgreSQL queued and applied by one task,
        cooperatively, so that the loop serves requests while the fact's transactions wait for the server
        (errors are logged)."""
        if not self.cooperative:
            work()
            return
        self._facts.append(work)
        if self._fact_task is None or self._fact_task.done():
            self._fact_task = asyncio.get_running_loop().create_task(self._apply_facts(), name="control-facts")

    async def _apply_facts(self) -> None:
        while self._facts:
            work = self._facts.popleft()
            try:
                await cooperative.run(work)
            except Exception:
                log.exception("applying a far-end fact failed")

    async def settle_facts(self) -> None:
        """Until every fact reported so far has been applied (a stopping node)."""
        while self._fact_task is not None and not self._fact_task.done():
            await asyncio.shield(self._fact_task)

    # -- timers -------------------------------------------------------------------------------------

    async def arun_due_timers(self) -> float | None:
        """``run_due_timers`` for the loop: on PostgreSQL cooperatively."""
        return await cooperative.run_if(self.cooperative, self.run_due_timers)

    def run_due_timers(self, limit: int = 200) -> float | None:
        """Fire every due timer (each in its own transaction); return when the next one is due."""
        now = self.clock()
        with self.store.transaction() as tx:
            due = tx.due_timers(now, limit)
        for timer in due:

            def fire(ctx: Ctx, timer: Timer = timer) -> None:
                if not ctx.tx.take_timer(timer):
                    return
                kind, ref = timer.kind, timer.ref
                if kind in ("dial_timeout", "time_limit", "first_command", "ring_timeout"):
                    calls.on_timer(ctx, kind, ref)
                elif kind == "queue_timeout":
                    queues.on_timeout(ctx, ref)
                elif kind == "conference_expiry":
                    conferences.on_expiry(ctx, ref)
                else:
                    log.warning("unknown timer kind %r", kind)

            try:
                self.run(timer.account_id, fire)
            except Exception:
                log.exception("timer %s %s failed", timer.kind, timer.ref)
                with self.store.transaction() as tx:
                    tx.take_timer(timer)
        with self.store.transaction() as tx:
            tx.forget_commands_before(now - COMMAND_ID_WINDOW_SECS)
            return tx.next_timer_due()

    # -- restart ------------------------------------------------------------------------------------

    def recover(self) -> int:
        """End the legs a previous process of this node left alive: their media died with it."""
        with self.store.transaction() as tx:
            orphans = tx.live_calls_of_node(self.node_id)
        for call in orphans:
            self.run(call.account_id, functools.partial(_end_orphan, call_control_id=call.call_control_id))
        return len(orphans)


def _end_orphan(ctx: Ctx, call_control_id: str) -> None:
    call = ctx.tx.get_call(ctx.account_id, call_control_id, lock=True)
    if call is not None:
        calls.node_restarted(ctx, call)


def remote_fact(control: Control, call_control_id: str, fact: Callable[[Ctx], None]) -> None:
    """Report a far-end fact about a leg (answered, refused, hung up) as a transaction of its account."""
    control.report(functools.partial(_remote_fact, control, call_control_id, fact))


def _remote_fact(control: Control, call_control_id: str, fact: Callable[[Ctx], None]) -> None:
    with control.store.transaction() as tx:
        call = tx.get_call_any_account(call_control_id)
    if call is None:
        log.warning("far-end fact about unknown leg %s", call_control_id)
        return
    control.run(call.account_id, fact)


def job_fact(control: Control, job_id: str, fact: Callable[[Ctx], None]) -> None:
    """Report a fact about a media job (playback, recording, gather) as a transaction of its account."""
    control.report(functools.partial(_job_fact, control, job_id, fact))


def _job_fact(control: Control, job_id: str, fact: Callable[[Ctx], None]) -> None:
    from callroom.store import media_tx

    base = job_id.split(":prompt")[0] + (":prompt" if ":prompt" in job_id else "")
    with control.store.transaction() as tx:
        job = media_tx.get_job(tx, job_id) or media_tx.get_job(tx, base)
    if job is None:
        log.warning("fact about unknown media job %s", job_id)
        return
    control.run(job.account_id, fact)
