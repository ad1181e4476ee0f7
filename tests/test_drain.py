"""A node stops without losing work (``callroom/drain.py``), tried on a real node process as a service
manager or a terminal stops it: SIGTERM or Ctrl-C to its process group. It takes no new calls, lets the
calls in progress finish within its grace period, hangs up the rest with their webhooks, saves the
recordings under way, and exits 0 with one line and no traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import telnyx

from tests.support.node import free_port
from tests.support.process import ROOT, serve
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import NodeAt, Tenant


def _tenant(tmp_path: Path, port: int, receiver: WebhookReceiver, path: str) -> Tenant:
    key = (tmp_path / "initial-api-key").read_text().strip()
    node = NodeAt(port)
    client = telnyx.Telnyx(api_key=key, base_url=node.base_url, max_retries=0)
    app = client.call_control_applications.create(application_name="drain", webhook_event_url=receiver.url(path))
    assert app.data is not None and app.data.id
    return Tenant(client, node, receiver, key, path, app.data.id)  # type: ignore[arg-type]  # (its URLs suffice)


def _refused_while_draining(tenant: Tenant) -> telnyx.APIStatusError:
    """Dial until the node refuses (the signal takes a moment to arrive): it answers, with 503."""
    deadline = time.monotonic() + 10
    while True:
        try:
            resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+1", to="virtual:late")
        except telnyx.APIStatusError as exc:
            return exc
        assert resp.data is not None
        tenant.client.calls.actions.hangup(resp.data.call_control_id)
        assert time.monotonic() < deadline, "the node never began to drain"
        time.sleep(0.05)


def _options(sip_port: int) -> bytes:
    """What the node answers to an OPTIONS, as a proxy's probe sends it."""
    tag = uuid.uuid4().hex  # each probe a transaction of its own (the same branch would be a retransmission)
    probe = (f"OPTIONS sip:probe@127.0.0.1:{sip_port} SIP/2.0\r\n"
             f"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK{tag}\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\n"
             f"To: <sip:probe@127.0.0.1>\r\nCall-ID: drain-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
             "Content-Length: 0\r\n\r\n").encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(probe, ("127.0.0.1", sip_port))
        return udp.recv(4096)


def _log(tmp_path: Path) -> str:
    return (tmp_path / "node.log").read_text()


def test_sigterm_lets_calls_finish_then_hangs_up_the_rest_and_saves_the_recording(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    port, sip_port = free_port(), free_port()
    with serve(tmp_path, port, "--sip-port", str(sip_port), drain_timeout=4) as proc:
        tenant = _tenant(tmp_path, port, receiver, "/drain")
        client = tenant.client
        a = tenant.dial("a", "answer_after=0;tone=440")
        b = tenant.dial("b", "answer_after=0;tone=660")
        leaving = tenant.dial("c", "answer_after=0")
        conf = client.conferences.create(call_control_id=a, name="drained")
        assert conf.data is not None
        client.conferences.actions.join(conf.data.id, call_control_id=b)
        tenant.event("conference.participant.joined", b)
        client.conferences.actions.record_start(conf.data.id, format="wav")
        time.sleep(1.0)  # a second of both tones in the recording

        os.killpg(proc.pid, signal.SIGTERM)
        refused = _refused_while_draining(tenant)
        assert refused.status_code == 503
        assert refused.body["errors"][0]["code"] == "90116"  # type: ignore[index]
        deadline = time.monotonic() + 5  # a proxy's probe: the node takes itself out of the proxy's set (once
        while not (probed := _options(sip_port)).startswith(b"SIP/2.0 503 "):  # its media process has heard)
            assert time.monotonic() < deadline, probed
            time.sleep(0.05)
        assert b"Retry-After: 4" in probed, probed
        # The API still steers the calls in progress, and a party may end its own call.
        assert client.conferences.retrieve(conf.data.id).data is not None
        tenant.phone_hangs_up(leaving)
        assert tenant.event("call.hangup", leaving).payload["hangup_source"] == "callee"
        assert proc.wait(30) == 0

    for cid in (a, b):
        hangup = tenant.event("call.hangup", cid)
        assert hangup.payload["hangup_cause"] == "normal_clearing"
    saved = tenant.event("conference.recording.saved", conference_id=conf.data.id)
    assert saved.payload["format"] == "wav"
    tenant.event("conference.ended", conference_id=conf.data.id)
    files = list((tmp_path / "files" / "recordings").rglob("*.wav"))  # the node's copy of the stored file
    assert len(files) == 1 and files[0].stat().st_size > 8000  # a second of 8 kHz audio at least
    log = _log(tmp_path)
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    said = "3 calls at the start, 1 ended in the grace period, 2 hung up by the node; 0 recordings not saved"
    assert said in log, log


def test_ctrl_c_twice_ends_the_grace_period_at_once(tmp_path: Path, receiver: WebhookReceiver) -> None:
    port = free_port()
    with serve(tmp_path, port, "--sip-port", "0", drain_timeout=600) as proc:
        tenant = _tenant(tmp_path, port, receiver, "/hurry")
        cid = tenant.dial("a", "answer_after=0")
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends it: to the node and its media process
        _refused_while_draining(tenant)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
    assert tenant.event("call.hangup", cid).payload["hangup_cause"] == "normal_clearing"
    log = _log(tmp_path)
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert "1 hung up by the node" in log, log


def test_callroom_drain_asks_a_running_node_to_drain_and_stop(tmp_path: Path, receiver: WebhookReceiver) -> None:
    port = free_port()
    with serve(tmp_path, port, "--sip-port", "0", "--node-id", "drained-node", drain_timeout=600) as proc:
        tenant = _tenant(tmp_path, port, receiver, "/asked")
        cid = tenant.dial("a", "answer_after=0")
        asked = subprocess.run(
            [sys.executable, "-m", "callroom.cli", "--data-dir", str(tmp_path), "drain", "drained-node", "--wait", "1"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        assert asked.returncode == 1 and "drains within a heartbeat" in asked.stdout, asked  # its call goes on
        refused = _refused_while_draining(tenant)
        assert refused.status_code == 503
        status = tenant.client.get("/cluster", cast_to=object)
        node = next(n for n in status["data"]["nodes"] if n["node_id"] == "drained-node")  # type: ignore[index]
        assert node["health"] == "draining" and node["live_calls"] == 1
        tenant.phone_hangs_up(cid)  # its last call ends: the node stops by itself
        assert proc.wait(30) == 0
    assert "0 hung up by the node" in _log(tmp_path)


def test_drain_of_an_unknown_node_says_so(tmp_path: Path) -> None:
    def drain(node_id: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "callroom.cli", "--data-dir", str(tmp_path), "drain", node_id],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    nowhere = drain("nobody")
    assert nowhere.returncode == 1 and "nothing was created" in nowhere.stderr  # no node's data here
    created = subprocess.run([sys.executable, "-m", "callroom.cli", "--data-dir", str(tmp_path), "keys", "create"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    unknown = drain("nobody")
    assert unknown.returncode == 1 and "no node 'nobody' is up" in unknown.stderr


