"""A node's live calls (``ix_calls_live_node``, migration 0012): what the operations figures, the reaper, a
drain and a restart read each time. They are found among many ended calls, and on PostgreSQL through the
index of live calls, not by reading every call the node ever carried."""

from __future__ import annotations

from sqlalchemy import text

from callroom.model.states import CallState
from callroom.store import figures, nodes
from callroom.store.engine import Store
from tests.store import factories as f
from tests.store.factories import NOW, uid

ENDED_CALLS = 3000


def _carry(store: Store, node: str) -> tuple[str, list[str]]:
    """``ENDED_CALLS`` ended calls of ``node`` (as a long-running node has), three live ones, one elsewhere."""
    acct = uid()
    live = [f.call(acct, node_id=node, state=state)
            for state in (CallState.RINGING, CallState.PARKED, CallState.PARKED)]  # fmt: skip
    with store.transaction() as tx:
        for _ in range(ENDED_CALLS):
            tx.insert_call(f.call(acct, node_id=node, state=CallState.ENDED, ended_at=NOW))
        for call in live:
            tx.insert_call(call)
        tx.insert_call(f.call(acct, node_id="elsewhere", state=CallState.PARKED))
    return acct, [c.call_control_id for c in live]


def test_a_nodes_live_calls_among_its_ended_ones(store: Store) -> None:
    node = "n-" + uid()
    _, live = _carry(store, node)
    with store.transaction() as tx:
        assert figures.counts(tx, node).calls_by_state == {"ringing": 1, "parked": 2}
        assert nodes.live_calls_of(tx, node) == 3
        assert sorted(c.call_control_id for c in tx.live_calls_of_node(node)) == sorted(live)
        by_node = nodes.live_calls_by_node(tx)
        assert by_node[node] == 3 and by_node["elsewhere"] >= 1


def test_postgresql_finds_them_through_the_index_of_live_calls(postgres_store: Store) -> None:
    node = "n-" + uid()
    _carry(postgres_store, node)
    with postgres_store.transaction() as tx:
        tx.conn.execute(text("ANALYZE calls"))
        plan = "\n".join(str(row[0]) for row in tx.conn.execute(text(
            "EXPLAIN SELECT state, count(*) FROM calls WHERE node_id = :node AND ended_at IS NULL "
            "AND state != 'ended' GROUP BY state"), {"node": node}))
    assert "ix_calls_live_node" in plan, plan


def test_an_accounts_active_calls_are_read_from_the_live_ones(postgres_store: Store) -> None:
    acct, live = _carry(postgres_store, "n-" + uid())
    conn = "1293384261075731499"  # the factory's connection
    with postgres_store.transaction() as tx:
        calls, total = tx.list_active_calls(acct, conn, 1, 20)
        assert total == 4 and set(live) < {c.call_control_id for c in calls}  # (and the one elsewhere)
        tx.conn.execute(text("ANALYZE calls"))
        plan = "\n".join(str(row[0]) for row in tx.conn.execute(text(
            "EXPLAIN SELECT * FROM calls WHERE account_id = :acct AND connection_id = :conn AND ended_at IS NULL "
            "AND state != 'ended' ORDER BY created_at, call_control_id"), {"acct": acct, "conn": conn}))
    assert "ix_calls_live_node" in plan, plan
