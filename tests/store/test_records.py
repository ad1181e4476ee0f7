"""Every record type through insert / get / update, account isolation, listings and their pages."""

from __future__ import annotations

import dataclasses
import random

import pytest

from callroom.errors import Conflict
from callroom.model.states import CallState, ConferenceStatus, ParticipantStatus
from callroom.store.engine import Store
from tests.store import factories as f
from tests.store.factories import NOW, uid

# -- round trips ------------------------------------------------------------------------------------


def test_application_round_trip(store: Store) -> None:
    acct = uid()
    app = f.application(acct)
    with store.transaction() as tx:
        tx.insert_application(app)
    with store.transaction() as tx:
        got = tx.get_application(acct, app.id)
    assert got == app
    assert got is not app

    app.inbound = {"channel_limit": None, "list": [1, "two", {"three": [3.5]}], "empty": {}}
    app.outbound = {}
    app.tags = []
    app.active = True
    app.webhook_event_failover_url = None
    app.webhook_timeout_secs = None
    app.updated_at = NOW + 99.125
    with store.transaction() as tx:
        tx.update_application(app)
    with store.transaction() as tx:
        assert tx.get_application(acct, app.id) == app

    with store.transaction() as tx:
        tx.delete_application(uid(), app.id)  # another account cannot delete it
    with store.transaction() as tx:
        assert tx.get_application(acct, app.id) == app
        tx.delete_application(acct, app.id)
    with store.transaction() as tx:
        assert tx.get_application(acct, app.id) is None


def test_call_round_trip_through_every_state(store: Store) -> None:
    acct = uid()
    call = f.call(acct)
    with store.transaction() as tx:
        tx.insert_call(call)
    with store.transaction() as tx:
        got = tx.get_call(acct, call.call_control_id)
        assert got == call
        assert type(got.state) is CallState  # an enum again, not the stored string
        assert tx.get_call(acct, call.call_control_id, lock=True) == call
        assert tx.get_call_any_account(call.call_control_id) == call

    for state in CallState:
        call.state = state
        call.conference_config = None if state is CallState.CONFERENCED else {"id": uid()}
        call.bridged_with = "v3:" + uid() if state is CallState.BRIDGED else None
        with store.transaction() as tx:
            tx.update_call(call)
        with store.transaction() as tx:
            got = tx.get_call(acct, call.call_control_id)
        assert got == call
        assert type(got.state) is CallState and got.state is state

    call.ended_at = NOW + 60
    call.hangup_cause, call.hangup_source, call.sip_hangup_cause = "normal_clearing", "callee", "200"
    with store.transaction() as tx:
        tx.update_call(call)
    with store.transaction() as tx:
        assert tx.get_call(acct, call.call_control_id) == call


def test_live_calls_of_node_and_session(store: Store) -> None:
    acct = uid()
    session = uid()
    a = f.call(acct, call_session_id=session, node_id="n1", state=CallState.PARKED)
    b = f.call(acct, call_session_id=session, node_id="n2", state=CallState.BRIDGED)
    ended = f.call(acct, call_session_id=session, node_id="n1", state=CallState.ENDED)
    with store.transaction() as tx:
        for c in (a, b, ended):
            tx.insert_call(c)
    with store.transaction() as tx:
        assert tx.live_calls_of_node("n1") == [a]
        assert sorted(c.call_control_id for c in tx.live_calls_of_session(acct, session)) == sorted(
            [a.call_control_id, b.call_control_id]
        )


def test_conference_round_trip(store: Store) -> None:
    acct = uid()
    conf = f.conference(acct)
    with store.transaction() as tx:
        tx.insert_conference(conf)
    with store.transaction() as tx:
        got = tx.get_conference(acct, conf.id)
        assert got == conf
        assert type(got.status) is ConferenceStatus
        assert tx.get_conference(acct, conf.id, lock=True) == conf
        assert tx.active_conference_by_name(acct, conf.name, lock=True) == conf

    conf.status = ConferenceStatus.COMPLETED
    conf.end_reason = "host_left"
    conf.ended_by_call_control_id = "v3:" + uid()
    conf.ended_by_call_session_id = uid()
    conf.ended_at = NOW + 30.5
    conf.hold_audio_url = None
    with store.transaction() as tx:
        tx.update_conference(conf)
    with store.transaction() as tx:
        assert tx.get_conference(acct, conf.id) == conf
        assert tx.active_conference_by_name(acct, conf.name) is None  # completed ones are not "active"


def test_a_name_belongs_to_one_live_conference_at_a_time(store: Store) -> None:
    acct = uid()
    done = f.conference(acct, created_at=NOW, status=ConferenceStatus.COMPLETED)
    again = f.conference(acct, created_at=NOW + 5, status=ConferenceStatus.COMPLETED)
    live = f.conference(acct, created_at=NOW + 10, status=ConferenceStatus.INIT)
    other = f.conference(acct, name="other", created_at=NOW + 30)
    with store.transaction() as tx:
        for c in (done, again, live, other):  # completed ones may share the name
            tx.insert_conference(c)
    with store.transaction() as tx:
        assert tx.active_conference_by_name(acct, "standup") == live
    with pytest.raises(Conflict) as taken, store.transaction() as tx:
        tx.insert_conference(f.conference(acct, created_at=NOW + 40, status=ConferenceStatus.IN_PROGRESS))
    assert taken.value.constraint == "uq_conferences_active_name"


def test_participant_round_trip(store: Store) -> None:
    acct = uid()
    conf = f.conference(acct)
    p = f.participant(acct, conf.id)
    with store.transaction() as tx:
        tx.insert_conference(conf)
        tx.insert_participant(p)
    with store.transaction() as tx:
        got = tx.get_participant(conf.id, p.id)
        assert got == p
        assert type(got.status) is ParticipantStatus
        assert isinstance(got.whisper_call_control_ids, list)
        assert tx.get_participant(conf.id, "coach") == p  # by label
        assert tx.get_participant(uid(), p.id) is None  # another conference
        assert tx.present_participant_for_call(p.call_control_id) == p

    p.status = ParticipantStatus.JOINED
    p.whisper_call_control_ids = []
    p.muted = False
    p.label = None
    with store.transaction() as tx:
        tx.update_participant(p)
    with store.transaction() as tx:
        assert tx.get_participant(conf.id, p.id) == p

    p.whisper_call_control_ids = ["v3:a", "v3:b", "v3:c"]  # order matters: it is a list, not a set
    p.status = ParticipantStatus.LEFT
    p.left_at = NOW + 5
    with store.transaction() as tx:
        tx.update_participant(p)
    with store.transaction() as tx:
        assert tx.get_participant(conf.id, p.id) == p
        assert tx.present_participant_for_call(p.call_control_id) is None
        assert tx.participants_of(conf.id) == []
        assert tx.participants_of(conf.id, present_only=False) == [p]


def test_queue_round_trip(store: Store) -> None:
    acct = uid()
    q = f.queue(acct)
    with store.transaction() as tx:
        tx.insert_queue(q)
    with store.transaction() as tx:
        assert tx.get_queue(acct, "support") == q
        assert tx.get_queue(acct, "support", lock=True) == q
        assert tx.get_queue_by_id(q.id) == q
    q.max_size = 3
    q.updated_at = NOW + 77
    with store.transaction() as tx:
        tx.update_queue(q)
    with store.transaction() as tx:
        assert tx.get_queue(acct, "support") == q
        tx.delete_queue(q)
    with store.transaction() as tx:
        assert tx.get_queue(acct, "support") is None
        assert tx.get_queue_by_id(q.id) is None


def test_queue_name_is_unique_per_account(store: Store) -> None:
    acct = uid()
    with store.transaction() as tx:
        tx.insert_queue(f.queue(acct))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), store.transaction() as tx:
        tx.insert_queue(f.queue(acct))
    with store.transaction() as tx:
        tx.insert_queue(f.queue(uid()))  # the same name in another account is fine


def test_queue_entries_get_increasing_seq_and_are_listed_in_arrival_order(store: Store) -> None:
    acct = uid()
    q = f.queue(acct)
    other_q = f.queue(acct, name="sales")
    # Later arrivals get earlier enqueued_at: the order must follow seq, not the timestamp.
    entries = [f.queue_entry(q, enqueued_at=NOW - i) for i in range(5)]
    with store.transaction() as tx:
        tx.insert_queue(q)
        tx.insert_queue(other_q)
        returned = [tx.insert_queue_entry(e) for e in entries[:3]]
        tx.insert_queue_entry(f.queue_entry(other_q))
    with store.transaction() as tx:
        returned += [tx.insert_queue_entry(e) for e in entries[3:]]
    assert returned == entries  # the same objects, with seq filled in
    seqs = [e.seq for e in entries]
    assert all(s > 0 for s in seqs)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    with store.transaction() as tx:
        assert tx.queue_entries(q.id) == entries

    head = entries[0]
    head.is_alive = False
    head.keep_after_hangup = False
    head.max_wait_time_secs = None
    with store.transaction() as tx:
        tx.update_queue_entry(head)
    with store.transaction() as tx:
        assert tx.queue_entry_for_call(head.call_control_id) == head
        tx.delete_queue_entry(entries[2])
    with store.transaction() as tx:
        assert tx.queue_entries(q.id) == [entries[0], entries[1], entries[3], entries[4]]
        assert tx.queue_entry_for_call(entries[2].call_control_id) is None

    # A newcomer queues behind everyone still listed, even after the last one left. (SQLite may hand the
    # last seq out again, PostgreSQL's sequence never does; the order is the same either way.)
    with store.transaction() as tx:
        tx.delete_queue_entry(entries[4])
    with store.transaction() as tx:
        late = tx.insert_queue_entry(f.queue_entry(q))
        assert tx.queue_entries(q.id) == [entries[0], entries[1], entries[3], late]
    assert late.seq > entries[3].seq


def test_timer_round_trip(store: Store) -> None:
    acct = uid()
    tm = f.timer(acct, kind="queue_timeout", ref="v3:abc", due_at=NOW + 0.001)
    with store.transaction() as tx:
        tx.add_timer(tm)
    with store.transaction() as tx:
        (got,) = tx.due_timers(NOW + 1)
    assert got.id > 0
    assert got == dataclasses.replace(tm, id=got.id)


# -- account isolation ------------------------------------------------------------------------------


def test_gets_with_another_account_return_none_and_listings_stay_inside_the_account(store: Store) -> None:
    mine, theirs = uid(), uid()
    session = uid()
    rows = {}
    with store.transaction() as tx:
        for acct in (mine, theirs):
            app = f.application(acct, application_name=f"app {acct}")
            call = f.call(acct, call_session_id=session, state=CallState.PARKED)
            conf = f.conference(acct)  # same name in both accounts
            q = f.queue(acct)  # same name in both accounts
            tx.insert_application(app)
            tx.insert_call(call)
            tx.insert_conference(conf)
            tx.insert_queue(q)
            rows[acct] = (app, call, conf, q)

    app, call, conf, q = rows[mine]
    with store.transaction() as tx:
        assert tx.get_application(theirs, app.id) is None
        assert tx.get_call(theirs, call.call_control_id) is None
        assert tx.get_call(theirs, call.call_control_id, lock=True) is None
        assert tx.get_conference(theirs, conf.id) is None
        assert tx.get_conference(theirs, conf.id, lock=True) is None
        assert tx.active_conference_by_name(theirs, "standup") == rows[theirs][2]
        assert tx.get_queue(theirs, "support") == rows[theirs][3]
        assert tx.live_calls_of_session(mine, session) == [call]

        for acct in (mine, theirs):
            apps, n_apps = tx.list_applications(acct, 1, 50, None)
            confs, n_confs = tx.list_conferences(acct, 1, 50, None, None)
            queues, n_queues = tx.list_queues(acct, 1, 50)
            assert (apps, n_apps) == ([rows[acct][0]], 1)
            assert (confs, n_confs) == ([rows[acct][2]], 1)
            assert (queues, n_queues) == ([rows[acct][3]], 1)
            assert tx.list_applications(acct, 1, 50, "app")[1] == 1
            assert tx.list_conferences(acct, 1, 50, "standup", "init")[1] == 1

        assert tx.list_applications(uid(), 1, 50, None) == ([], 0)


# -- listings ---------------------------------------------------------------------------------------


def test_list_conferences_pages_by_expiry_descending_with_id_as_tie_break(store: Store) -> None:
    acct = uid()
    expiries = [NOW + 10 * i for i in range(7)] + [NOW + 30]  # one tie, at NOW + 30
    confs = [f.conference(acct, name=f"room-{i}", expires_at=e) for i, e in enumerate(expiries)]
    random.Random(7).shuffle(confs)
    with store.transaction() as tx:
        for c in confs:
            tx.insert_conference(c)
    expected = sorted(confs, key=lambda c: c.id)
    expected.sort(key=lambda c: c.expires_at, reverse=True)

    seen = []
    with store.transaction() as tx:
        for page in (1, 2, 3):
            items, total = tx.list_conferences(acct, page, 3, None, None)
            assert total == 8
            seen += items
        assert tx.list_conferences(acct, 4, 3, None, None) == ([], 8)  # past the end: empty, same total
        assert tx.list_conferences(acct, 1, 100, None, None) == (expected, 8)
    assert [len(seen[i : i + 3]) for i in (0, 3, 6)] == [3, 3, 2]
    assert seen == expected


def test_list_conferences_filters_on_name_and_status(store: Store) -> None:
    acct = uid()
    specs = [
        ("standup", ConferenceStatus.INIT),
        ("standup", ConferenceStatus.COMPLETED),
        ("standup", ConferenceStatus.COMPLETED),
        ("retro", ConferenceStatus.IN_PROGRESS),
        ("retro", ConferenceStatus.COMPLETED),
    ]
    with store.transaction() as tx:
        for i, (name, status) in enumerate(specs):
            tx.insert_conference(f.conference(acct, name=name, status=status, expires_at=NOW + i))
    with store.transaction() as tx:

        def count(name: str | None, status: str | None) -> int:
            items, total = tx.list_conferences(acct, 1, 100, name, status)
            assert len(items) == total
            assert all(name is None or c.name == name for c in items)
            assert all(status is None or c.status == status for c in items)
            return total

        assert count(None, None) == 5
        assert count("standup", None) == 3
        assert count(None, "completed") == 3
        assert count("standup", "completed") == 2
        assert count("retro", "in_progress") == 1
        assert count("retro", "init") == 0
        assert count("stand", None) == 0  # name is an exact match


def test_list_applications_pages_by_creation_and_filters_on_name(store: Store) -> None:
    acct = uid()
    names = ["Front desk", "Back office", "front line", "Sales 50%", "Sales 500", "Support_1", "SupportX1"]
    apps = [f.application(acct, application_name=n, created_at=NOW + i) for i, n in enumerate(names)]
    with store.transaction() as tx:
        for a in reversed(apps):
            tx.insert_application(a)
    with store.transaction() as tx:
        first, total = tx.list_applications(acct, 1, 4, None)
        second, total2 = tx.list_applications(acct, 2, 4, None)
        assert (total, total2) == (7, 7)
        assert first + second == apps

        def names_matching(fragment: str) -> list[str]:
            items, total = tx.list_applications(acct, 1, 50, fragment)
            assert len(items) == total
            return [a.application_name for a in items]

        assert names_matching("desk") == ["Front desk"]
        assert names_matching("ont ") == ["Front desk", "front line"]
        # LIKE wildcards in the filter are literal characters.
        assert names_matching("50%") == ["Sales 50%"]
        assert names_matching("t_1") == ["Support_1"]
        assert names_matching("nothing") == []


def test_application_name_filter_ignores_case(store: Store, request: pytest.FixtureRequest) -> None:
    """Telnyx: "applications with application_name containing the given value will be returned.
    Matching is not case-sensitive." SQLite's LIKE ignores ASCII case; PostgreSQL's LIKE does not."""
    acct = uid()
    with store.transaction() as tx:
        tx.insert_application(f.application(acct, application_name="Front Desk"))
    with store.transaction() as tx:
        assert [a.application_name for a in tx.list_applications(acct, 1, 50, "front desk")[0]] == ["Front Desk"]


def test_list_queues_pages(store: Store) -> None:
    acct = uid()
    queues = [f.queue(acct, name=f"q{i}", created_at=NOW + i) for i in range(5)]
    with store.transaction() as tx:
        for q in reversed(queues):
            tx.insert_queue(q)
    with store.transaction() as tx:
        assert tx.list_queues(acct, 1, 2) == (queues[:2], 5)
        assert tx.list_queues(acct, 3, 2) == (queues[4:], 5)


def test_participant_filters(store: Store) -> None:
    acct = uid()
    conf = f.conference(acct)
    other_conf = f.conference(acct, name="other")
    flags = [  # (muted, on_hold, role)
        (False, False, "none"),
        (True, False, "none"),
        (False, True, "whisper"),
        (True, True, "whisper"),
        (True, False, "barge"),
        (False, False, "monitor"),
    ]
    ps = [
        f.participant(acct, conf.id, muted=m, on_hold=h, supervisor_role=r, created_at=NOW + i, label=None)
        for i, (m, h, r) in enumerate(flags)
    ]
    with store.transaction() as tx:
        tx.insert_conference(conf)
        tx.insert_conference(other_conf)
        for p in ps:
            tx.insert_participant(p)
        tx.insert_participant(f.participant(acct, other_conf.id, muted=True))

    def indexes(filters: dict[str, bool]) -> list[int]:
        with store.transaction() as tx:
            items, total = tx.list_participants(conf.id, 1, 100, filters)
        assert len(items) == total
        return [ps.index(p) for p in items]

    assert indexes({}) == [0, 1, 2, 3, 4, 5]
    assert indexes({"muted": True}) == [1, 3, 4]
    assert indexes({"muted": False}) == [0, 2, 5]
    assert indexes({"on_hold": True}) == [2, 3]
    assert indexes({"on_hold": False}) == [0, 1, 4, 5]
    assert indexes({"whispering": True}) == [2, 3]
    assert indexes({"whispering": False}) == [0, 1, 4, 5]
    assert indexes({"muted": True, "on_hold": True}) == [3]
    assert indexes({"muted": True, "whispering": False}) == [1, 4]
    assert indexes({"muted": False, "on_hold": False, "whispering": False}) == [0, 5]

    with store.transaction() as tx:
        page2, total = tx.list_participants(conf.id, 2, 4, {})
    assert (page2, total) == (ps[4:], 6)


def test_queue_sizes(store: Store) -> None:
    acct = uid()
    q1, q2, empty = f.queue(acct, name="a"), f.queue(acct, name="b"), f.queue(acct, name="c")
    with store.transaction() as tx:
        for q in (q1, q2, empty):
            tx.insert_queue(q)
        for t in (NOW, NOW + 1.5, NOW + 3.25):
            tx.insert_queue_entry(f.queue_entry(q1, enqueued_at=t))
        tx.insert_queue_entry(f.queue_entry(q2, enqueued_at=NOW + 0.5))
    with store.transaction() as tx:
        sizes = tx.queue_sizes([q1.id, q2.id, empty.id, uid()])
        assert tx.queue_sizes([]) == {}
        assert list(tx.queue_sizes([q2.id])) == [q2.id]
    assert set(sizes) == {q1.id, q2.id}  # queues without entries are absent, not (0, 0)
    count, total = sizes[q1.id]
    assert count == 3
    assert total == pytest.approx(3 * NOW + 4.75, abs=1e-6)
    count, total = sizes[q2.id]
    assert count == 1
    assert total == pytest.approx(NOW + 0.5, abs=1e-6)


def test_participant_flags_set_for_many_at_once(store: Store) -> None:
    acct = f.uid()
    conf = f.conference(acct)
    ps = [f.participant(acct, conf.id, call_control_id=f"v3:{i}", created_at=float(i), muted=False, on_hold=False,
                        hold_audio_url=None) for i in range(4)]
    with store.transaction() as tx:
        tx.insert_conference(conf)
        for p in ps:
            tx.insert_participant(p)
    with store.transaction() as tx:
        tx.set_participant_flags([ps[0].id, ps[2].id], {"muted": True, "updated_at": NOW + 7})
        tx.set_participant_flags([ps[2].id], {"on_hold": True, "hold_audio_url": "https://a.test/m.mp3",
                                              "hold_media_name": None, "updated_at": NOW + 8})
        tx.set_participant_flags([], {"muted": False, "updated_at": NOW + 9})
    with store.transaction() as tx:
        got = {m.call_control_id: m for m in tx.participants_of(conf.id)}
    assert [got[f"v3:{i}"].muted for i in range(4)] == [True, False, True, False]
    assert [got[f"v3:{i}"].on_hold for i in range(4)] == [False, False, True, False]
    assert got["v3:2"].hold_audio_url == "https://a.test/m.mp3"
    assert (got["v3:0"].updated_at, got["v3:1"].updated_at, got["v3:2"].updated_at) == (NOW + 7, ps[1].updated_at,
                                                                                       NOW + 8)


def test_participant_flags_leave_those_who_left_as_they_left(store: Store) -> None:
    acct = f.uid()
    conf = f.conference(acct)
    stayed = f.participant(acct, conf.id, muted=False, status=ParticipantStatus.JOINED)
    left = f.participant(acct, conf.id, muted=False, status=ParticipantStatus.LEFT)
    with store.transaction() as tx:
        tx.insert_conference(conf)
        tx.insert_participant(stayed)
        tx.insert_participant(left)
    with store.transaction() as tx:  # ids checked before the one who left did so
        tx.set_participant_flags([stayed.id, left.id], {"muted": True, "updated_at": NOW + 5})
    with store.transaction() as tx:
        after = {p.id: p for p in tx.participants_of(conf.id, present_only=False)}
    assert after[stayed.id].muted is True and after[stayed.id].updated_at == NOW + 5
    assert after[left.id].muted is False and after[left.id].updated_at == left.updated_at
