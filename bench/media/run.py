"""Media benchmark: N concurrent SIP calls with RTP (SIPp) into one callroom node, in conferences of 5
and in one large conference, measuring the node's CPU, tick lateness, work per tick and lost frames.

Run: .venv/bin/python bench/media/run.py [--legs 100,300,500] [--modes conf5,one] [--window 10] [--rate 40]

Each case starts a fresh node in its own process (``node_proc.py``: ``callroom serve`` plus a read-only
stats route), creates an application whose webhooks go to this process, and starts SIPp with N calls
that each stream a looped u-law tone. This process answers every ``call.initiated`` and puts the call in
a conference (``conf5``: the first of every five creates one, the next four join it; ``one``: everyone
joins a single conference, at most 800 participants, the API's limit). Once every leg is in, and after a
settling pause, the steady window starts: node CPU (user+sys from /proc/<pid>/stat, per thread too),
the engine's ``TickStats`` (reset at the window start) and every leg's RTP counters (differenced over
the window). Results go to bench/results/media.json; a table is printed. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "media.json"
TICK = 0.02
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_CONFERENCE = 800  # the API's max_participants bound


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        port: int = tcp.getsockname()[1]
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
        return port


# -- SIPp ------------------------------------------------------------------------------------------

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="callroom media bench">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtpstream_audio_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <nop><action><exec rtp_stream="{wav},-1,0"/></action></nop>
  <pause milliseconds="{hold_ms}"/>
  <nop><action><exec rtp_stream="pause"/></action></nop>
  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def make_ulaw_wav(directory: Path, seconds: float = 4.0) -> Path:
    """A 500+1100 Hz two-tone (so every leg is a talker), as the u-law WAV SIPp's rtp_stream plays."""
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (5000 * np.sin(2 * np.pi * 500 * t) + 3000 * np.sin(2 * np.pi * 1100 * t)).astype(np.int16)
    linear = directory / "tone-pcm.wav"
    soundfile.write(linear, pcm, 8000, subtype="PCM_16")
    out = directory / "tone-ulaw.wav"
    subprocess.run(["sox", str(linear), "-e", "u-law", "-b", "8", str(out)], check=True)
    return out


def sipp_final_counts(stat_file: Path) -> dict[str, int]:
    """The cumulative counters from the last line of SIPp's ``-trace_stat`` CSV."""
    if not stat_file.exists():
        return {}
    lines = [ln for ln in stat_file.read_text(errors="replace").splitlines() if ln.strip()]
    if len(lines) < 2:
        return {}
    header, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(header, last, strict=False))
    out: dict[str, int] = {}
    for name, key in (("created", "TotalCallCreated"), ("successful", "SuccessfulCall(C)"),
                      ("failed", "FailedCall(C)"), ("retransmissions", "Retransmissions(C)"),
                      ("timeouts", "FailedMaxUDPRetrans(C)")):
        if key in row and row[key].strip().isdigit():
            out[name] = int(row[key])
    return out


# -- the application: webhook receiver + call control ---------------------------------------------

@dataclass
class App:
    api: httpx.Client
    mode: str
    n: int
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cond: threading.Condition = field(init=False)
    arrived: int = 0
    joined: int = 0
    errors: list[str] = field(default_factory=list)
    conferences: dict[int, str] = field(default_factory=dict)
    hangups: list[tuple[float, str, str]] = field(default_factory=list)  # (time, cid, source)
    setup_ms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)

    def handle(self, event: dict[str, Any]) -> None:
        data = event.get("data", {})
        kind, payload = data.get("event_type"), data.get("payload", {})
        if kind == "call.initiated" and payload.get("direction") == "incoming":
            self._place(payload["call_control_id"])
        elif kind == "call.hangup":
            with self.lock:
                self.hangups.append((time.monotonic(), payload.get("call_control_id", ""),
                                     str(payload.get("hangup_source"))))

    def _place(self, cid: str) -> None:
        started = time.perf_counter()
        with self.lock:
            index = self.arrived
            self.arrived += 1
        group, creator = (index // 5, index % 5 == 0) if self.mode == "conf5" else (0, index == 0)
        try:
            self._post(f"/calls/{cid}/actions/answer", {})
            if creator:
                body: dict[str, Any] = {"call_control_id": cid, "name": f"bench-{group}", "comfort_noise": False}
                if self.mode == "one":
                    body["max_participants"] = min(MAX_CONFERENCE, max(2, self.n))
                conf_id = self._post("/conferences", body)["data"]["id"]
                with self.cond:
                    self.conferences[group] = conf_id
                    self.cond.notify_all()
            else:
                with self.cond:
                    if not self.cond.wait_for(lambda: group in self.conferences, timeout=30):
                        raise RuntimeError(f"conference {group} was never created")
                    conf_id = self.conferences[group]
                self._post(f"/conferences/{conf_id}/actions/join", {"call_control_id": cid})
        except Exception as exc:
            with self.lock:
                self.errors.append(f"{cid}: {exc}")
            return
        with self.cond:
            self.joined += 1
            self.setup_ms.append((time.perf_counter() - started) * 1000)
            self.cond.notify_all()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(5):
            resp = self.api.post(path, json=body)
            if resp.status_code == 429 and attempt < 4:
                time.sleep(float(resp.headers.get("retry-after", "0.2")))
                continue
            if resp.status_code >= 400:
                raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:200]}")
            data: dict[str, Any] = resp.json()
            return data
        raise RuntimeError(f"{path}: rate limited")


def serve_webhooks(on_event: Callable[[Any], None]) -> ThreadingHTTPServer:
    """A webhook receiver on a free loopback port: each POST answered 200 at once, its JSON body handed to
    ``on_event`` (on the request's thread)."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            with contextlib.suppress(ValueError):
                on_event(json.loads(body))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_receiver(app: App, workers: int = 16) -> tuple[ThreadingHTTPServer, list[threading.Thread]]:
    server = serve_webhooks(app.events.put)

    def work() -> None:
        while True:
            event = app.events.get()
            if not event:
                return
            app.handle(event)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    return server, threads


# -- /proc ------------------------------------------------------------------------------------------

def cpu_seconds(pid: int, tid: int | None = None) -> float:
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    try:
        text = Path(path).read_text()
    except OSError:
        return float("nan")
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    out: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        out[int(task.name)] = (name, cpu_seconds(pid, int(task.name)))
    return out


# -- one case ---------------------------------------------------------------------------------------

@dataclass
class Case:
    n: int
    mode: str
    window: float
    rate: float
    settle: float
    profile: str | None  # py-spy executable, to profile the node during the window
    per_leg: bool = False  # the engine runs RTP legs one by one instead of as a batch (for comparison)


def run_case(case: Case, work: Path, sipp: str) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    api_port, sip_port = free_port(), free_port()
    rtp_low = 30000
    node_log = (work / "node.log").open("w")
    per_leg_env = {"CALLROOM_BENCH_PER_LEG": "1"} if case.per_leg else {}
    node = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("node_proc.py")), "--data-dir", str(work / "data"),
         "--port", str(api_port), "--sip-port", str(sip_port),
         "--rtp-ports", f"{rtp_low}-{rtp_low + 4 * case.n + 200}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **per_leg_env}, stdout=subprocess.PIPE, stderr=node_log,
        text=True,
    )
    sipp_proc: subprocess.Popen[bytes] | None = None
    server: ThreadingHTTPServer | None = None
    app: App | None = None
    workers: list[threading.Thread] = []
    result: dict[str, Any] = {"n": case.n, "mode": case.mode, "rtp_legs": "per leg" if case.per_leg else "batch"}
    try:
        assert node.stdout is not None
        line = node.stdout.readline()
        if not line:
            raise RuntimeError(f"node did not start; see {work / 'node.log'}")
        info = json.loads(line)
        pid = int(info["pid"])
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}/v2", timeout=30,
                           headers={"Authorization": f"Bearer {info['api_key']}"},
                           limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))
        app = App(api=api, mode=case.mode, n=case.n)
        server, workers = start_receiver(app)
        created = api.post("/call_control_applications", json={
            "application_name": f"bench-{case.mode}-{case.n}",
            "webhook_event_url": f"http://127.0.0.1:{server.server_address[1]}/hooks"})
        created.raise_for_status()
        connection_id = created.json()["data"]["id"]

        ramp = case.n / case.rate
        hold_ms = int((ramp + case.settle + case.window + 20) * 1000)
        wav = make_ulaw_wav(work)
        scenario = work / "bench.xml"
        scenario.write_text(SCENARIO.replace("{wav}", str(wav)).replace("{hold_ms}", str(hold_ms)))
        stat_file = work / "sipp-stat.csv"
        t_start = time.monotonic()
        sipp_proc = subprocess.Popen(
            [sipp, "-sf", str(scenario), "-s", connection_id, f"127.0.0.1:{sip_port}", "-i", "127.0.0.1",
             "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(40000),
             "-m", str(case.n), "-l", str(case.n), "-r", str(case.rate), "-rp", "1000",
             "-nostdin", "-timeout", f"{int(hold_ms / 1000 + ramp + 60)}s", "-timeout_error",
             "-trace_err", "-trace_stat", "-stf", str(stat_file), "-fd", "1"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=(work / "sipp.stderr").open("w"),
        )
        # Wait for every leg to be in its conference.
        deadline = time.monotonic() + ramp + 60
        with app.cond:
            app.cond.wait_for(lambda: app.joined + len(app.errors) >= case.n or time.monotonic() > deadline,
                              timeout=ramp + 60)
        t_in = time.monotonic() - t_start
        result["setup_seconds"] = round(t_in, 2)
        result["joined"] = app.joined
        result["setup_errors"] = app.errors[:5]
        result["setup_ms_p50"] = round(float(np.percentile(app.setup_ms, 50)), 1) if app.setup_ms else None
        result["setup_ms_p99"] = round(float(np.percentile(app.setup_ms, 99)), 1) if app.setup_ms else None
        if app.joined < case.n:
            print(f"  only {app.joined}/{case.n} legs joined ({len(app.errors)} errors)", flush=True)
        time.sleep(case.settle)

        stats_url = f"http://127.0.0.1:{api_port}/bench/stats"
        # Leg counters first (a snapshot of every leg costs a tick's time), then a cheap reset of the
        # tick statistics, so the window's ticks do not include the snapshot.
        before = get_stats(stats_url, legs=1)["legs"]
        time.sleep(0.2)
        ramp_stats = get_stats(stats_url, reset=1, legs=0)
        result["ramp_ticks"] = ramp_stats["summary"]
        threads = ramp_stats["threads"]
        media_pid: int | None = ramp_stats.get("media_pid")

        def node_cpu() -> float:  # the node's processes: API (and media, when it is a child process)
            return cpu_seconds(pid) + (cpu_seconds(media_pid) if media_pid else 0.0)

        cpu0, tcpu0, w0 = node_cpu(), thread_cpu(pid), time.monotonic()
        mcpu0 = cpu_seconds(media_pid) if media_pid else 0.0
        sipp_cpu0, busy0, own0 = cpu_seconds(sipp_proc.pid), machine_busy_seconds(), own_cpu_seconds()
        spy: subprocess.Popen[bytes] | None = None
        if case.profile:
            spy = subprocess.Popen(
                [case.profile, "record", "-p", str(media_pid or pid), "-d", str(int(case.window)), "-r", "200",
                 "--nonblocking", "-f", "raw", "-o", str(RESULTS.parent / f"media-profile-{case.mode}-{case.n}.txt")],
                stdout=subprocess.DEVNULL, stderr=(work / "py-spy.log").open("w"))
        time.sleep(case.window)
        cpu1, tcpu1, w1 = node_cpu(), thread_cpu(pid), time.monotonic()
        mcpu1 = cpu_seconds(media_pid) if media_pid else 0.0
        sipp_cpu1, busy1, own1 = cpu_seconds(sipp_proc.pid), machine_busy_seconds(), own_cpu_seconds()
        steady = get_stats(stats_url, reset=1, legs=0)
        steady["legs"] = get_stats(stats_url, legs=1)["legs"]
        t_window_end = time.monotonic()
        if spy is not None:
            spy.wait(timeout=60)
        wall = w1 - w0
        result["window_seconds"] = round(wall, 2)
        result["node_cpu_percent"] = round(100 * (cpu1 - cpu0) / wall, 1)
        result["sipp_cpu_percent"] = round(100 * (sipp_cpu1 - sipp_cpu0) / wall, 1)
        # Everything else on the machine (other users' jobs compete with the node for the cores).
        result["machine_busy_percent"] = round(100 * (busy1 - busy0) / wall, 1)
        result["other_cpu_percent"] = round(
            result["machine_busy_percent"] - result["node_cpu_percent"] - result["sipp_cpu_percent"]
            - 100 * (own1 - own0) / wall, 1)
        per_thread: dict[str, float] = {}
        for tid, (name, secs) in tcpu1.items():
            label = {threads.get("media"): "media", threads.get("main"): "api"}.get(tid, name)
            used = secs - tcpu0.get(tid, (name, 0.0))[1]
            per_thread[label] = per_thread.get(label, 0.0) + round(100 * used / wall, 1)
        if media_pid:
            per_thread["media"] = round(100 * (mcpu1 - mcpu0) / wall, 1)
            result["media_process"] = True
        result["thread_cpu_percent"] = {k: round(v, 1) for k, v in per_thread.items() if v >= 0.5}
        legs = len(steady["legs"])
        result["legs"] = legs
        result["cpu_ms_per_leg_second"] = round(1000 * (cpu1 - cpu0) / wall / max(1, legs), 3)
        result["ticks"] = steady["summary"]
        due = steady["summary"].get("ticks", 0) + steady["summary"].get("skipped", 0)
        result["rtp"] = rtp_window(before, steady["legs"], due)

        # Let the calls end (SIPp sends BYE after its pause), then count how they ended.
        try:
            sipp_proc.wait(timeout=hold_ms / 1000 + ramp + 90)
        except subprocess.TimeoutExpired:
            sipp_proc.kill()
            sipp_proc.wait()
        result["sipp_exit"] = sipp_proc.returncode
        result["sipp"] = sipp_final_counts(stat_file)
        time.sleep(2)
        with app.lock:
            early = [h for h in app.hangups if h[0] < t_window_end]
            not_caller = [h for h in app.hangups if h[2] != "caller"]
            result["hangups"] = len(app.hangups)
        result["dropped_calls"] = len({h[1] for h in early} | {h[1] for h in not_caller}) \
            + (case.n - app.joined) + result["sipp"].get("failed", 0)
        result["dropped_detail"] = {"ended_before_window_end": len(early), "not_ended_by_caller": len(not_caller),
                                    "never_joined": case.n - app.joined,
                                    "sipp_failed": result["sipp"].get("failed", 0)}
        return result
    finally:
        if sipp_proc is not None and sipp_proc.poll() is None:
            sipp_proc.kill()
            sipp_proc.wait()
        stop_node(node, node_log, server)
        if app is not None:
            for _ in workers:
                app.events.put({})


def stop_node(node: subprocess.Popen[Any], node_log: IO[Any], server: ThreadingHTTPServer | None) -> None:
    """Stop the node (SIGTERM, then SIGKILL if it hangs), close its log, and stop the webhook receiver."""
    node.send_signal(signal.SIGTERM)
    try:
        node.wait(timeout=20)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait()
    node_log.close()
    if server is not None:
        server.shutdown()
        server.server_close()


def get_stats(url: str, **params: int) -> dict[str, Any]:
    """``GET /bench/stats``; an overloaded media plane may answer late: retried, then the error is raised."""
    body = ""
    for _ in range(3):
        try:
            resp = httpx.get(url, params=params, timeout=30)
            data: dict[str, Any] = resp.json()
            if "summary" in data:
                return data
            body = resp.text[:300]
        except (httpx.HTTPError, ValueError) as exc:
            body = f"{type(exc).__name__}: {exc}"
        time.sleep(1)
    raise RuntimeError(f"stats unavailable: {body}")


def rtp_window(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], ticks: int) -> dict[str, Any]:
    """What the legs received and sent during the window (legs present at both ends only); ``ticks`` is
    how many ticks were due in it (run or skipped): every leg should have sent one frame each."""
    keys = ("packets_received", "packets_sent", "packets_lost", "late_or_duplicate", "concealed_frames",
            "malformed", "dropped")
    totals = dict.fromkeys(keys, 0)
    short_tx = 0
    common = set(before) & set(after)
    for cid in common:
        for k in keys:
            totals[k] += after[cid][k] - before[cid][k]
        short_tx += max(0, ticks - (after[cid]["packets_sent"] - before[cid]["packets_sent"]))
    jitter = [after[c]["max_jitter_ms"] for c in common]
    return {
        "legs": len(common),
        **totals,
        "lost_inbound": max(0, totals["packets_lost"]) + totals["late_or_duplicate"],
        "short_outbound": short_tx,  # frames a leg should have sent (one per tick) and did not
        "max_jitter_ms": round(max(jitter), 2) if jitter else None,
    }


# -- main -------------------------------------------------------------------------------------------

def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'mode':5} {'N':>5} {'legs':>5} {'node CPU':>9} {'media thr':>9} {'ms/leg/s':>8} "
            f"{'late p50':>8} {'p99':>7} {'max':>7} {'work p50':>8} {'p99':>6} {'skip':>5} "
            f"{'lost in':>7} {'short out':>9} {'conceal':>8} {'dropped':>7} {'other CPU':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['mode']:5} {r['n']:>5}  error: {r['error']}")
            continue
        t, rtp = r["ticks"], r["rtp"]
        lines.append(
            f"{r['mode']:5} {r['n']:>5} {r['legs']:>5} {r['node_cpu_percent']:>8.1f}% "
            f"{r['thread_cpu_percent'].get('media', 0.0):>8.1f}% {r['cpu_ms_per_leg_second']:>8.3f} "
            f"{t.get('late_p50_ms', 0):>8.2f} {t.get('late_p99_ms', 0):>7.2f} {t.get('late_max_ms', 0):>7.2f} "
            f"{t.get('work_p50_ms', 0):>8.2f} {t.get('work_p99_ms', 0):>6.2f} {t.get('skipped', 0):>5} "
            f"{rtp['lost_inbound']:>7} {rtp['short_outbound']:>9} {rtp['concealed_frames']:>8} "
            f"{r['dropped_calls']:>7} {r.get('other_cpu_percent', 0.0):>8.1f}%")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    sipp_version = subprocess.run(["sipp", "-v"], capture_output=True, text=True, check=False).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "sipp": sipp_version.splitlines()[0] if sipp_version else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", default="100,300,500", help="comma-separated N")
    parser.add_argument("--modes", default="conf5,one", help="conf5 (conferences of 5) and/or one (one conference)")
    parser.add_argument("--window", type=float, default=10.0, help="steady measuring window, seconds")
    parser.add_argument("--settle", type=float, default=3.0, help="pause after the last join, seconds")
    parser.add_argument("--rate", type=float, default=40.0, help="SIPp call rate, calls/s")
    parser.add_argument("--profile", nargs="?", const="py-spy", default=None, metavar="PY_SPY",
                        help="record the node with py-spy during each window (optionally: path to py-spy); "
                             "collapsed stacks go to bench/results/media-profile-<mode>-<N>.txt")
    parser.add_argument("--per-leg", action="store_true",
                        help="the media engine runs RTP legs one by one instead of as one batch per tick (to compare)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the work directories (logs)")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the node and SIPp on the way out
    sipp = shutil.which("sipp")
    if sipp is None or shutil.which("sox") is None:
        print("needs sipp (apt-get install sip-tester) and sox", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    base = Path(tempfile.mkdtemp(prefix="callroom-media-bench-"))
    try:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            for n in [int(x) for x in args.legs.split(",") if x.strip()]:
                if mode == "one" and n > MAX_CONFERENCE:
                    print(f"skip one/{n}: a conference holds at most {MAX_CONFERENCE}", flush=True)
                    continue
                print(f"== {mode} N={n}", flush=True)
                case = Case(n=n, mode=mode, window=args.window, rate=args.rate, settle=args.settle,
                            profile=args.profile, per_leg=args.per_leg)
                started = time.monotonic()
                try:
                    row = run_case(case, base / f"{mode}-{n}", sipp)
                except Exception as exc:
                    row = {"n": n, "mode": mode, "error": f"{type(exc).__name__}: {exc}"}
                row["case_seconds"] = round(time.monotonic() - started, 1)
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"work directories kept in {base}")
    out = {"machine": machine(), "settings": {"window_s": args.window, "settle_s": args.settle,
                                              "rate_cps": args.rate, "tick_ms": TICK * 1000},
           "target": "≥500 legs on one core, tick lateness p99 < 2 ms, no frames lost", "results": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print()
    print(table(rows))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
