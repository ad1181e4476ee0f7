"""A revoked API key stops working within a second on every node of its database, revoked by ``callroom
keys revoke`` (a process of its own, as an operator runs it): on a node's SQLite database, and on two nodes
sharing PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from callroom.api.keys import KeyCache
from tests.support.node import NodeThread
from tests.support.postgres import fresh_database
from tests.support.process import run_cli

REFUSED_WITHIN_SECS = 3.0  # a generous bound on the one second the node allows itself


def _status(node: NodeThread, key: str) -> int:
    return httpx.get(f"{node.base_url}/conferences", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code


def _revoke(database_url: str, key: str) -> None:
    out = run_cli("--database-url", database_url, "keys", "revoke", key[:10])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("revoked ")


def _refused_soon(nodes: list[NodeThread], key: str) -> None:
    deadline = time.monotonic() + REFUSED_WITHIN_SECS
    waiting = list(nodes)
    while waiting:
        waiting = [n for n in waiting if _status(n, key) != 401]
        assert not waiting or time.monotonic() < deadline, "a revoked key still works"
        time.sleep(0.05)


def test_revoked_on_a_sqlite_node(node: NodeThread) -> None:
    key, other = node.new_key("revoked-soon"), node.new_key("revoked-soon")
    assert _status(node, key) == 200 and _status(node, other) == 200  # both cached now
    _revoke(node.node.config.database_url, key)
    _refused_soon([node], key)
    assert _status(node, other) == 200


@pytest.mark.postgres
def test_revoked_on_every_node_of_a_shared_database(tmp_path: Path) -> None:
    with fresh_database() as url:
        nodes = [NodeThread(url, tmp_path / name, node_id=name) for name in ("a", "b")]
        try:
            key = nodes[0].new_key("shared")
            assert [_status(n, key) for n in nodes] == [200, 200]
            _revoke(url, key)
            _refused_soon(nodes, key)
        finally:
            for n in nodes:
                n.stop()


def test_a_cached_answer_is_not_used_past_a_new_generation() -> None:
    cache = KeyCache()
    assert cache.due(100.0) and not cache.due(100.5) and cache.due(101.0)
    cache.saw("g1")
    cache.put("KEYa", "acct", "g1")
    assert cache.get("KEYa") == (True, "acct")
    # Read before a revocation, stored after the node saw it: never used.
    cache.put("KEYb", "acct", "g1")
    cache.saw("g2")
    assert cache.get("KEYa") == (False, None) and cache.get("KEYb") == (False, None)
    cache.put("KEYc", None, "g2")
    assert cache.get("KEYc") == (True, None)
