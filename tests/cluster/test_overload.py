"""Two nodes behind Kamailio with the shipped configuration, one of them full (``--max-calls 1`` and a call up):
every SIP call through the front door lands on the other node, those that Kamailio sent to the full one after
its 503 (failover), and the full node counts the refusals."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.cluster.support import CALLER_HANGS_UP, call_invite, front_door
from tests.support.cluster import Cluster, running_cluster
from tests.support.receiver import WebhookReceiver

pytestmark = [pytest.mark.cluster, pytest.mark.sip, pytest.mark.postgres]


def refused_calls(cluster: Cluster, node: int) -> int:
    """INVITEs the node refused, for any reason: a full node refuses for its calls, or, on a loaded machine, for
    its media tick's lateness if that is checked first."""
    metrics = httpx.get(cluster.roots[node] + "/metrics", timeout=5).text
    found = re.findall(r'^callroom_calls_refused_total\{via="sip",reason="[a-z_]+"\} (\d+)$', metrics, re.MULTILINE)
    return sum(int(n) for n in found)


def sip_address(cluster: Cluster, node: int) -> str:
    """A node's SIP address as its heartbeat published it (the nodes took any free port)."""
    deadline = time.monotonic() + 10
    while True:
        nodes = httpx.get(cluster.roots[0] + "/v2/cluster", headers=cluster.headers, timeout=5).json()["data"]["nodes"]
        sip = next((n["sip"] for n in nodes if n["node_id"] == cluster.node_ids[node]), None)
        if sip:
            return str(sip)
        assert time.monotonic() < deadline, nodes
        time.sleep(0.2)


def test_calls_through_the_front_door_fail_over_from_a_full_node_to_one_with_room(
        cluster_db: str, tmp_path: Path) -> None:  # fmt: skip
    receiver = WebhookReceiver()
    try:
        with running_cluster(tmp_path / "nodes", cluster_db, receiver, 2, "--sip-port", "0", "--max-calls", "1") as duo:
            full = duo.dial(0, "filler")  # node n0's one call
            deadline = time.monotonic() + 10
            # The nodes in turn (dispatcher algorithm 4), not by a hash of the Call-ID as shipped: SIPp's Call-IDs
            # differ in a few digits only, and twelve of them once all hashed to the node with room.
            with front_door(tmp_path / "kamailio", [f"sip:{sip_address(duo, i)} 0 0" for i in (0, 1)],
                            DS_ALGORITHM='"4"') as proxy:  # fmt: skip
                landed = []
                # Call until one was sent to the full node (its 503 passed over): the first or the second.
                for i in range(12):
                    caller = call_invite(CALLER_HANGS_UP, duo.connection_id, proxy.address, tmp_path / f"c{i}")
                    initiated = receiver.wait_for(lambda r: r.path == duo.path and r.event_type == "call.initiated"
                                                  and r.payload["direction"] == "incoming"
                                                  and r.payload["call_control_id"] not in landed, timeout=15)[0]
                    cid = initiated.payload["call_control_id"]
                    landed.append(cid)
                    duo.client(1).calls.actions.answer(cid)
                    code, output = caller.wait()
                    assert code == 0, output
                    duo.event("call.hangup", cid)
                    if refused_calls(duo, 0) >= 1:
                        break
                    assert time.monotonic() < deadline + 60
                assert refused_calls(duo, 0) >= 1, "no call was sent to the full node"
                assert refused_calls(duo, 1) == 0
                # Every call went to n1, and the full node's call kept going.
                with psycopg.connect(cluster_db.replace("+psycopg", "")) as conn:
                    rows = conn.execute("SELECT node_id FROM calls WHERE call_control_id = ANY(%s)",
                                        (landed,)).fetchall()  # fmt: skip
                assert [r[0] for r in rows] == ["n1"] * len(landed)
                status = duo.client(0).calls.retrieve_status(full)
                assert status.data is not None and status.data.is_alive is True
    finally:
        receiver.close()
