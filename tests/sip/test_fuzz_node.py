"""A seeded SIP fuzzer against a whole node: a few thousand mutated INVITE/ACK/BYE/CANCEL/OPTIONS/REGISTER
datagrams from captured messages, and afterwards the node must be as it was: the API answers, a normal SIPp
call works end to end, no call is left alive, the media process holds as many sockets as before and its
memory has settled, and the audio tick kept its schedule while the datagrams arrived. (``bench/sip_fuzz.py``
runs longer.)"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import telnyx

from callroom.model.messages import SipConfig
from tests.sip.fuzz import datagrams
from tests.sip.test_node_sip import sipp
from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver
from tests.support.sip_peer import open_fds
from tests.support.tenant import Tenant

pytestmark = pytest.mark.sip

SEED = 19
COUNT = 3000
RING_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    node = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir, sip=SipConfig(port=0),
                      ring_timeout_secs=RING_TIMEOUT)
    yield node
    node.stop()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_fuzzed_datagrams_leave_the_node_as_it_was(fuzz_node: NodeThread, receiver: WebhookReceiver,
                                                   tmp_path: Path) -> None:  # fmt: skip
    name = f"acct-{uuid.uuid4().hex[:10]}"
    key = fuzz_node.new_key(name)
    client = telnyx.Telnyx(api_key=key, base_url=fuzz_node.base_url, public_key=fuzz_node.public_key,
                           max_retries=0)
    app = client.call_control_applications.create(application_name=name,
                                                  webhook_event_url=receiver.url(f"/hooks/{name}"))
    assert app.data is not None and app.data.id
    tenant = Tenant(client=client, node=fuzz_node, receiver=receiver, api_key=key, path=f"/hooks/{name}",
                    connection_id=app.data.id)
    pid = fuzz_node.media_pid
    fds, rss = open_fds(pid), rss_kb(pid)
    fuzz_node.media_stats(reset=True)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    target = ("127.0.0.1", fuzz_node.sip_port)
    for i, data in enumerate(datagrams(SEED, COUNT, tenant.connection_id)):
        with contextlib.suppress(BlockingIOError):
            sock.sendto(data[:65000], target)
        if i % 50 == 49:  # ~2,500 datagrams/s, bounded
            time.sleep(0.02)
            with contextlib.suppress(BlockingIOError):
                while True:  # the node's answers: read and dropped
                    sock.recv(65535)
    during = fuzz_node.media_stats()
    sock.close()

    # The tick kept its 20 ms schedule while SIP was being parsed on the same loop (one tick late at worst).
    assert during["tick"]["ticks"] > 0 and during["tick"]["late_p99_ms"] < 20, during
    assert during["sip"]["received"] > COUNT * 0.9, during
    # The API answers, and every call the fuzzer made ring for the application ends (480 after the ring time).
    assert client.call_control_applications.retrieve(app.data.id).data is not None
    deadline = time.monotonic() + RING_TIMEOUT + 10
    while time.monotonic() < deadline:
        stats = fuzz_node.media_stats()
        if stats["sip"]["calls"] == 0 and stats["sip"]["legs"] == 0 and stats["legs"] == 0:
            break
        time.sleep(0.5)
    assert stats["sip"]["calls"] == 0 and stats["sip"]["legs"] == 0 and stats["legs"] == 0, stats
    with fuzz_node.node.store.transaction() as tx:
        assert tx.live_calls_of_node(fuzz_node.node.node_id) == []  # and none is alive for the control plane

    # A normal call still goes end to end.
    launched = time.time()
    command = [sipp(), "-sn", "uac", "-s", tenant.connection_id, f"127.0.0.1:{fuzz_node.sip_port}", "-m", "1",
               "-d", "500", "-i", "127.0.0.1", "-p", "0", "-nostdin", "-timeout", "20s", "-timeout_error"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    initiated = receiver.wait_for(lambda r: r.path == tenant.path and r.event_type == "call.initiated"
                                  and r.at >= launched, timeout=10)[0]
    client.calls.actions.answer(initiated.payload["call_control_id"])
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    tenant.event("call.hangup", initiated.payload["call_control_id"])

    # No socket left open, and the memory the burst took has settled.
    assert open_fds(pid) <= fds
    assert rss_kb(pid) - rss < 30_000


def test_a_burst_of_costly_datagrams_does_not_hold_up_the_tick(fuzz_node: NodeThread) -> None:
    """The costliest datagrams there are: 58 kB of 1,300 Via values (refused unread past the limits) and the
    largest that is still read in full (128 Record-Route values). SIP runs on the loop that runs the 20 ms
    audio tick, in slices, so a burst of them delays a tick by a slice at most."""
    vias = ", ".join(f"SIP/2.0/UDP 10.0.{i // 250}.{i % 250}:5060;branch=z9hG4bK{i}" for i in range(1300))
    routes = "".join(f"Record-Route: <sip:10.0.0.{i % 250};lr>\r\n" for i in range(115))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    target = ("127.0.0.1", fuzz_node.sip_port)
    fuzz_node.media_stats(reset=True)
    time.sleep(0.2)
    for i in range(300):
        extra = f"Via: {vias}\r\n" if i % 2 else routes
        sock.sendto((f"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKb{i}\r\n"
                     f"From: <sip:a@127.0.0.1>;tag={i}\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: burst-{i}\r\n"
                     f"CSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n").encode()[:65000], target)  # fmt: skip
    time.sleep(1.0)
    stats = fuzz_node.media_stats()
    sock.close()
    assert stats["tick"]["late_max_ms"] < 20, stats["tick"]
    assert stats["sip"]["received"] >= 200  # a few of the largest may not fit in the socket's buffer
