"""Running control-plane commands: one transaction each, then their effects.

``Control.run`` opens a transaction, checks the ``command_id`` (a repeat within 60 s is acknowledged and not
executed), runs the command against the store (its batches of reads, then its writes: ``store.commands``),
commits, and only then hands the media instructions to the media plane and wakes the webhook dispatcher and
the timer loop. Queries (listings, a call's state) run through ``read`` with a ``ReadCtx``.

In a cluster (``placement``) instructions that go to another node, or join audio across nodes, are
delivered before the COMMIT, while the command holds its row locks (``cluster/media.py`` says why); its
writes are sent first, so that a write another node's command beat (a conference name) refuses it before
any audio moves. An API command whose node does not answer is rolled back (``NodeUnavailable``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from callroom import logs
from callroom.control import timers
from callroom.control.calls import node_restarted
from callroom.control.world import Steps, World
from callroom.errors import Conflict, Draining
from callroom.model.effects import Effects
from callroom.model.media import MediaOp, MediaPlane
from callroom.model.numbers import NO_NUMBERS
from callroom.model.states import Refusal
from callroom.model.trunks import NO_TRUNKS
from callroom.store import commands, cooperative, outbox
from callroom.store.engine import Store
from callroom.store.outbox import PendingDelivery
from callroom.store.tx import Tx

log = logging.getLogger(__name__)

T = TypeVar("T")
Command = Callable[[World], Steps[T]]

COMMAND_ID_WINDOW_SECS = 60.0
FORGET_EVERY_SECS = 10.0  # how often the timer loop deletes command ids older than the window
# An incoming call the application neither answers nor rejects rings at most this long (PBXs and carriers
# give up after 60-180 s); the caller then gets 480 and the application call.hangup with cause timeout.
DEFAULT_RING_TIMEOUT_SECS = 120.0
# PostgreSQL: transactions under way at once (each holds a server connection until it commits).
MAX_TRANSACTIONS_IN_FLIGHT = 32


class Duplicate:
    """The result of a command whose ``command_id`` was already executed (``result``: what the first
    execution recorded, such as the id of the call it dialled)."""

    def __init__(self, result: str | None) -> None:
        self.result = result


class Placement(Protocol):
    """A cluster's media plane (``cluster/media.py``): instructions carried out where their calls live."""

    def needs_bus(self, ops: Sequence[MediaOp], placements: Mapping[str, str]) -> bool: ...
    def apply_committed(self, ops: list[MediaOp], placements: Mapping[str, str]) -> None: ...
    async def deliver(self, ops: Sequence[MediaOp], placements: Mapping[str, str], *, strict: bool) -> None: ...


@dataclass(slots=True)
class ReadCtx:
    """What a query sees: its transaction, account and time."""

    tx: Tx
    account_id: str
    now: float
    node_id: str


@dataclass(slots=True)
class Committed:
    """A command that committed: what it decided and the outbox rows of its webhooks."""

    effects: Effects
    deliveries: list[PendingDelivery]


class Control:
    def __init__(self, store: Store, node_id: str, media: MediaPlane, *,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self.node_id = node_id
        self.media = media
        self.placement: Placement | None = None  # set in a cluster: media goes where its calls live
        self.clock = clock
        self.on_events: Callable[[list[PendingDelivery]], None] = lambda _events: None
        # Told when a command set timers, with the soonest one's due time (the timer loop wakes if it is
        # sooner than it planned to look again).
        self.on_timers: Callable[[float], None] = lambda _due_at: None
        self._forget_at = 0.0
        # Where a leg's call_quality_stats can be asked for before the API ends it (SIP legs' RTP counters
        # live in the media process); None: hangups carry no quality.
        self.quality_source: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None
        self.dialable: tuple[str, ...] = ("virtual:",)
        self.numbers = NO_NUMBERS  # the node's number plan: where numbers dialled through the API ring
        self.trunks = NO_TRUNKS  # the SIP trunks and their numbers (replaced whole when they change)
        # Asked before a dial: raises ``Overloaded`` when the node takes no new call now (the node's
        # admission, ``callroom/admission.py``); by default every dial is admitted.
        self.admit_dial: Callable[[], None] = lambda: None
        # An incoming call nobody answers or rejects is ended after this long with SIP 480 (0: never).
        self.ring_timeout_secs = DEFAULT_RING_TIMEOUT_SECS
        # Set on PostgreSQL: API transactions run cooperatively on the event loop (see ``arun``).
        self.cooperative = False
        self._in_flight = asyncio.Semaphore(MAX_TRANSACTIONS_IN_FLIGHT)
        self._facts: deque[Callable[[], object]] = deque()
        self._fact_task: asyncio.Task[None] | None = None
        self.draining = False  # the node is stopping: it starts no new call (``admit_call``)

    def admit_call(self) -> None:
        """A new call (dialled through the API, or arriving) may start on this node: ``Draining`` once the node
        drains (the calls it carries finish, no new one starts), ``Overloaded`` past its admission limits."""
        if self.draining:
            raise Draining(self.node_id)
        self.admit_dial()

    async def call_quality(self, call_control_id: str) -> dict[str, Any] | None:
        if self.quality_source is None:
            return None
        return await self.quality_source(call_control_id)

    # -- commands -----------------------------------------------------------------------------------

    def run(self, account_id: str, command: Command[T], *,
            dedupe: tuple[str, str | None] | None = None) -> T | Duplicate:  # fmt: skip
        """Run ``command`` in one transaction, then apply its effects. ``dedupe`` is (scope, command_id).
        (Facts, timers, the reaping of dead nodes: a node that misses their media is logged, not refused.)"""
        return self._finish(*self._transact(account_id, command, dedupe, False))

    async def arun(self, account_id: str, command: Command[T], *,
                   dedupe: tuple[str, str | None] | None = None) -> T | Duplicate:  # fmt: skip
        """``run`` for the API. On PostgreSQL the transaction runs cooperatively (``store/cooperative.py``):
        while it waits for the server the loop serves other requests. Its effects are applied here, on the
        loop, right after it commits; a request cancelled meanwhile does not cancel them (the transaction
        and its effects complete, the reply is dropped)."""
        if not self.cooperative:
            return self._finish(*self._transact(account_id, command, dedupe, True))
        return await asyncio.shield(asyncio.ensure_future(self._cooperatively(account_id, command, dedupe)))

    async def _cooperatively(self, account_id: str, command: Command[T],
                             dedupe: tuple[str, str | None] | None) -> T | Duplicate:  # fmt: skip
        async with self._in_flight:
            outcome = await cooperative.run(self._transact, account_id, command, dedupe, True)
        return self._finish(*outcome)

    async def awrite(self, account_id: str, command: Command[T]) -> T:
        result = await self.arun(account_id, command)
        assert not isinstance(result, Duplicate)
        return result

    def write(self, account_id: str, command: Command[T]) -> T:
        """``run`` without a command_id: always executes, so always returns the command's result."""
        result = self.run(account_id, command)
        assert not isinstance(result, Duplicate)
        return result

    def _transact(self, account_id: str, command: Command[T], dedupe: tuple[str, str | None] | None,
                  strict: bool) -> tuple[T | Duplicate, Committed | None]:  # fmt: skip
        try:
            return self._transact_once(account_id, command, dedupe, strict)
        except Conflict as exc:
            raise _conflict(exc) from exc

    def _transact_once(self, account_id: str, command: Command[T], dedupe: tuple[str, str | None] | None,
                       strict: bool) -> tuple[T | Duplicate, Committed | None]:  # fmt: skip
        with self.store.transaction() as tx:
            now = self.clock()
            scope, command_id = dedupe if dedupe is not None and dedupe[1] else (None, None)
            if scope is not None and command_id:
                fresh, earlier = tx.remember_command(account_id, scope, command_id, now, COMMAND_ID_WINDOW_SECS)
                if not fresh:
                    return Duplicate(earlier), None
            world = World(account_id, now, self.node_id, dialable=self.dialable, numbers=self.numbers,
                          trunks=self.trunks, ring_timeout_secs=self.ring_timeout_secs, ahead=not self.store.is_sqlite,
                          placing=self.placement is not None)  # fmt: skip
            result, effects, appended = commands.run(tx, world, command(world))
            if self.placement is not None and effects.media:
                self._deliver_before_commit(tx, effects, strict)
            if scope is not None and command_id and effects.command_result is not None:
                tx.set_command_result(account_id, scope, command_id, effects.command_result)
        return result, Committed(effects, _deliveries(account_id, effects, appended))

    def _deliver_before_commit(self, tx: Tx, effects: Effects, strict: bool) -> None:
        """A cluster's instructions that need the bus, carried out now (see the module's docstring)."""
        assert self.placement is not None
        if not self.placement.needs_bus(effects.media, effects.placements):
            return  # all here: applied after the COMMIT, as on a single node
        ops, effects.media = list(effects.media), []
        if not cooperative.cooperative():  # (a start-up pass, outside the loop's tasks: after the COMMIT)
            asyncio.get_running_loop().create_task(self.placement.deliver(ops, effects.placements, strict=False))
            return
        if not self.store.is_sqlite:
            tx.conn.sync()
        cooperative.wait_for(self.placement.deliver(ops, effects.placements, strict=strict))

    def _finish(self, result: T | Duplicate, done: Committed | None) -> T | Duplicate:
        if done is None:
            return result
        effects = done.effects
        if effects.media:
            ops: list[MediaOp] = list(effects.media)
            try:
                if self.placement is not None:
                    self.placement.apply_committed(ops, effects.placements)
                else:
                    self.media.apply(ops)
            except Exception:  # the state is committed; a media failure must not undo it
                log.exception("media plane failed to apply %d ops", len(ops))
        if done.deliveries:
            self.on_events(done.deliveries)
            logs.committed(done.deliveries)
        soonest = effects.earliest_new_timer
        if soonest is not None:
            self.on_timers(soonest)
        if effects.error is not None:
            raise effects.error
        return result

    # -- queries and plain writes -------------------------------------------------------------------

    def read(self, account_id: str, query: Callable[[ReadCtx], T]) -> T:
        """A query (listings, a record as it stands): no locks, nothing to apply afterwards."""
        with self.store.transaction(read_only=True) as tx:
            return query(ReadCtx(tx, account_id, self.clock(), self.node_id))

    async def aread(self, account_id: str, query: Callable[[ReadCtx], T]) -> T:
        if not self.cooperative:
            return self.read(account_id, query)
        async with self._in_flight:
            return await cooperative.run(self.read, account_id, query)

    def store_rows(self, account_id: str, work: Callable[[ReadCtx], T]) -> T:
        """Rows that are not a call's, a conference's or a queue's (applications, uploaded media, API keys)
        written in one transaction: no state machine, no webhook, nothing for the media plane."""
        with self.store.transaction() as tx:
            return work(ReadCtx(tx, account_id, self.clock(), self.node_id))

    async def astore_rows(self, account_id: str, work: Callable[[ReadCtx], T]) -> T:
        if not self.cooperative:
            return self.store_rows(account_id, work)
        async with self._in_flight:
            return await cooperative.run(self.store_rows, account_id, work)

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
        """Fire every due timer (each in its own transaction); return when the next one is due (None: none
        is set). One read finds both the due timers and the next one, so a pass with nothing due is one
        short transaction; command ids past their window are forgotten every ``FORGET_EVERY_SECS``."""
        now = self.clock()
        with self.store.transaction() as tx:
            soonest = tx.soonest_timers(limit + 1)
            if now >= self._forget_at:
                self._forget_at = now + FORGET_EVERY_SECS
                tx.forget_commands_before(now - COMMAND_ID_WINDOW_SECS)
        due = [timer for timer in soonest if timer.due_at <= now][:limit]
        for timer in due:
            try:
                self.run(timer.account_id, functools.partial(timers.fire, timer=timer))
            except Exception:
                log.exception("timer %s %s failed", timer.kind, timer.ref)
                with self.store.transaction() as tx:
                    tx.take_timer(timer)
        if len(due) == limit:
            return now  # more may be due: another pass at once
        # (Timers the fired ones set were told to the loop by ``on_timers``.)
        return next((timer.due_at for timer in soonest if timer.due_at > now), None)

    # -- restart ------------------------------------------------------------------------------------

    def recover(self) -> int:
        """End the legs a previous process of this node left alive: their media died with it."""
        with self.store.transaction() as tx:
            orphans = tx.live_calls_of_node(self.node_id)
        for call in orphans:
            self.run(call.account_id, functools.partial(node_restarted, call_control_id=call.call_control_id))
        return len(orphans)


def _conflict(exc: Conflict) -> Exception:
    """A write another transaction beat (a unique constraint; on PostgreSQL seen at the COMMIT at the latest)
    as the refusal the command would have given had it read the winner's row."""
    refusal = CONFLICTS.get(exc.constraint or "")
    return refusal.error() if refusal is not None else exc


CONFLICTS: dict[str, Refusal] = {
    "uq_conferences_active_name": Refusal("90033", "Conference name already in use",
                                          "An active conference of that name exists.", "/name"),
}


def _deliveries(account_id: str, effects: Effects, appended: list[outbox.Appended]) -> list[PendingDelivery]:
    """The committed webhooks as the dispatcher takes them: their outbox ids, sequence numbers and addresses
    (on PostgreSQL known only now: the statements that chose them ran with the COMMIT)."""
    out = []
    for hook, row in zip(effects.webhooks, appended, strict=True):
        url, failover, timeout = row.address
        out.append(PendingDelivery(
            id=row.id, event_id=hook.event_id, account_id=account_id, event_type=hook.event_type,
            occurred_at=hook.occurred_at,            payload={**hook.payload, row.sequence_field: row.sequence},
            occurred_at_in_payload=hook.occurred_at_in_payload, url=url, failover_url=failover, method=hook.method,
            timeout_secs=timeout, order_key=hook.order_key, attempts=0, next_attempt_at=hook.occurred_at,
            created_at=hook.occurred_at,
        ))  # fmt: skip
    return out


def remote_fact(control: Control, call_control_id: str, fact: Command[None]) -> None:
    """Report a far-end fact about a leg (answered, refused, hung up) as a command of its account."""
    control.report(functools.partial(_remote_fact, control, call_control_id, fact))


def _remote_fact(control: Control, call_control_id: str, fact: Command[None]) -> None:
    with control.store.transaction(read_only=True) as tx:
        call = tx.get_call_any_account(call_control_id)
    if call is None:
        log.warning("far-end fact about unknown leg %s", call_control_id)
        return
    control.run(call.account_id, fact)


def job_fact(control: Control, job_id: str, fact: Command[None]) -> None:
    """Report a fact about a media job (playback, recording, gather) as a command of its account."""
    control.report(functools.partial(_job_fact, control, job_id, fact))


def _job_fact(control: Control, job_id: str, fact: Command[None]) -> None:
    with control.store.transaction(read_only=True) as tx:
        account_id = tx.account_of_job(job_id.split(":prompt")[0])
    if account_id is None:
        log.warning("fact about unknown media job %s", job_id)
        return
    control.run(account_id, fact)


