"""``scripts/cluster up --nodes 2 --json`` for real: two ``callroom serve`` processes on one PostgreSQL
database behind Kamailio. The JSON's shape, one API key for every node, SIPp calls through Kamailio that
reach a node and end from either side, a ``kill -9`` of a node that the OPTIONS probes notice (new calls
then go to the survivor), the refusals of ``up``, and ``down`` leaving no process behind.

The tests run in this file's order, on one cluster: the kill comes after the calls, ``down`` last."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
import soundfile
import telnyx

from callroom.cluster_procs import group_members
from callroom.devcluster import ClusterState, proxy_view
from tests.cluster.support import CALLER_HANGS_UP, NODE_HANGS_UP, ROOT, Sipp, call_invite, kamailio, need
from tests.media.audio import tone_level
from tests.support.node import free_port
from tests.support.receiver import WebhookReceiver
from tests.support.sipp import sipp

pytestmark = [pytest.mark.cluster, pytest.mark.sip, pytest.mark.postgres]

PG_URL = os.environ.get("CALLROOM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS = ("127.0.0.1", 4222)


def run(run_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``scripts/cluster --run-dir <run_dir> ...``, run by this test's Python (it has callroom's packages)."""
    env = {**os.environ, "CALLROOM_PYTHON": sys.executable}
    return subprocess.run([str(ROOT / "scripts" / "cluster"), "--run-dir", str(run_dir), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class Cluster:
    info: dict[str, Any]
    run_dir: Path
    database: str

    @property
    def nodes(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = self.info["nodes"]
        return nodes

    def client(self, node: dict[str, Any], key: str | None = None) -> telnyx.Telnyx:
        return telnyx.Telnyx(api_key=key or self.info["api_key"], base_url=node["api"],
                             public_key=self.info["public_key"], max_retries=0)

    def owner(self, call_control_id: str) -> dict[str, Any]:
        """The node hosting a call's media, from the call's record (commands may reach any node: the bus
        takes each instruction to this one)."""
        with psycopg.connect(self.info["database_url"]) as conn:
            row = conn.execute("SELECT node_id FROM calls WHERE call_control_id = %s", (call_control_id,)).fetchone()
        assert row is not None, call_control_id
        return next(n for n in self.nodes if n["node_id"] == row[0])

    def state(self) -> ClusterState:
        return ClusterState.from_json(self.info)


def _reachable(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(addr, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kamailio()
    sipp()
    need("PostgreSQL", "yes" if _reachable(("127.0.0.1", 5432)) else None, "scripts/services starts it")
    need("NATS", "yes" if _reachable(NATS) else None, "nats-server -js on 127.0.0.1:4222")
    run_dir = tmp_path_factory.mktemp("cluster")
    database = f"callroom_cluster_test_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    out = run(run_dir, "up", "--nodes", "2", "--json", "--api-port", "0", "--sip-port", "0", "--proxy-port", "0",
              "--rtp-base", "46000", "--rtp-span", "500", "--pg-url", PG_URL, "--database", database, "--fresh",
              "--log-level", "warning")
    assert out.returncode == 0, out.stderr
    print(f"scripts/cluster up: {time.monotonic() - started:.1f} s", file=sys.stderr)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout  # one JSON object and nothing else on stdout
    try:
        yield Cluster(json.loads(lines[0]), run_dir, database)
    finally:
        run(run_dir, "down")
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def app(cluster: Cluster, receiver: WebhookReceiver) -> tuple[str, str]:
    """A new application (created through node 1) whose webhooks go to ``receiver``: (connection_id, path)."""
    path = f"/cluster/{uuid.uuid4().hex[:8]}"
    created = cluster.client(cluster.nodes[0]).call_control_applications.create(
        application_name=path, webhook_event_url=receiver.url(path))
    assert created.data is not None and created.data.id
    return created.data.id, path


def incoming(receiver: WebhookReceiver, path: str, count: int = 1, *, caller: Sipp | None = None,
             cluster: Cluster | None = None) -> list[str]:
    """The ids of the first ``count`` calls ``path``'s application was told of. If they do not come, the
    failure says what the caller was answered and what Kamailio and the nodes logged last."""
    try:
        got = receiver.wait_for(lambda r: r.path == path and r.event_type == "call.initiated", timeout=15,
                                count=count)  # fmt: skip
    except AssertionError:
        lines = [f"no call.initiated for {path} within 15 s"]
        if caller is not None:
            lines += ["the caller's SIP messages (first lines):", *(m.splitlines()[0] for m in caller.messages())]
        if cluster is not None:
            for log in sorted(cluster.run_dir.glob("*/*.log")):
                lines += [f"-- the end of {log.relative_to(cluster.run_dir)}:",
                          *log.read_text(errors="replace").splitlines()[-15:]]
        raise AssertionError("\n".join(lines)) from None
    return [r.payload["call_control_id"] for r in got]


def test_up_prints_the_documented_shape(cluster: Cluster) -> None:
    info = cluster.info
    assert {"nodes", "sip_proxy", "api_key", "public_key"} <= set(info)
    assert len(cluster.nodes) == 2
    ids = [n["node_id"] for n in cluster.nodes]
    assert len(set(ids)) == 2 and all(isinstance(i, str) and i for i in ids)
    for node in cluster.nodes:
        assert {"node_id", "api", "sip", "pid"} <= set(node)
        assert node["api"].startswith("http://127.0.0.1:") and node["api"].endswith("/v2")
        host, port = node["sip"].rsplit(":", 1)
        assert host == "127.0.0.1" and 0 < int(port) < 65536
        assert isinstance(node["pid"], int) and group_members(node["pid"]), "the node should be running"
    assert len({n["api"] for n in cluster.nodes}) == 2 and len({n["sip"] for n in cluster.nodes}) == 2
    host, port = info["sip_proxy"].rsplit(":", 1)
    assert host == "127.0.0.1" and f"{host}:{port}" not in {n["sip"] for n in cluster.nodes}
    assert info["api_key"].startswith("KEY")
    assert len(base64.b64decode(info["public_key"])) == 32  # an Ed25519 public key


def test_every_node_answers_with_the_same_key(cluster: Cluster) -> None:
    first = cluster.client(cluster.nodes[0])
    made = first.call_control_applications.create(application_name="seen-everywhere",
                                                  webhook_event_url="https://example.com/hooks")
    assert made.data is not None and made.data.id
    for node in cluster.nodes:
        client = cluster.client(node)
        got = client.call_control_applications.retrieve(made.data.id)  # one database behind every node
        assert got.data is not None and got.data.application_name == "seen-everywhere"
        key = httpx.get(f"{node['api']}/public_key", headers={"Authorization": f"Bearer {cluster.info['api_key']}"})
        assert key.status_code == 200 and key.json()["data"]["public_key"] == cluster.info["public_key"]
        with pytest.raises(telnyx.AuthenticationError):
            cluster.client(node, key="KEYnot-a-key").call_control_applications.list()


def test_status_shows_every_node_probed_and_active(cluster: Cluster) -> None:
    out = run(cluster.run_dir, "status", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["kamailio"]["alive"] is True
    assert [(n["alive"], n["proxy_state"]) for n in status["nodes"]] == [(True, "AP"), (True, "AP")]


def test_a_call_through_kamailio_ends_from_either_side(cluster: Cluster, receiver: WebhookReceiver,
                                                       app: tuple[str, str], tmp_path: Path) -> None:  # fmt: skip
    connection_id, path = app
    # The caller hangs up (answered through the node that does not carry the call: the bus takes it there).
    caller = call_invite(CALLER_HANGS_UP, connection_id, cluster.info["sip_proxy"], tmp_path / "a")
    [cid] = incoming(receiver, path, caller=caller, cluster=cluster)
    owner = cluster.owner(cid)
    cluster.client(next(n for n in cluster.nodes if n is not owner)).calls.actions.answer(cid)
    code, output = caller.wait()
    assert code == 0, output
    hangup = receiver.event("call.hangup", cid)
    assert hangup.payload["hangup_source"] == "caller"
    other = next(n for n in cluster.nodes if n is not owner)
    status = cluster.client(other).calls.retrieve_status(cid)  # the record is every node's
    assert status.data is not None and status.data.is_alive is False

    # The application hangs up, through the node that does not carry the call: the node's BYE goes through
    # Kamailio to the caller, and the leg's call_quality_stats come over the bus from the node that has them.
    caller = call_invite(NODE_HANGS_UP, connection_id, cluster.info["sip_proxy"], tmp_path / "b")
    cid = next(c for c in incoming(receiver, path, count=2, caller=caller, cluster=cluster) if c != cid)
    owner = cluster.owner(cid)
    cluster.client(owner).calls.actions.answer(cid)
    receiver.event("call.answered", cid)
    cluster.client(next(n for n in cluster.nodes if n is not owner)).calls.actions.hangup(cid)
    code, output = caller.wait()
    assert code == 0, output
    quality = receiver.event("call.hangup", cid).payload["call_quality_stats"]
    assert set(quality) >= {"inbound", "outbound"}, quality
    bye = next(m for m in caller.messages() if m.startswith("BYE "))
    assert f"Via: SIP/2.0/UDP {cluster.info['sip_proxy']};" in bye, bye


def test_a_sip_caller_in_a_conference_mixed_on_the_other_node(
        cluster: Cluster, receiver: WebhookReceiver, app: tuple[str, str], tmp_path: Path) -> None:  # fmt: skip
    """SIPp (echoing the audio it gets) calls through Kamailio and joins a conference a virtual phone on the
    other node created: the phone hears its own tone come back through the SIP caller, on the far node, and
    no longer once the caller is muted."""
    connection_id, path = app
    caller = Sipp("echo", NODE_HANGS_UP, ["-s", connection_id, cluster.info["sip_proxy"], "-m", "1", "-l", "1",
                                          "-mp", str(free_port() & ~1), "-rtp_echo"], tmp_path)  # fmt: skip
    [cid] = incoming(receiver, path, caller=caller, cluster=cluster)
    owner = cluster.owner(cid)
    other = next(n for n in cluster.nodes if n is not owner)
    here, there = cluster.client(owner), cluster.client(other)
    there.calls.actions.answer(cid)
    receiver.event("call.answered", cid)
    dialled = there.calls.dial(connection_id=connection_id, from_="+1555", to="virtual:talker;answer_after=0;tone=700")
    assert dialled.data is not None
    talker = dialled.data.call_control_id
    receiver.event("call.answered", talker)
    conf = there.conferences.create(call_control_id=talker, name=f"sip-{uuid.uuid4().hex[:8]}", comfort_noise=False)
    assert conf.data is not None
    here.conferences.actions.join(conf.data.id, call_control_id=cid)
    root = owner["api"].removesuffix("/v2")  # the phone lives on the other node: asked here, fetched there

    def echo() -> float:
        resp = httpx.get(f"{root}/virtual/calls/{talker}/heard.wav", params={"seconds": 0.4},
                         headers={"Authorization": f"Bearer {cluster.info['api_key']}"}, timeout=10)  # fmt: skip
        resp.raise_for_status()
        samples, _ = soundfile.read(io.BytesIO(resp.content), dtype="int16")
        return tone_level(np.asarray(samples, dtype=np.int16), 700)

    deadline = time.monotonic() + 5
    while echo() < 1000:
        assert time.monotonic() < deadline, "the phone's tone does not come back through the SIP caller"
        time.sleep(0.2)
    here.conferences.actions.mute(conf.data.id, call_control_ids=[cid])
    deadline = time.monotonic() + 5
    while echo() > 150:
        assert time.monotonic() < deadline, "the muted SIP caller is still heard"
        time.sleep(0.2)
    there.calls.actions.hangup(cid)
    code, output = caller.wait()
    assert code == 0, output
    there.calls.actions.hangup(talker)


def test_up_refuses_clearly(cluster: Cluster, tmp_path: Path) -> None:
    again = run(cluster.run_dir, "up", "--nodes", "1", "--json")
    assert again.returncode == 1 and "already up" in again.stderr and again.stdout == "", again.stderr

    proxy_port = cluster.info["sip_proxy"].rsplit(":", 1)[1]
    taken = run(tmp_path / "other", "up", "--nodes", "1", "--api-port", "0", "--sip-port", "0",
                "--proxy-port", proxy_port, "--pg-url", PG_URL)
    assert taken.returncode == 1 and f"ports in use: UDP 127.0.0.1:{proxy_port} (Kamailio)" in taken.stderr, \
        taken.stderr
    assert not (tmp_path / "other" / "state.json").exists()

    missing = run(tmp_path / "other", "up", "--nodes", "1", "--kamailio", "/nonexistent/kamailio")
    assert missing.returncode == 1 and "kamailio is not installed" in missing.stderr, missing.stderr


def test_a_killed_node_is_probed_down_and_new_calls_go_to_the_survivor(
        cluster: Cluster, receiver: WebhookReceiver, app: tuple[str, str], tmp_path: Path) -> None:  # fmt: skip
    dead, survivor = cluster.nodes
    os.kill(dead["pid"], signal.SIGKILL)
    dead_uri, live_uri = f"sip:{dead['sip']}", f"sip:{survivor['sip']}"
    deadline = time.monotonic() + 10  # a probe a second, each given a second to be answered
    while not (view := proxy_view(cluster.state())).get(dead_uri, "").startswith("I"):
        assert time.monotonic() < deadline, f"Kamailio still sees {dead_uri} as {view.get(dead_uri)}"
        time.sleep(0.2)
    assert view[live_uri] == "AP"
    log = Path(cluster.info["kamailio"]["log"]).read_text()
    assert f"node down (no answer to OPTIONS): {dead_uri}" in log, log

    connection_id, path = app
    calls = 3
    caller = call_invite(CALLER_HANGS_UP, connection_id, cluster.info["sip_proxy"], tmp_path, calls=calls)
    answered: list[str] = []
    client = cluster.client(survivor)
    while len(answered) < calls:
        for cid in incoming(receiver, path, count=len(answered) + 1, caller=caller, cluster=cluster):
            if cid not in answered:
                assert cluster.owner(cid)["node_id"] == survivor["node_id"]
                client.calls.actions.answer(cid)
                answered.append(cid)
    code, output = caller.wait()
    assert code == 0, output
    for cid in answered:
        receiver.event("call.hangup", cid)
    log = Path(cluster.info["kamailio"]["log"]).read_text()
    assert "did not answer INVITE" not in log, "no call should have been sent to the dead node"


def test_down_leaves_no_process_behind(cluster: Cluster) -> None:
    groups = [n["pid"] for n in cluster.nodes] + [cluster.info["kamailio"]["pid"]]
    out = run(cluster.run_dir, "down")
    assert out.returncode == 0, out.stderr
    assert "stopped" in out.stderr
    assert {pid: group_members(pid) for pid in groups} == {pid: [] for pid in groups}
    assert not (cluster.run_dir / "state.json").exists()
    status = run(cluster.run_dir, "status")
    assert status.returncode == 1 and "no cluster is up" in status.stderr
