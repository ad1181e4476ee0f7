"""The nodes of a cluster as the store keeps them (``store/nodes.py``): heartbeats, the claim of a dead node
by one survivor, whose calls and conferences are then orphaned, and the cluster's name."""

from __future__ import annotations

from callroom.model.states import CallState, ConferenceStatus
from callroom.store import nodes
from callroom.store.engine import Store
from tests.store import factories as f
from tests.store.factories import NOW, uid


def _register(store: Store, *node_ids: str, at: float = NOW) -> None:
    with store.transaction() as tx:
        for node_id in node_ids:
            nodes.register(tx, node_id, at, api_url=None, sip_host=None, sip_port=None)


def test_a_silent_node_is_claimed_once_and_its_live_calls_and_conferences_orphaned(store: Store) -> None:
    acct = uid()
    _register(store, "a", "b", "c")
    live, ended = f.call(acct, node_id="a", state=CallState.PARKED), f.call(acct, node_id="a", state=CallState.ENDED)
    elsewhere = f.call(acct, node_id="b", state=CallState.PARKED)
    conf = f.conference(acct, node_id="a", status=ConferenceStatus.IN_PROGRESS)
    with store.transaction() as tx:
        for rec in (live, ended, elsewhere):
            tx.insert_call(rec)
        tx.insert_conference(conf)
        assert nodes.beat(tx, "b", NOW + 10, {"legs": 1}).alive
        assert nodes.beat(tx, "c", NOW + 10, {}).alive
    with store.transaction() as tx:
        assert nodes.claim_dead(tx, "b", NOW + 10, ttl=4) == ["a"]
        assert nodes.claim_dead(tx, "c", NOW + 10, ttl=4) == []  # one survivor per dead node
        assert nodes.statuses(tx) == {"a": nodes.DEAD, "b": nodes.UP, "c": nodes.UP}
        assert nodes.orphaned(tx, "b") == [(acct, live.call_control_id)]
        assert nodes.orphaned(tx, "c") == []  # b is up and reaps them
        assert nodes.homeless_conferences(tx) == [(acct, conf.id, "a")]
        assert not nodes.beat(tx, "a", NOW + 11, {}).alive  # a node declared dead is told so
        assert nodes.reaped_at(tx, "a") == NOW + 10


def test_a_stopped_nodes_calls_are_ended_by_any_survivor(store: Store) -> None:
    acct = uid()
    _register(store, "a", "b")
    live = f.call(acct, node_id="a", state=CallState.PARKED)
    with store.transaction() as tx:
        tx.insert_call(live)
        nodes.stopped(tx, "a", NOW + 1)
    with store.transaction() as tx:
        assert nodes.orphaned(tx, "b") == [(acct, live.call_control_id)]
        assert nodes.claim_dead(tx, "b", NOW + 100, ttl=4) == []  # a stopped node is not dead


def test_calls_the_cluster_ended_while_a_node_was_taken_for_dead(store: Store) -> None:
    acct = uid()
    before = f.call(acct, node_id="a", state=CallState.ENDED, ended_at=NOW - 5)
    after = f.call(acct, node_id="a", state=CallState.ENDED, ended_at=NOW + 5)
    with store.transaction() as tx:
        tx.insert_call(before)
        tx.insert_call(after)
        assert nodes.ended_by_the_cluster(tx, "a", NOW) == [after.call_control_id]


def test_every_node_of_a_database_gets_one_cluster_name(store: Store) -> None:
    with store.transaction() as tx:
        first = nodes.cluster_name(tx)
    with store.transaction() as tx:
        assert nodes.cluster_name(tx) == first
    assert len(first) == 12


def test_a_drained_node_hears_it_at_its_heartbeat_and_counts_what_it_waits_for(store: Store) -> None:
    from callroom.model.records import MediaJob
    from callroom.store import media_tx

    acct = uid()
    _register(store, "a", "b")
    live, other = f.call(acct, node_id="a", state=CallState.PARKED), f.call(acct, node_id="b", state=CallState.PARKED)
    conf = f.conference(acct, node_id="a", status=ConferenceStatus.IN_PROGRESS)
    elsewhere = f.conference(acct, node_id="b", status=ConferenceStatus.IN_PROGRESS, name="elsewhere")
    jobs = [MediaJob(id=uid(), account_id=acct, kind="record", scope="call", created_at=NOW, updated_at=NOW,
                     call_control_id=live.call_control_id, status="active"),
            MediaJob(id=uid(), account_id=acct, kind="record", scope="conference", created_at=NOW, updated_at=NOW,
                     conference_id=conf.id, status="active"),
            MediaJob(id=uid(), account_id=acct, kind="record", scope="conference", created_at=NOW, updated_at=NOW,
                     conference_id=elsewhere.id, status="active"),
            MediaJob(id=uid(), account_id=acct, kind="record", scope="call", created_at=NOW, updated_at=NOW,
                     call_control_id=live.call_control_id, status="done"),
            MediaJob(id=uid(), account_id=acct, kind="playback", scope="call", created_at=NOW, updated_at=NOW,
                     call_control_id=live.call_control_id, status="active")]  # fmt: skip
    with store.transaction() as tx:
        for rec in (live, other):
            tx.insert_call(rec)
        for c in (conf, elsewhere):
            tx.insert_conference(c)
        for job in jobs:
            media_tx.insert_job(tx, job)
    with store.transaction() as tx:
        assert nodes.beat(tx, "a", NOW + 1, {}).draining_since is None
        assert nodes.drain(tx, "a", NOW + 2)
        assert nodes.drain(tx, "a", NOW + 3)  # asked again: draining since the first time
        assert not nodes.drain(tx, "nobody", NOW + 3)
        assert nodes.beat(tx, "a", NOW + 4, {}) == nodes.Beat(alive=True, draining_since=NOW + 2)
        assert nodes.live_calls_of(tx, "a") == 1
        assert nodes.recordings_under_way(tx, "a") == 2  # its call's and its conference's, not b's
        assert nodes.beat(tx, "b", NOW + 5, {}).alive
        assert nodes.freshest_up(tx, NOW + 5, ttl=4) == "b"
        nodes.stopped(tx, "b", NOW + 6)
        assert nodes.freshest_up(tx, NOW + 6, ttl=4) == "a"
        assert nodes.freshest_up(tx, NOW + 60, ttl=4) is None  # a silent node is no heir
    _register(store, "a")  # started again: no longer draining
    with store.transaction() as tx:
        assert nodes.beat(tx, "a", NOW + 7, {}).draining_since is None
