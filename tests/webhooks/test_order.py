"""What the dispatcher remembers of each key's settled events (``webhooks/order.py``): when the next
event may go without asking the store, and how the memory stays bounded."""

from __future__ import annotations

from callroom.webhooks.order import Settled


def test_the_first_event_and_the_one_after_a_settled_one_may_go() -> None:
    settled = Settled()
    assert settled.may_send("call:a", 1)  # nothing comes before number 1
    assert not settled.may_send("call:a", 2)  # never seen here: the store must say
    settled.settle("call:a", 1)
    assert settled.may_send("call:a", 2)
    assert not settled.may_send("call:a", 3)  # a gap: number 2 was written elsewhere, or is not settled
    assert not settled.may_send("call:a", None)  # an event without a number is always checked
    settled.settle("call:b", 4)  # the store said nothing older than 5 is pending
    assert settled.may_send("call:b", 5) and not settled.may_send("call:a", 5)


def test_a_replay_forgets_what_was_settled() -> None:
    settled = Settled()
    settled.settle("call:a", 7)
    settled.forget("call:a")
    assert not settled.may_send("call:a", 8)


def test_the_least_recently_settled_key_is_forgotten_beyond_capacity() -> None:
    settled = Settled(capacity=2)
    settled.settle("call:a", 1)
    settled.settle("call:b", 1)
    settled.settle("call:a", 2)  # a is now the most recent
    settled.settle("call:c", 1)
    assert len(settled) == 2
    assert not settled.may_send("call:b", 2)  # forgotten: its next event asks the store
    assert settled.may_send("call:a", 3) and settled.may_send("call:c", 2)
