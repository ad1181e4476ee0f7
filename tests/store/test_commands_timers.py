"""``command_id`` deduplication windows, and durable timers."""

from __future__ import annotations

import pytest

from callroom.store.engine import Store
from tests.store import factories as f
from tests.store.factories import NOW, uid

WINDOW = 60.0


def test_remember_command_window(store: Store) -> None:
    acct = uid()
    with store.transaction() as tx:
        assert tx.remember_command(acct, "call:a", "cmd-1", NOW, WINDOW) == (True, None)
    with store.transaction() as tx:
        # A repeat inside the window: not fresh; no result recorded yet.
        assert tx.remember_command(acct, "call:a", "cmd-1", NOW + 1, WINDOW) == (False, None)
        tx.set_command_result(acct, "call:a", "cmd-1", "v3:dialled-leg")
    with store.transaction() as tx:
        assert tx.remember_command(acct, "call:a", "cmd-1", NOW + WINDOW - 0.001, WINDOW) == (False, "v3:dialled-leg")
        # The window is measured from the first execution, not extended by repeats.
        assert tx.remember_command(acct, "call:a", "cmd-1", NOW + WINDOW, WINDOW) == (True, None)
    with store.transaction() as tx:
        # Executed afresh: the earlier result is forgotten and a new window starts.
        assert tx.remember_command(acct, "call:a", "cmd-1", NOW + WINDOW + 1, WINDOW) == (False, None)
        assert tx.remember_command(acct, "call:a", "cmd-1", NOW + 2 * WINDOW + 1, WINDOW) == (True, None)


def test_remember_command_keys_on_account_scope_and_id(store: Store) -> None:
    acct, other = uid(), uid()
    with store.transaction() as tx:
        assert tx.remember_command(acct, "call:a", "cmd", NOW, WINDOW) == (True, None)
        tx.set_command_result(acct, "call:a", "cmd", "r-a")
        assert tx.remember_command(acct, "call:b", "cmd", NOW, WINDOW) == (True, None)
        assert tx.remember_command(other, "call:a", "cmd", NOW, WINDOW) == (True, None)
        assert tx.remember_command(acct, "call:a", "cmd2", NOW, WINDOW) == (True, None)
        tx.set_command_result(other, "call:a", "cmd", "r-other")
    with store.transaction() as tx:
        assert tx.remember_command(acct, "call:a", "cmd", NOW + 1, WINDOW) == (False, "r-a")
        assert tx.remember_command(other, "call:a", "cmd", NOW + 1, WINDOW) == (False, "r-other")
        assert tx.remember_command(acct, "call:b", "cmd", NOW + 1, WINDOW) == (False, None)


def test_forget_commands_before(store: Store) -> None:
    acct = uid()
    with store.transaction() as tx:
        tx.remember_command(acct, "s", "old", NOW, WINDOW)
        tx.remember_command(acct, "s", "new", NOW + 10, WINDOW)
    with store.transaction() as tx:
        tx.forget_commands_before(NOW + 5)
    with store.transaction() as tx:
        # "old" is gone, so even inside its window it counts as fresh; "new" is still remembered.
        assert tx.remember_command(acct, "s", "old", NOW + 11, WINDOW) == (True, None)
        assert tx.remember_command(acct, "s", "new", NOW + 11, WINDOW) == (False, None)


def test_timers_due_in_order_and_taken_once(store: Store) -> None:
    acct = uid()
    late = f.timer(acct, kind="time_limit", due_at=NOW + 100)
    second = f.timer(acct, kind="queue_timeout", due_at=NOW - 5)
    first = f.timer(acct, kind="dial_timeout", due_at=NOW - 10)
    with store.transaction() as tx:
        for tm in (late, second, first):
            tx.add_timer(tm)
        assert tx.next_timer_due() == NOW - 10
    with store.transaction() as tx:
        due = tx.due_timers(NOW)
        assert tx.due_timers(NOW, limit=1) == due[:1]
        assert tx.due_timers(NOW - 11) == []
    assert [(d.kind, d.ref, d.due_at) for d in due] == [(t.kind, t.ref, t.due_at) for t in (first, second)]
    assert due[0].id != due[1].id and all(d.id > 0 for d in due)

    with store.transaction() as tx:
        assert tx.take_timer(due[0]) is True
        assert tx.take_timer(due[0]) is False  # within the same transaction
    with store.transaction() as tx:
        assert tx.take_timer(due[0]) is False  # and after it committed
        assert [d.id for d in tx.due_timers(NOW)] == [due[1].id]
        assert tx.next_timer_due() == NOW - 5


def test_timer_taken_in_a_rolled_back_transaction_is_still_due(store: Store) -> None:
    acct = uid()
    with store.transaction() as tx:
        tx.add_timer(f.timer(acct, due_at=NOW))
    with store.transaction() as tx:
        (tm,) = tx.due_timers(NOW)
    try:
        with store.transaction() as tx:
            assert tx.take_timer(tm) is True
            raise RuntimeError("handler failed")
    except RuntimeError:
        pass
    with store.transaction() as tx:
        assert tx.due_timers(NOW) == [tm]


def test_cancel_timers_by_kind_and_ref(store: Store) -> None:
    acct = uid()
    with store.transaction() as tx:
        tx.add_timer(f.timer(acct, kind="dial_timeout", ref="v3:a", due_at=NOW))
        tx.add_timer(f.timer(acct, kind="dial_timeout", ref="v3:a", due_at=NOW + 1))
        tx.add_timer(f.timer(acct, kind="time_limit", ref="v3:a", due_at=NOW + 2))
        tx.add_timer(f.timer(acct, kind="dial_timeout", ref="v3:b", due_at=NOW + 3))
    with store.transaction() as tx:
        tx.cancel_timers("dial_timeout", "v3:a")
    with store.transaction() as tx:
        left = [(t.kind, t.ref) for t in tx.due_timers(NOW + 10)]
        assert left == [("time_limit", "v3:a"), ("dial_timeout", "v3:b")]
        tx.cancel_timers("time_limit", "v3:a")
        tx.cancel_timers("dial_timeout", "v3:b")
        assert tx.next_timer_due() is None


def test_cancel_several_kinds_of_one_ref_at_once(store: Store) -> None:
    acct = uid()
    with store.transaction() as tx:
        for kind in ("dial_timeout", "time_limit", "first_command"):
            tx.add_timer(f.timer(acct, kind=kind, ref="v3:a", due_at=NOW))
        tx.add_timer(f.timer(acct, kind="dial_timeout", ref="v3:b", due_at=NOW))
    with store.transaction() as tx:
        tx.cancel_timers(("dial_timeout", "time_limit", "ring_timeout"), "v3:a")
    with store.transaction() as tx:
        assert sorted((t.kind, t.ref) for t in tx.due_timers(NOW)) == [("dial_timeout", "v3:b"),
                                                                      ("first_command", "v3:a")]


def test_soonest_timers_due_or_not(store: Store) -> None:
    acct = uid()
    with store.transaction() as tx:
        for due in (NOW + 30, NOW - 5, NOW + 1, NOW):
            tx.add_timer(f.timer(acct, kind="dial_timeout", ref=uid(), due_at=due))
    with store.transaction() as tx:
        assert [t.due_at for t in tx.soonest_timers(3)] == [NOW - 5, NOW, NOW + 1]
        assert [t.due_at for t in tx.soonest_timers(10)] == [NOW - 5, NOW, NOW + 1, NOW + 30]


def test_a_stale_timer_id_cannot_take_a_newer_timer(store: Store, request: pytest.FixtureRequest) -> None:
    """The timer loop lists due timers, then takes each by id in a later transaction. Meanwhile a command
    may cancel that timer and add another (answering a call cancels its dial timeout and starts its time
    limit). If the new timer got the old id, the loop would take the *new* timer and run the old one's
    handler: the time limit would be lost. PostgreSQL's sequence never hands an id out twice; SQLite's
    rowid (``INTEGER PRIMARY KEY`` without ``AUTOINCREMENT``) hands out max(id) + 1, which is the id of
    the timer just deleted when it was the newest."""
    acct = uid()
    with store.transaction() as tx:
        tx.add_timer(f.timer(acct, kind="dial_timeout", ref="v3:a", due_at=NOW))
        (listed,) = tx.due_timers(NOW)  # the timer loop's list
    with store.transaction() as tx:  # the call is answered
        tx.cancel_timers("dial_timeout", "v3:a")
        tx.add_timer(f.timer(acct, kind="time_limit", ref="v3:a", due_at=NOW + 14400))
    with store.transaction() as tx:
        assert tx.take_timer(listed) is False, "the stale id took the new time_limit timer"
        assert [t.kind for t in tx.due_timers(NOW + 14400)] == ["time_limit"]
