"""PostgreSQL transactions run cooperatively on one event loop: a transaction waiting for the server (or
for a row lock) lets the loop go on; errors and cancellations end it cleanly."""

from __future__ import annotations

import asyncio
import socket

import pytest
from sqlalchemy import select, text

from callroom.store import cooperative
from callroom.store import schema as t
from callroom.store.engine import Store
from tests.store import factories as f

pytestmark = pytest.mark.postgres


def _locked_name(store: Store, account_id: str, hold: asyncio.Event | None = None) -> str:
    """Lock the account's row, wait (cooperatively) until ``hold`` is set, return the name it read."""
    with store.transaction() as tx:
        # Were the wait to block the loop, the lock could never be released: fail after 3 s, do not hang.
        tx.conn.execute(text("SET LOCAL lock_timeout = '3s'"))
        name = tx.conn.execute(select(t.accounts.c.name).where(t.accounts.c.id == account_id)
                               .with_for_update()).scalar_one()
        if hold is not None:
            cooperative.wait_for(hold.wait())
        tx.conn.execute(t.accounts.update().where(t.accounts.c.id == account_id).values(name=name + "+"))
    return str(name)


async def test_a_transaction_waiting_for_a_lock_leaves_the_loop_free(postgres_store: Store) -> None:
    acct = f.uid()
    with postgres_store.transaction() as tx:
        tx.conn.execute(t.accounts.insert().values(id=acct, name="a", created_at=0.0))
    release = asyncio.Event()
    first = asyncio.create_task(cooperative.run(_locked_name, postgres_store, acct, release))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(cooperative.run(_locked_name, postgres_store, acct))  # waits on the row lock
    ticks = 0
    for _ in range(10):  # the loop keeps running while both transactions are open
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 10 and not first.done() and not second.done()
    release.set()
    assert await first == "a"
    assert await second == "a+"  # it read the row after the first committed


async def test_an_error_inside_propagates_and_rolls_back(postgres_store: Store) -> None:
    def fail() -> None:
        with postgres_store.transaction() as tx:
            tx.conn.execute(t.accounts.insert().values(id="x", name="x", created_at=0.0))
            tx.conn.execute(text("SELECT pg_sleep(0.01)")).scalar()  # a real wait on the server
            raise ValueError("the handler failed")

    with pytest.raises(ValueError, match="handler failed"):
        await cooperative.run(fail)

    def count() -> int:
        with postgres_store.transaction(read_only=True) as tx:
            return int(tx.conn.execute(text("SELECT count(*) FROM accounts WHERE id = 'x'")).scalar_one())

    assert await cooperative.run(count) == 0


async def test_a_cancelled_wait_discards_the_session_and_the_store_goes_on(postgres_store: Store) -> None:
    def slow() -> None:
        with postgres_store.transaction() as tx:
            tx.conn.execute(t.accounts.insert().values(id="y", name="y", created_at=0.0))
            tx.conn.execute(text("SELECT pg_sleep(1)")).scalar()

    task = asyncio.create_task(cooperative.run(slow))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    def names() -> list[str]:
        with postgres_store.transaction() as tx:
            return [str(n) for n in tx.conn.execute(select(t.accounts.c.name)).scalars()]

    assert "y" not in await cooperative.run(names)  # rolled back (its connection was closed)


def test_wait_for_outside_run_is_refused() -> None:
    async def nothing() -> None:
        return None

    coro = nothing()
    with pytest.raises(RuntimeError):
        cooperative.wait_for(coro)
    coro.close()


async def test_units_of_work_reuse_idle_workers_and_an_error_leaves_nothing_behind() -> None:
    from greenlet import greenlet

    def where(wait: bool) -> greenlet:
        if wait:
            cooperative.wait_for(asyncio.sleep(0))
        return greenlet.getcurrent()

    class Refused(Exception):
        pass

    def refuse() -> None:
        cooperative.wait_for(asyncio.sleep(0))
        raise Refused("no")

    first = await cooperative.run(where, True)
    assert first is not greenlet.getcurrent()
    with pytest.raises(Refused):
        await cooperative.run(refuse)
    assert await cooperative.run(where, False) is first  # the same worker, after a unit that raised
    # Two at once: each its own worker; both kept for later.
    both = await asyncio.gather(cooperative.run(where, True), cooperative.run(where, True))
    assert both[0] is not both[1] and first in both
    assert cooperative.cooperative() is False  # back on the loop's own greenlet


async def test_a_worker_waiting_is_cancelled_with_its_request_and_the_next_unit_runs() -> None:
    started = asyncio.Event()

    def wait_long() -> str:
        started.set()
        try:
            cooperative.wait_for(asyncio.sleep(30))
        except asyncio.CancelledError:
            return "unreachable"  # a unit that swallows the cancellation still finishes its own way
        return "slept"

    task = asyncio.create_task(cooperative.run(wait_long))
    await started.wait()
    task.cancel()
    assert await task == "unreachable"
    assert await cooperative.run(lambda: 7) == 7


def test_each_thread_has_its_own_workers() -> None:
    # A greenlet runs only on the thread that made it: a worker left idle by this thread must not be
    # handed to a unit of work on another thread.
    import threading

    assert asyncio.run(cooperative.run(threading.get_ident)) == threading.get_ident()  # one idle worker here
    got: list[int | BaseException] = []

    def in_a_thread() -> None:
        try:
            got.append(asyncio.run(cooperative.run(threading.get_ident)))
        except BaseException as exc:
            got.append(exc)

    other = threading.Thread(target=in_a_thread)
    other.start()
    other.join()
    assert got == [other.ident]


class _OpsLog:
    """The media plane as a list of the instructions it received."""

    def __init__(self) -> None:
        self.ops: list[object] = []

    def apply(self, ops: list[object]) -> None:
        self.ops.extend(ops)


async def test_a_command_whose_request_is_cancelled_still_commits_and_takes_effect(postgres_store: Store) -> None:
    import threading

    from callroom.control import calls
    from callroom.control.service import Control
    from callroom.model.records import Account, Application

    media = _OpsLog()
    control = Control(postgres_store, "node-test", media)  # type: ignore[arg-type]
    control.cooperative = True
    with postgres_store.transaction() as tx:
        tx.insert_account(Account("acct", "acct", 0.0))
        tx.insert_application(Application("app", "acct", "app", "http://127.0.0.1:9/hooks", 0.0, 0.0))
    call = control.write("acct", lambda w: calls.incoming(w, connection_id="app", from_="a", to="b",
                                                          endpoint="virtual:a"))
    emitted: list[object] = []
    control.on_events = emitted.extend
    locked, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:  # another transaction keeps the call's row locked a moment
        with postgres_store.transaction() as tx:
            tx.get_call("acct", call.call_control_id, lock=True)
            locked.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert locked.wait(5)
    request = asyncio.create_task(control.arun("acct", lambda w: calls.answer(
        w, call.call_control_id, client_state=None, webhook_url=None, webhook_url_method=None)))
    await asyncio.sleep(0.05)
    request.cancel()  # while the command waits for the row
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await request
    for _ in range(100):  # the command goes on without its request
        if emitted:
            break
        await asyncio.sleep(0.02)
    holder.join(5)
    assert [getattr(e, "event_type", None) for e in emitted] == ["call.answered"]
    assert media.ops  # the media plane was told to answer the leg
    with postgres_store.transaction() as tx:
        answered = tx.get_call("acct", call.call_control_id)
        assert answered is not None and answered.state.value == "parked"


async def test_facts_reported_together_are_applied_one_at_a_time_in_order(postgres_store: Store) -> None:
    from callroom.control.service import Control

    control = Control(postgres_store, "node-test", _OpsLog())  # type: ignore[arg-type]
    control.cooperative = True
    applied: list[int] = []

    def fact(i: int) -> None:
        with postgres_store.transaction() as tx:
            tx.conn.execute(text("SELECT pg_sleep(0.02)")).scalar()  # each waits on the server
        applied.append(i)

    for i in range(5):
        control.report(lambda i=i: fact(i))  # type: ignore[misc]
    assert applied == []  # queued: the reporter (the media process's reader) is never held up
    ticks = 0
    while len(applied) < 5 and ticks < 500:
        await asyncio.sleep(0.005)
        ticks += 1
    await control.settle_facts()
    assert applied == [0, 1, 2, 3, 4]
    assert ticks > 5  # the loop ran meanwhile


async def test_a_flag_change_waiting_on_a_conference_being_ended_lands_before_the_end(postgres_store: Store) -> None:
    # Another transaction (say, another node) holds the conference's lock while the mute's writes ask for
    # it; it ends the conference and commits. The mute read the conference before, unlocked, and what it
    # writes does not depend on what it read: it lands after the end and answers as if it came just
    # before it; a participant who has left stays as they left (the flags are written only on those
    # present), and the media plane is told only the flags, which it drops for a conference it no longer
    # mixes: no mix is sent that would bring the conference back.
    import uuid

    import psycopg

    from callroom.control import conference_flags
    from callroom.control.service import Control
    from callroom.control.world import Steps, World
    from callroom.model.media import ConferenceMix, MemberFlags
    from callroom.model.states import ConferenceStatus, ParticipantStatus

    media = _OpsLog()
    control = Control(postgres_store, "node-test", media)  # type: ignore[arg-type]
    control.cooperative = True
    acct = f.uid()
    conf = f.conference(acct, status=ConferenceStatus.IN_PROGRESS, hold_media_name=None, id=str(uuid.uuid4()))
    people = [f.participant(acct, conf.id, status=ParticipantStatus.JOINED, muted=False, hold_media_name=None)
              for _ in range(2)]
    with postgres_store.transaction() as tx:
        tx.insert_conference(conf)
        for p in people:
            tx.insert_participant(p)
    url = postgres_store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as other:
        other.execute("SELECT 1 FROM conferences WHERE id = %s FOR UPDATE", (conf.id,))

        def mute(w: World) -> Steps[None]:
            return conference_flags.set_flags(w, conf.id, None, muted=True)

        task = asyncio.create_task(control.arun(acct, mute))
        await asyncio.sleep(0.3)  # waiting for the conference's lock
        assert not task.done()
        other.execute("UPDATE conferences SET status = 'completed' WHERE id = %s", (conf.id,))
        other.execute("UPDATE participants SET status = 'left' WHERE conference_id = %s", (conf.id,))
        other.commit()
        await task
    assert not [op for op in media.ops if isinstance(op, ConferenceMix)]
    assert [op.conference_id for op in media.ops if isinstance(op, MemberFlags)] == [conf.id]
    with postgres_store.transaction() as tx:
        rows = tx.participants_of(conf.id, present_only=False)
        assert [(p.muted, p.status) for p in rows] == [(False, ParticipantStatus.LEFT)] * 2
        assert tx.get_conference(acct, conf.id).status is ConferenceStatus.COMPLETED  # type: ignore[union-attr]


async def test_a_readable_watch_wakes_its_waiter_and_lets_go_when_nobody_waits() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    watch = cooperative.ReadableWatch(ours.fileno())

    def read_twice() -> list[bytes]:
        got: list[bytes] = []
        while len(got) < 2:
            watch.wait()
            try:
                got.append(ours.recv(16))
            except BlockingIOError:  # a wake-up may be spurious (a readiness already consumed): wait again
                continue
        return got

    try:
        reader = asyncio.create_task(cooperative.run(read_twice))
        await asyncio.sleep(0.01)
        theirs.send(b"one")
        await asyncio.sleep(0.01)
        theirs.send(b"two")
        assert await reader == [b"one", b"two"]
        # Readable with nobody waiting: the watch lets go of the socket (the loop must not spin on it).
        theirs.send(b"unasked")
        await asyncio.sleep(0.01)
        assert not loop.remove_reader(ours.fileno())
        reader = asyncio.create_task(cooperative.run(read_twice))  # the next wait registers again
        await asyncio.sleep(0.01)
        theirs.send(b"three")
        assert await reader == [b"unasked", b"three"]
    finally:
        watch.close()
        ours.close()
        theirs.close()


async def test_reads_and_writes_at_once_reuse_the_same_sessions(postgres_store: Store) -> None:
    # A burst of concurrent transactions, reads and writes mixed, as the API runs them (at most 32 at once):
    # the sessions opened for the first burst serve the next ones, none is opened and closed per request.
    def work(i: int) -> None:
        with postgres_store.transaction(read_only=i % 2 == 0) as tx:
            tx.conn.execute(text("SELECT pg_sleep(0.005)")).scalar()

    async def burst() -> None:
        await asyncio.gather(*(cooperative.run(work, i) for i in range(32)))

    await burst()
    opened = postgres_store._pg_pool.opened
    assert opened <= 32
    for _ in range(3):
        await burst()
    assert postgres_store._pg_pool.opened == opened
