"""A seeded SIP fuzzer against a whole node: a few thousand mutated INVITE/ACK/BYE/CANCEL/OPTIONS/REGISTER
datagrams from captured messages, and afterwards the node must be as it was: the API answers, a normal SIPp
call works end to end, no call is left alive, the media process holds as many sockets as before and its
memory has settled, and the audio tick kept its schedule while the datagrams arrived. (``bench/sip_fuzz.py``
runs longer.)"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import telnyx

from callroom.model.messages import SipConfig
from tests.sip.fuzz import datagrams
from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver
from tests.support.sip_peer import open_fds
from tests.support.sipp import sipp
from tests.support.tenant import Tenant

pytestmark = pytest.mark.sip

SEED = 19
COUNT = 3000
RING_TIMEOUT = 2.0
BATCH = 500  # fuzzed datagrams per hostile period
# The CPU the media process may spend per hostile datagram beyond what it spends anyway (parsing, answering,
# the calls they ring): about five times what it spends with two busy loops on both cores besides the suite
# (0.17 ms per fuzzed datagram, 0.8 ms per costly one), far below what a slow path per datagram costs.
CPU_MS_PER_FUZZED = 1.0
CPU_MS_PER_COSTLY = 4.0


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


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Period:
    """What the media process did over a stretch of time: its ticks' lateness, the CPU it used, the SIP
    datagrams it handled, and how long the stretch lasted."""

    late_p50_ms: float
    ticks: int
    cpu_s: float
    handled: int
    seconds: float


def watch(node: NodeThread, send: Callable[[], int] | None, seconds: float = 0.0) -> Period:
    """A hostile period (``send`` sends datagrams and says how many; the period lasts until the node has
    handled them all or has handled none for half a second, at most 30 s) or a quiet one of ``seconds``.
    Periods are interleaved so that both see the same load on the machine: a busy machine makes ticks late
    whatever the node does, and only the difference is the hostile traffic's doing."""
    pid = node.media_pid
    received = node.media_stats(reset=True)["sip"]["received"]
    cpu, started = cpu_seconds(pid), time.monotonic()
    if send is None:
        time.sleep(seconds)
        stats = node.media_stats()
    else:
        sent = send()
        deadline = started + 30
        progress = (received, time.monotonic())
        while True:
            stats = node.media_stats()
            now = time.monotonic()
            if stats["sip"]["received"] != progress[0]:
                progress = (stats["sip"]["received"], now)
            if stats["sip"]["received"] - received >= sent or now - progress[1] > 0.5 or now > deadline:
                break
            time.sleep(0.02)
    return Period(late_p50_ms=stats["tick"].get("late_p50_ms", 0.0), ticks=int(stats["tick"]["ticks"]),
                  cpu_s=cpu_seconds(pid) - cpu, handled=stats["sip"]["received"] - received,
                  seconds=time.monotonic() - started)


def interleaved(node: NodeThread, batches: list[Callable[[], int]]) -> tuple[list[Period], list[Period]]:
    """Each batch sent in a hostile period, each followed by a quiet period as long."""
    hostile: list[Period] = []
    quiet: list[Period] = []
    for send in batches:
        hostile.append(watch(node, send))
        quiet.append(watch(node, None, hostile[-1].seconds))
    return hostile, quiet


def assert_unharmed(hostile: list[Period], quiet: list[Period], cpu_ms_per_datagram: float) -> None:
    """The tick kept its schedule while SIP was parsed on its loop: in the typical hostile period the
    typical tick was no more than one tick (20 ms) later than in the typical quiet period; and the media
    process spent at most ``cpu_ms_per_datagram`` of CPU on each hostile datagram beyond what it spends
    anyway. A slow path per datagram that waits shows in the first, one that computes in the second.

    Not the latest tick: on a machine whose cores are busy, a process that uses more CPU (parsing the
    hostile datagrams) waits longer for a core, and a tick now and then starts tens of ms late whatever
    the node does; the CPU it used is what the node controls, and is counted only while it runs."""
    figures = f"hostile {hostile}, quiet {quiet}"
    assert all(p.ticks > 0 for p in hostile + quiet), figures
    typical_hostile = statistics.median(p.late_p50_ms for p in hostile)
    typical_quiet = statistics.median(p.late_p50_ms for p in quiet)
    assert typical_hostile < typical_quiet + 20, figures
    handled = sum(p.handled for p in hostile)
    extra_cpu = sum(p.cpu_s for p in hostile) - sum(p.cpu_s for p in quiet)
    assert extra_cpu * 1000 / handled < cpu_ms_per_datagram, figures


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
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    target = ("127.0.0.1", fuzz_node.sip_port)
    fuzzed = datagrams(SEED, COUNT, tenant.connection_id)

    def send_batch() -> int:
        sent = 0
        for i, data in enumerate(itertools.islice(fuzzed, BATCH)):
            with contextlib.suppress(BlockingIOError):
                sock.sendto(data[:65000], target)
                sent += 1
            if i % 50 == 49:  # ~2,500 datagrams/s
                time.sleep(0.02)
                with contextlib.suppress(BlockingIOError):
                    while True:  # the node's answers: read and dropped
                        sock.recv(65535)
        return sent

    hostile, quiet = interleaved(fuzz_node, [send_batch] * (COUNT // BATCH))
    sock.close()
    assert_unharmed(hostile, quiet, cpu_ms_per_datagram=CPU_MS_PER_FUZZED)
    assert sum(p.handled for p in hostile) > COUNT * 0.9, hostile

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
    burst = itertools.count()

    def send_burst() -> int:
        for _ in range(100):
            i = next(burst)
            extra = f"Via: {vias}\r\n" if i % 2 else routes
            sock.sendto((f"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKb{i}\r\n"
                         f"From: <sip:a@127.0.0.1>;tag={i}\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: burst-{i}\r\n"
                         f"CSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n").encode()[:65000], target)  # fmt: skip
        return 100

    hostile, quiet = interleaved(fuzz_node, [send_burst] * 5)
    sock.close()
    assert_unharmed(hostile, quiet, cpu_ms_per_datagram=CPU_MS_PER_COSTLY)
    # a few of the largest may not fit in the socket's buffer
    assert sum(p.handled for p in hostile) >= 400, hostile
