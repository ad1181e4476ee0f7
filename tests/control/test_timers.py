"""Timers with a controlled clock: conference expiry, call time limits, queue timeouts, first-command
timeouts. The control plane runs on a real SQLite store; only time is ours to move."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callroom.control import bridges, calls, conferences, queues, transfer
from callroom.control.service import Control
from callroom.model.media import MediaOp
from callroom.model.records import Account, Application, Call
from callroom.model.states import CallState
from callroom.store.engine import Store
from callroom.store.outbox import pending


class OpsLog:
    """The media plane as a list of the instructions it received."""

    def __init__(self) -> None:
        self.ops: list[MediaOp] = []

    def apply(self, ops: list[MediaOp]) -> None:
        self.ops.extend(ops)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.now = 1_000_000.0
        self.store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
        self.store.migrate()
        self.media = OpsLog()
        self.control = Control(self.store, "node-test", self.media, clock=lambda: self.now)
        with self.store.transaction() as tx:
            tx.insert_account(Account("acct", "acct", self.now))
            tx.insert_application(
                Application("app", "acct", "app", "http://127.0.0.1:9/hooks", self.now, self.now,
                            first_command_timeout=True, first_command_timeout_secs=10)
            )

    def run(self, fn: Any) -> Any:
        return self.control.write("acct", fn)

    def read(self, fn: Any) -> Any:
        return self.control.read("acct", fn)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.control.run_due_timers()

    def answered_call(self) -> str:
        call: Call = self.run(lambda ctx: calls.dial(ctx, calls.DialRequest("app", "+1", "virtual:x")))
        self.run(lambda ctx: calls.remote_answered(ctx, call.call_control_id))
        return call.call_control_id

    def call(self, cid: str) -> Call:
        with self.store.transaction() as tx:
            found = tx.get_call("acct", cid)
        assert found is not None
        return found

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        with self.store.transaction() as tx:
            return [(r.event_type, r.payload) for r in pending(tx, 10_000)]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_conference_ends_when_its_duration_is_exceeded(world: World) -> None:
    host = world.answered_call()
    conf = world.run(lambda ctx: conferences.create(
        ctx, conferences.CreateRequest(call_control_id=host, name="timed", duration_minutes=5)))
    world.advance(299)
    assert world.read(lambda q: q.tx.get_conference("acct", conf.id)).is_active
    world.advance(2)
    got = world.read(lambda q: q.tx.get_conference("acct", conf.id))
    assert (got.status.value, got.end_reason) == ("completed", "time_exceeded")
    assert not world.call(host).is_alive
    ended = [p for e, p in world.events() if e == "conference.ended"]
    assert ended and ended[0]["reason"] == "time_exceeded"


def test_conference_lives_at_most_four_hours(world: World) -> None:
    host = world.answered_call()
    conf = world.run(lambda ctx: conferences.create(ctx, conferences.CreateRequest(call_control_id=host, name="long")))
    assert conf.expires_at - conf.created_at == 4 * 3600
    world.advance(4 * 3600 + 1)
    got = world.read(lambda q: q.tx.get_conference("acct", conf.id))
    # Over by then either way: the legs' own 4-hour time limit may end them a moment before the
    # conference's expiry, which makes the reason all_left rather than time_exceeded.
    assert got.status.value == "completed" and got.end_reason in ("time_exceeded", "all_left")


def test_dial_timeout_and_first_command_timeout(world: World) -> None:
    call = world.run(lambda ctx: calls.dial(ctx, calls.DialRequest("app", "+1", "virtual:x", timeout_secs=30)))
    world.advance(29)
    assert world.call(call.call_control_id).is_alive
    world.advance(2)
    assert world.call(call.call_control_id).hangup_cause == "timeout"

    incoming = world.run(lambda ctx: calls.incoming(ctx, connection_id="app", from_="a", to="b", endpoint="virtual:a"))
    world.advance(11)  # the application never answered within first_command_timeout_secs
    assert world.call(incoming.call_control_id).hangup_cause == "timeout"


def test_time_limit_ends_an_answered_call(world: World) -> None:
    call = world.run(lambda ctx: calls.dial(ctx, calls.DialRequest("app", "+1", "virtual:x", time_limit_secs=60)))
    world.run(lambda ctx: calls.remote_answered(ctx, call.call_control_id))
    world.advance(61)
    assert world.call(call.call_control_id).hangup_cause == "time_limit"


def test_queue_timeout_survives_a_node_restart(world: World, tmp_path: Path) -> None:
    cid = world.answered_call()
    world.run(lambda ctx: queues.enqueue(ctx, cid, "q", client_state=None, max_size=None, max_wait_time_secs=60,
                                         keep_after_hangup=False))
    # A new Control on the same database (a restarted process) still owns the timer.
    world.control = Control(world.store, "node-test", world.media, clock=lambda: world.now)
    world.advance(61)
    dequeued = [p for e, p in world.events() if e == "call.dequeued"]
    assert dequeued and dequeued[0]["reason"] == "timeout"
    assert world.call(cid).state.value == "parked"


def test_the_timer_loop_is_told_the_soonest_new_timer_and_the_next_due(world: World) -> None:
    """A command that sets timers tells the loop when the soonest is due (the loop wakes only if that is
    before it planned to look); a pass returns when the next timer is due."""
    told: list[float] = []
    world.control.on_timers = told.append
    cid = world.answered_call()  # dial (dial timeout), then answered (time limit)
    dial_timeout_at = world.now + calls.DialRequest("app", "+1", "virtual:x").timeout_secs
    assert told == [dial_timeout_at, world.now + world.call(cid).time_limit_secs]
    assert world.control.run_due_timers() == world.now + world.call(cid).time_limit_secs
    told.clear()
    world.run(lambda ctx: calls.hangup(ctx, cid, client_state=None))  # cancels, sets nothing
    assert told == []
    assert world.control.run_due_timers() is None


def test_a_pass_fires_at_most_its_limit_and_asks_for_another(world: World) -> None:
    for _ in range(3):
        world.answered_call()
    world.now += 5 * 3600  # every time limit is due
    assert world.control.run_due_timers(limit=2) == world.now  # two fired, one left: look again at once
    assert world.control.run_due_timers(limit=2) is None
    assert [e for e, _ in world.events()].count("call.hangup") == 3


def test_illegal_transition_is_refused_by_the_table(world: World) -> None:
    cid = world.answered_call()

    world.run(lambda w: calls.remote_answered(w, cid))  # already answered: ignored, not an error
    with pytest.raises(Exception, match="Only a ringing incoming call can be answered"):
        world.run(lambda w: calls.answer(w, cid, client_state=None, webhook_url=None, webhook_url_method=None))


def test_a_transfer_ringing_for_a_call_hung_up_from_its_bridge_is_cancelled(world: World) -> None:
    caller, partner = world.answered_call(), world.answered_call()
    world.run(lambda ctx: bridges.bridge(ctx, caller, partner, client_state=None, park_after_unbridge=None,
                                         hold_after_unbridge=None, prevent_double_bridge=False))
    leg = world.run(lambda ctx: transfer.transfer(ctx, caller, transfer.TransferRequest(to="virtual:agent")))
    world.run(lambda ctx: calls.remote_hangup(ctx, partner))  # the caller, not asked to stay, is hung up too
    assert world.call(caller).state is CallState.ENDED
    assert world.call(leg.call_control_id).state is CallState.RINGING
    world.advance(0)
    ended = world.call(leg.call_control_id)
    assert (ended.state, ended.hangup_cause, ended.sip_hangup_cause) == (CallState.ENDED, "originator_cancel", "487")
