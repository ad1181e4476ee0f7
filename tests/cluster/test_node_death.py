"""Two node processes sharing one PostgreSQL database; one is killed (``kill -9``) while its webhooks cannot
be delivered. Within 10 s the survivor ends the dead node's calls (``call.hangup``) and delivers its pending
webhooks, each call's in order; the survivor's own calls go on; ``/v2/cluster`` shows who is dead."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
import telnyx

from tests.support.node import free_port
from tests.support.process import kill_hard, serve
from tests.support.receiver import Received, WebhookReceiver

pytestmark = pytest.mark.postgres


def _answered(base: str, key: str, cid: str) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/calls/{cid}", headers={"Authorization": f"Bearer {key}"}).json()["data"][
            "state"] == "ringing":  # fmt: skip
        assert time.monotonic() < deadline, f"{cid} was not answered"
        time.sleep(0.02)


def _firsts(arrived: list[Received]) -> list[Received]:
    seen: set[str] = set()
    out = []
    for r in arrived:
        if r.json["data"]["id"] not in seen:
            seen.add(r.json["data"]["id"])
            out.append(r)
    return out


def test_a_dead_nodes_calls_end_and_its_webhooks_arrive(tmp_path: Path, receiver: WebhookReceiver,
                                                        cluster_db: str) -> None:  # fmt: skip
    path = f"/cluster/{uuid.uuid4().hex}"
    refusing = True
    receiver.status_for = lambda p: 503 if p == path and refusing else 200
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    port_a, port_b = free_port(), free_port()
    base_a, base_b = f"http://127.0.0.1:{port_a}/v2", f"http://127.0.0.1:{port_b}/v2"
    common = ("--sip-port", "0")
    with serve(tmp_path / "b", port_b, *common, "--node-id", "node-b", database_url=cluster_db):
        with serve(tmp_path / "a", port_a, *common, "--node-id", "node-a", database_url=cluster_db) as node_a:
            key = (tmp_path / "b" / "initial-api-key").read_text().strip()  # the first node made the key
            headers = {"Authorization": f"Bearer {key}"}
            client_a = telnyx.Telnyx(api_key=key, base_url=base_a, max_retries=0)
            client_b = telnyx.Telnyx(api_key=key, base_url=base_b, max_retries=0)
            app = client_a.call_control_applications.create(application_name="cluster",
                                                            webhook_event_url=receiver.url(path))
            assert app.data is not None and app.data.id
            on_a = []
            for i in range(3):
                resp = client_a.calls.dial(connection_id=app.data.id, from_="+1", to=f"virtual:a{i};answer_after=0")
                assert resp.data is not None
                on_a.append(resp.data.call_control_id)
            resp = client_b.calls.dial(connection_id=app.data.id, from_="+1", to="virtual:b;answer_after=0")
            assert resp.data is not None
            on_b = resp.data.call_control_id
            for cid in on_a:
                _answered(base_a, key, cid)
            _answered(base_b, key, on_b)
            kill_hard(node_a)  # its webhooks are pending: the receiver refused every attempt
        killed_at = time.monotonic()
        refusing = False

        def ours(r: Received) -> bool:
            return r.path == path and r.status == 200

        for cid in on_a:
            hangup = receiver.wait_for(lambda r, cid=cid: ours(r) and r.event_type == "call.hangup"  # type: ignore[misc]
                                       and r.payload["call_control_id"] == cid, timeout=20)[0]
            assert hangup.payload["hangup_source"] == "unknown"
        assert time.monotonic() - killed_at < 10 + 2  # within 10 s (and the receiver's own pace)
        arrived = [r for r in receiver.delivered(path) if r.status == 200]
        for cid in on_a:  # the dead node's pending events, then the survivor's hangup: in order
            firsts = _firsts([r for r in arrived if r.payload.get("call_control_id") == cid])
            assert [r.payload["call_sequence"] for r in firsts] == list(range(1, len(firsts) + 1))
            assert [r.event_type for r in firsts] == ["call.initiated", "call.answered", "call.hangup"]
        # The survivor's call goes on; the cluster says who is dead and who reaped it.
        assert httpx.get(f"{base_b}/calls/{on_b}", headers=headers).json()["data"]["is_alive"] is True
        nodes = {n["node_id"]: n for n in httpx.get(f"{base_b}/cluster", headers=headers).json()["data"]["nodes"]}
        assert (nodes["node-a"]["health"], nodes["node-a"]["reaped_by"]) == ("dead", "node-b")
        assert nodes["node-b"]["health"] == "up" and nodes["node-b"]["live_calls"] == 1
