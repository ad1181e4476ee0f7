"""What the cluster tests share: Kamailio with the shipped configuration, SIPp scenarios that follow a
record-routing proxy, and a SIPp runner that keeps its message trace."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from callroom.cluster_procs import sip_options
from callroom.devcluster import kamailio_binary
from tests.support.node import free_port
from tests.support.sipp import SippProcess

ROOT = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"


def need(tool: str, found: str | None, install: str) -> str:
    """``found``, or a loud failure in CI (a missing tool must never pass as a skip there), a skip elsewhere."""
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed ({install})", pytrace=False)
        pytest.skip(f"{tool} is not installed ({install})")
    return found


def kamailio() -> str:
    return need("kamailio", kamailio_binary(), "scripts/setup --system installs it")


# ---- SIPp scenarios ---------------------------------------------------------------------------------------
# A caller behind a proxy: the 200's Record-Route set is kept (rrs) and the ACK and BYE carry it as Route
# headers ([routes]) with the node's Contact as Request-URI ([next_url]); SIPp sends everything to the proxy.

# The INVITE SIPp sends (a PCMU offer), shared with bench/cluster/setup_rate.py.
INVITE_MESSAGE = """INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

"""

_INVITE = f"""  <send retrans="500"><![CDATA[
{INVITE_MESSAGE}]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
"""

_IN_DIALOG = """  <send{retrans}><![CDATA[
{method} [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} {method}
Max-Forwards: 70
Content-Length: 0

]]></send>
"""

_ANSWER_BYE = """  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"""


def _scenario(name: str, *steps: str) -> str:
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n{"".join(steps)}</scenario>\n'


ACK = _IN_DIALOG.format(method="ACK", cseq=1, retrans="")

CALLER_HANGS_UP = _scenario(
    "call through the proxy; the caller hangs up",
    _INVITE, ACK, '  <pause milliseconds="500"/>\n', _IN_DIALOG.format(method="BYE", cseq=2, retrans=' retrans="500"'),
    '  <recv response="200" crlf="true"/>\n',
)

NODE_HANGS_UP = _scenario("call through the proxy; the node hangs up", _INVITE, ACK, _ANSWER_BYE)

# The caller gives up while the node rings: the CANCEL (the INVITE's Via, as the 180 brought it back) goes
# through the proxy's transaction to the node, and the 487 comes back, which the caller ACKs. (The proxy's
# 200 for the CANCEL and the node's 487 may cross: the proxy's processes handle them apart.)
CALLER_CANCELS = _scenario(
    "call through the proxy; the caller cancels while it rings",
    _INVITE.replace('  <recv response="180" optional="true"/>\n  <recv response="200" rtd="true" rrs="true"/>\n',
                    '  <recv response="180"/>\n'),
    '  <pause milliseconds="300"/>\n',
    """  <send><![CDATA[
CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" optional="true"/>
  <recv response="487"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
""",
)

# A node that refuses every call with 503 but answers the proxy's OPTIONS probes (each OPTIONS is a call of
# its own to SIPp: it jumps to the 200).
REFUSES_503 = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a node refusing every call with 503">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 503 Service Unavailable
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Retry-After: 5
Content-Length: 0

]]></send>
  <recv request="ACK" next="end"/>
  <label id="options"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <label id="end"/>
</scenario>
"""


class Sipp(SippProcess):
    """SIPp in the background, its message trace in ``<cwd>/<name>.msg``."""

    wait_secs = 30.0

    def __init__(self, name: str, scenario: str, args: list[str], cwd: Path, *, port: int | None = None,
                 timeout: str = "20s") -> None:  # fmt: skip
        cwd.mkdir(parents=True, exist_ok=True)
        xml = cwd / f"{name}.xml"
        xml.write_text(scenario)
        self.port = port or free_port()
        self.trace = cwd / f"{name}.msg"
        super().__init__(["-sf", str(xml), *args, "-i", "127.0.0.1", "-p", str(self.port), "-nostdin",
                          "-timeout", timeout, "-timeout_error", "-trace_err", "-trace_msg", "-message_file",
                          str(self.trace)], cwd)  # fmt: skip

    def messages(self) -> list[str]:
        """The SIP messages SIPp sent and received, in order, each from its first line."""
        text = self.trace.read_text(errors="replace") if self.trace.exists() else ""
        out = []
        for chunk in text.split("-" * 47)[1:]:
            _, _, message = chunk.partition(":\n\n")
            if message.strip():
                out.append(message.strip())
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def call_invite(scenario: str, service: str, proxy: str, cwd: Path, name: str = "caller", calls: int = 1) -> Sipp:
    """A SIPp caller placing ``calls`` calls to ``sip:<service>@<proxy>``, one after the other."""
    return Sipp(name, scenario, ["-s", service, proxy, "-m", str(calls), "-l", "1", "-mp", str(free_port() & ~1)],
                cwd)


# ---- Kamailio ---------------------------------------------------------------------------------------------

@dataclass
class FrontDoor:
    port: int
    ctl: str
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def states(self) -> dict[str, str]:
        """The dispatcher's state of each destination (``AP`` active, ``IP`` inactive, ...) by URI."""
        import re

        kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        out = subprocess.run([kamcmd, "-s", self.ctl, "dispatcher.list"], capture_output=True, text=True,
                             timeout=5).stdout
        return dict(re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", out))


@contextmanager
def front_door(run_dir: Path, destinations: list[str], **defines: str) -> Iterator[FrontDoor]:
    """Kamailio with the shipped configuration on a free loopback port, ``destinations`` as its dispatcher
    list (lines after the set id: "sip:127.0.0.1:5071 0 10"), stopped when the block ends."""
    binary = kamailio()
    run_dir.mkdir(parents=True, exist_ok=True)
    ds_list = run_dir / "dispatcher.list"
    ds_list.write_text("".join(f"1 {d}\n" for d in destinations))
    port = free_port()
    ctl = f"unix:{run_dir / 'ctl'}"
    settings = {"LISTEN": f"udp:127.0.0.1:{port}", "DISPATCHER_LIST": f'"{ds_list}"', "CTL_SOCKET": f'"{ctl}"',
                "CHILDREN": "2", "PING_INTERVAL": "1", "FR_TIMER": "1000", **defines}
    cmd = [binary, "-DD", "-E", "-f", str(KAMAILIO_CFG), "-Y", str(run_dir), "-m", "32", "-M", "4"]
    for name, value in settings.items():
        cmd += ["-A", f"{name}={value}"]
    log = run_dir / "kamailio.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while sip_options("127.0.0.1", port, timeout=0.2) != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"kamailio did not come up: {log.read_text()}"
        # Whatever answered must be this Kamailio: one that could not bind its port exits (at once, but it
        # may be after another process holding the port has answered the OPTIONS).
        time.sleep(0.2)
        assert proc.poll() is None, f"kamailio exited; something else answers on port {port}: {log.read_text()}"
        yield FrontDoor(port, ctl, log, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def exchange(port: int, request: str, until_final: bool = True, timeout: float = 3.0) -> list[str]:
    """Send one request (``\\n`` line ends; ``LPORT`` stands for our port) to the proxy on ``port`` from a
    fresh UDP socket; the responses that came back, whole, up to the first final one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        text = request.replace("LPORT", str(s.getsockname()[1])).replace("\n", "\r\n")
        s.sendto(text.encode(), ("127.0.0.1", port))
        out: list[str] = []
        while True:
            try:
                out.append(s.recv(65535).decode(errors="replace"))
            except OSError:
                return out
            if until_final and not out[-1].startswith("SIP/2.0 1"):
                return out
