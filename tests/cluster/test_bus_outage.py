"""A node cut off from the cluster's bus while it still reaches the database (``Membership``): it stops
beating, the cluster takes it for dead and ends its calls with their webhooks, the rest goes on; back on
the bus, it registers again and carries calls across nodes as before."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.cluster import NATS_URL, Cluster, running_cluster
from tests.support.receiver import WebhookReceiver
from tests.support.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.postgres


def _health(cluster: Cluster, asked: int, node_id: str) -> str:
    resp = httpx.get(f"{cluster.roots[asked]}/v2/cluster", headers=cluster.headers, timeout=5)
    resp.raise_for_status()
    return str(next(n["health"] for n in resp.json()["data"]["nodes"] if n["node_id"] == node_id))


def test_a_node_cut_off_from_the_bus_is_taken_for_dead_then_joins_again(
        tmp_path: Path, receiver: WebhookReceiver, cluster_db: str) -> None:  # fmt: skip
    bus = urlsplit(NATS_URL)
    with tcp_proxy(bus.hostname or "127.0.0.1", bus.port or 4222) as link, running_cluster(
        tmp_path, cluster_db, receiver, 2, nats_urls=[NATS_URL, f"nats://127.0.0.1:{link.port}"]
    ) as duo:
        stays = duo.dial(0, "stays")
        carried = duo.dial(1, "carried")  # its leg lives on n1

        link.cut()
        hangup = duo.event("call.hangup", carried, timeout=20)  # ended by n0, which took n1 for dead
        assert hangup.payload["hangup_source"] == "unknown"
        assert _health(duo, 0, "n1") == "dead"
        status = duo.client(1).calls.retrieve_status(carried)  # n1's API answers all along
        assert status.data is not None and status.data.is_alive is False
        still = duo.client(0).calls.retrieve_status(stays)
        assert still.data is not None and still.data.is_alive is True

        link.mend()
        deadline = time.monotonic() + 20
        while _health(duo, 0, "n1") != "up":
            assert time.monotonic() < deadline, "n1 did not join again"
            time.sleep(0.2)
        again = duo.dial(1, "again")
        duo.client(0).calls.actions.hangup(again)  # n0 has n1 end its leg, over the bus
        assert duo.event("call.hangup", again).payload["hangup_source"] == "caller"
        assert "call.hangup" not in [r.event_type for r in duo.events(stays)]
