"""The webhook outbox: order, fate of each delivery, and atomicity with the state change it reports."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from callroom.errors import Conflict
from callroom.model.states import CallState
from callroom.store import outbox
from callroom.store import schema as t
from callroom.store.engine import Store
from callroom.store.tx import Tx
from tests.store import factories as f
from tests.store.factories import NOW, uid


def _row(tx: Tx, row_id: int) -> dict[str, object]:
    row = tx.conn.execute(select(t.outbox).where(t.outbox.c.id == row_id)).one()
    return dict(row._mapping)


def _outbox_size(store: Store) -> int:
    with store.transaction() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(t.outbox)).scalar_one())


def test_pending_in_insertion_order_with_every_field(store: Store) -> None:
    acct = uid()
    events = [f.event(acct, order_key=f"call:{i % 2}", event_type=f"e{i}") for i in range(5)]
    with store.transaction() as tx:
        for ev in events[:3]:
            tx.add_event(ev, NOW)
    with store.transaction() as tx:
        for ev in events[3:]:
            tx.add_event(ev, NOW + 1)
    with store.transaction() as tx:
        rows = outbox.pending(tx, limit=100)
        assert outbox.pending(tx, limit=2) == rows[:2]
    assert [r.event_id for r in rows] == [ev.id for ev in events]
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    first, ev = rows[0], events[0]
    assert (first.account_id, first.event_type, first.occurred_at, first.payload) == (
        acct,
        ev.event_type,
        ev.occurred_at,
        ev.payload,
    )
    assert (first.url, first.failover_url, first.method, first.timeout_secs, first.order_key) == (
        ev.url,
        ev.failover_url,
        ev.method,
        ev.timeout_secs,
        ev.order_key,
    )
    assert first.occurred_at_in_payload is True
    assert (first.attempts, first.next_attempt_at) == (0, NOW)
    assert rows[4].next_attempt_at == NOW + 1


def test_retry_delivered_failed_and_counts(store: Store) -> None:
    acct = uid()
    a, b, c, d = (f.event(acct, order_key="conference:1") for _ in range(4))
    with store.transaction() as tx:
        for ev in (a, b, c, d):
            tx.add_event(ev, NOW)
        assert outbox.counts(tx) == {"pending": 4}
        ids = {r.event_id: r.id for r in outbox.pending(tx, 10)}

    with store.transaction() as tx:
        outbox.mark_retry(tx, ids[a.id], 1, NOW + 4, "HTTP 503")
        outbox.mark_delivered(tx, ids[b.id], 2, NOW + 5)
        outbox.mark_failed(tx, ids[c.id], 6, "failover exhausted")
    with store.transaction() as tx:
        pending = outbox.pending(tx, 10)
        assert [r.event_id for r in pending] == [a.id, d.id]  # a is still pending, and still first
        assert (pending[0].attempts, pending[0].next_attempt_at) == (1, NOW + 4)
        assert outbox.counts(tx) == {"pending": 2, "delivered": 1, "failed": 1}
        assert _row(tx, ids[a.id])["last_error"] == "HTTP 503"
        delivered = _row(tx, ids[b.id])
        assert (delivered["status"], delivered["attempts"], delivered["delivered_at"]) == ("delivered", 2, NOW + 5)
        failed = _row(tx, ids[c.id])
        assert (failed["status"], failed["attempts"], failed["last_error"]) == ("failed", 6, "failover exhausted")
        assert failed["delivered_at"] is None
        assert outbox.events_for(tx, acct, "conference:1") == [
            {"event_id": a.id, "event_type": a.event_type, "status": "pending", "attempts": 1},
            {"event_id": b.id, "event_type": b.event_type, "status": "delivered", "attempts": 2},
            {"event_id": c.id, "event_type": c.event_type, "status": "failed", "attempts": 6},
            {"event_id": d.id, "event_type": d.event_type, "status": "pending", "attempts": 0},
        ]
        assert outbox.events_for(tx, uid(), "conference:1") == []  # another account's view is empty

    with store.transaction() as tx:
        outbox.mark_delivered(tx, ids[a.id], 2, NOW + 6)
        outbox.mark_delivered(tx, ids[d.id], 1, NOW + 6)
    with store.transaction() as tx:
        assert outbox.pending(tx, 10) == []
        assert outbox.counts(tx) == {"delivered": 3, "failed": 1}


def test_event_ids_are_unique(store: Store) -> None:
    ev = f.event(uid())
    with store.transaction() as tx:
        tx.add_event(ev, NOW)
    with pytest.raises(Conflict), store.transaction() as tx:
        tx.add_event(ev, NOW)
    assert _outbox_size(store) == 1


# -- atomicity ----------------------------------------------------------------------------------------


def _seed_call(store: Store) -> tuple[str, str]:
    acct = uid()
    call = f.call(acct, state=CallState.PARKED)
    with store.transaction() as tx:
        tx.insert_call(call)
    return acct, call.call_control_id


def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    acct, ccid = _seed_call(store)
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as tx:
        call = tx.get_call(acct, ccid, lock=True)
        assert call is not None
        call.state = CallState.ENDED
        call.hangup_cause = "normal_clearing"
        tx.update_call(call)
        tx.add_event(f.event(acct, event_type="call.hangup", order_key=f"call:{ccid}"), NOW)
        tx.add_timer(f.timer(acct, ref=ccid))
        tx.insert_queue(f.queue(acct))
        tx.insert_conference(f.conference(acct))
        assert tx.remember_command(acct, f"call:{ccid}", "hangup-1", NOW, 60) == (True, None)
        tx.put_setting("k", "v")
        # Everything is visible inside the transaction...
        assert tx.get_call(acct, ccid) == call
        assert outbox.counts(tx) == {"pending": 1}
        raise RuntimeError("boom")

    # ...and none of it outside, afterwards.
    with store.transaction() as tx:
        after = tx.get_call(acct, ccid)
        assert after is not None and after.state is CallState.PARKED and after.hangup_cause is None
        assert outbox.pending(tx, 10) == []
        assert outbox.counts(tx) == {}
        assert tx.next_timer_due() is None
        assert tx.get_queue(acct, "support") is None
        assert tx.list_conferences(acct, 1, 10, None, None) == ([], 0)
        assert tx.remember_command(acct, f"call:{ccid}", "hangup-1", NOW + 1, 60) == (True, None)
        assert tx.get_setting("k") is None


def test_state_change_and_its_event_commit_together(store: Store) -> None:
    acct, ccid = _seed_call(store)
    with store.transaction() as tx:
        call = tx.get_call(acct, ccid, lock=True)
        assert call is not None
        call.state = CallState.ENDED
        tx.update_call(call)
        tx.add_event(f.event(acct, event_type="call.hangup", order_key=f"call:{ccid}"), NOW)
    with store.transaction() as tx:
        after = tx.get_call(acct, ccid)
        assert after is not None and after.state is CallState.ENDED
        assert [r.event_type for r in outbox.pending(tx, 10)] == ["call.hangup"]


def test_an_outbox_write_that_fails_undoes_the_state_change(store: Store) -> None:
    """The event insert is the *last* statement: its failure must still take the update with it."""
    acct, ccid = _seed_call(store)
    taken = f.event(acct)
    with store.transaction() as tx:
        tx.add_event(taken, NOW)
    with pytest.raises(Conflict), store.transaction() as tx:
        call = tx.get_call(acct, ccid, lock=True)
        assert call is not None
        call.state = CallState.ENDED
        tx.update_call(call)
        tx.add_event(f.event(acct, id=taken.id, event_type="call.hangup"), NOW)  # duplicate event id
    with store.transaction() as tx:
        after = tx.get_call(acct, ccid)
        assert after is not None and after.state is CallState.PARKED
        assert [r.event_id for r in outbox.pending(tx, 10)] == [taken.id]


def test_append_numbers_each_key_and_stores_the_payload_it_reports(store: Store) -> None:
    acct = uid()
    keys = ["call:a", "conference:b", "call:a", "call:a", "conference:b"]
    events = [f.event(acct, order_key=k, payload={"k": k, "i": i, "ü": [None, 1.5]} if i else {})
              for i, k in enumerate(keys)]
    with store.transaction() as tx:
        appended = [outbox.append(tx, ev, NOW, "seq") for ev in events[:3]]
    with store.transaction() as tx:
        appended += [outbox.append(tx, ev, NOW, "seq") for ev in events[3:]]
    assert [a.sequence for a in appended] == [1, 1, 2, 3, 2]
    with store.transaction() as tx:
        rows = {r.event_id: r for r in outbox.pending(tx, limit=100)}
    for ev, a in zip(events, appended, strict=True):
        row = rows[ev.id]
        assert row.id == a.id
        assert row.payload == {**ev.payload, "seq": a.sequence}
        assert list(row.payload)[-1] == "seq"  # last, as the in-memory copy has it
        assert "seq" not in ev.payload  # the event itself is left as it was
    assert [a.id for a in appended] == sorted(a.id for a in appended)


def test_append_rolls_back_with_its_transaction(store: Store) -> None:
    acct = uid()
    with pytest.raises(RuntimeError), store.transaction() as tx:
        outbox.append(tx, f.event(acct, order_key="call:z"), NOW, "seq")
        raise RuntimeError("the state change failed")
    with store.transaction() as tx:
        again = outbox.append(tx, f.event(acct, order_key="call:z"), NOW, "seq")
    assert again.sequence == 1
    assert _outbox_size(store) == 1


def test_record_writes_a_batch_of_fates_and_attempts(store: Store) -> None:
    acct = uid()
    events = [f.event(acct, order_key=f"call:{i}") for i in range(3)]
    with store.transaction() as tx:
        ids = [tx.add_event(ev, NOW) for ev in events]
    awkward = 'quote " backslash \\ brace { } comma , ünï\ncode NULL'
    nul = "a receiver's body with \x00 in it"
    fates = [
        outbox.Fate(ids[0], "pending", 1, NOW + 5, None, "timeout"),  # a retry, then delivered: the later wins
        outbox.Fate(ids[1], "failed", 3, NOW, None, awkward),
        outbox.Fate(ids[0], "delivered", 2, NOW + 5, NOW + 6, None),
    ]
    attempts = [
        outbox.AttemptRecord(ids[0], acct, 1, "https://a.test/x", "POST", NOW, NOW + 1, None, "timeout"),
        outbox.AttemptRecord(ids[1], acct, 3, "https://b.test/y", "GET", NOW, NOW + 2, 500, awkward, awkward),
        outbox.AttemptRecord(ids[0], acct, 2, "https://a.test/x", "POST", NOW + 5, NOW + 6, 204, None, ""),
        outbox.AttemptRecord(ids[2], acct, 1, "https://c.test/z", "POST", NOW, NOW + 1, 302, nul, nul),
    ]
    with store.transaction() as tx:
        outbox.record(tx, fates, attempts)
    with store.transaction() as tx:
        first, second, third = (_row(tx, i) for i in ids)
        recorded = tx.conn.execute(select(t.webhook_attempts).order_by(t.webhook_attempts.c.id)).all()
    assert (first["status"], first["attempts"], first["delivered_at"], first["last_error"]) == (
        "delivered", 2, NOW + 6, None)
    assert (second["status"], second["attempts"], second["last_error"]) == ("failed", 3, awkward)
    assert (third["status"], third["attempts"]) == ("pending", 0)
    assert [(r.outbox_id, r.attempt, r.status_code, r.error, r.response_body) for r in recorded] == [
        (ids[0], 1, None, "timeout", None), (ids[1], 3, 500, awkward, awkward), (ids[0], 2, 204, None, ""),
        (ids[2], 1, 302, recorded[3].error, recorded[3].error),
    ]
    assert [r.started_at for r in recorded] == [NOW, NOW, NOW + 5, NOW]
    # PostgreSQL's text holds no NUL: kept with a replacement character there (SQLite keeps it as it came).
    assert recorded[3].error in (nul, nul.replace("\x00", "\ufffd"))
