"""Inbound call set-up rate through the front door: SIPp -> Kamailio -> 1 or 2 nodes (``scripts/cluster up``),
an application answering every call by webhook and hanging up after a short hold.

    peak      one node without a per-second limit, offered an increasing rate: where completed calls/s stop
              following the offer (and INVITE -> 200 latency grows)
    scale     CPU seconds of every node process per completed call: one node at half the rate and at the rate,
              two nodes at the rate (the same offered load on one node and on two, and the same load per node)
    overload  one node with its admission limits, offered 3x its capacity: completed calls/s against the peak,
              how fast the rest is refused, and whether any admitted call failed

Each step is one SIPp run (``--seconds`` of offered calls, then the calls' hold and a drain) against a cluster
started for the mode on its own database and free loopback ports, and stopped after it.
The application (``answering_app.py``, lean: it shares the two cores) answers on ``call.initiated`` (``POST
.../actions/answer``) and hangs up ``--hold`` seconds after ``call.answered``; its commands go to the nodes'
APIs in turn, as through an HTTP load balancer. CPU: utime + stime of every process of each node's process
group (the API process and its media process), from /proc, over the step; and what the application, SIPp,
PostgreSQL and Kamailio spent meanwhile.

Run: .venv/bin/python bench/cluster/setup_rate.py [--modes peak,scale,overload] [--seconds 10]
Writes bench/results/setup-rate.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.cluster.answering_app import AnsweringApp  # noqa: E402
from callroom.cluster_procs import processes  # noqa: E402
from callroom.devcluster import DEFAULT_PG, with_database  # noqa: E402
from tests.cluster.support import INVITE_MESSAGE  # noqa: E402
from tests.support.node import free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
DATABASE = "callroom_bench_setup_rate"

# SIPp's caller: INVITE; a 200 (timer 1: INVITE -> 200) is ACKed and the node's BYE answered; a 500 (every node
# refused: Kamailio remaps a node's 503) or 503 (no live node) is ACKed (timer 2: INVITE -> refusal).
SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="setup rate">
  <nop start_rtd="2"/>
  <send retrans="500" start_rtd="1"><![CDATA[
""" + INVITE_MESSAGE + """]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="500" optional="true" next="refused"/>
  <recv response="503" optional="true" next="refused"/>
  <recv response="200" rtd="1" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv request="BYE"/>
  <send next="done"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <label id="refused"/>
  <nop rtd="2"/>
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
  <label id="done"/>
</scenario>
"""


# ---- the cluster -------------------------------------------------------------------------------------------


def cluster(run_dir: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "CALLROOM_PYTHON": sys.executable}
    out = subprocess.run([str(ROOT / "scripts" / "cluster"), "--run-dir", str(run_dir), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"scripts/cluster {' '.join(args)} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout) if "--json" in args else {}


def cpu_by_process(pgid: int) -> dict[str, float]:
    """CPU seconds (utime + stime) of each live process of a node's group, by what it is: ``api`` (the group
    leader), ``media`` (its media process), ``other:PID`` (the resource tracker, recognisers)."""
    out: dict[str, float] = {}
    for pid, _, fields in processes():
        if int(fields[2]) != pgid or fields[0] in ("Z", "X"):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        name = "api" if pid == pgid else "media" if b"spawn_main" in cmdline else f"other:{pid}"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return out


def cpu_of_named(*names: str) -> float:
    """CPU seconds of every process whose command name is one of ``names`` (all of PostgreSQL's backends,
    Kamailio's workers)."""
    return sum(int(fields[11]) + int(fields[12]) for _, name, fields in processes() if name in names) / TICKS


def others_cpu() -> dict[str, float]:
    """What else the step costs the machine: this process (the application and the driver), SIPp (a
    child: counted when it has been waited for), PostgreSQL, Kamailio."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"app": me.ru_utime + me.ru_stime, "sipp": children.ru_utime + children.ru_stime,
            "postgres": cpu_of_named("postgres"), "kamailio": cpu_of_named("kamailio")}


def cpu_seconds(pgid: int) -> float:
    return sum(cpu_by_process(pgid).values())


def _pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def sipp_step(proxy: str, service: str, rate: float, seconds: float, hold: float, cwd: Path) -> dict[str, Any]:
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "uac.xml").write_text(SCENARIO)
    calls = int(rate * seconds)
    cmd = [shutil.which("sipp") or "sipp", "-sf", "uac.xml", "-s", service, proxy, "-i", "127.0.0.1",
           "-p", str(free_port()), "-mp", str(free_port() & ~1), "-r", f"{rate:g}", "-m", str(calls), "-l", "10000",
           "-nostdin", "-recv_timeout", "10000", "-timeout", f"{int(seconds + hold + 40)}s", "-trace_rtt",
           "-rtt_freq", "1", "-trace_stat", "-fd", "1", "-trace_err", "-max_recv_loops", "10000"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=seconds + hold + 60)
    elapsed = time.monotonic() - started
    answered, refused = [], []
    for path in cwd.glob("uac_*_rtt.csv"):
        with open(path) as f:
            for row in csv.reader(f, delimiter=";"):
                if len(row) == 3 and row[2] in ("1", "2"):
                    (answered if row[2] == "1" else refused).append(float(row[1]))
    stats: dict[str, str] = {}
    for path in cwd.glob("uac_*_.csv"):
        with open(path) as f:
            rows = list(csv.reader(f, delimiter=";"))
        stats = dict(zip(rows[0], rows[-1], strict=False))
    failed = int(stats.get("FailedCall(C)", -1))
    completed = int(stats.get("SuccessfulCall(C)", 0)) - len(refused)  # answered, held and ended by the node
    return {
        "offered_per_s": rate, "calls": calls, "seconds": seconds, "elapsed_s": round(elapsed, 1),
        "answered": len(answered), "completed": completed, "refused": len(refused), "failed": failed,
        "completed_per_s": round(completed / seconds, 1),
        "invite_200_ms": {"p50": _pct(answered, 0.5), "p99": _pct(answered, 0.99), "max": max(answered, default=None)},
        "refusal_ms": {"p50": _pct(refused, 0.5), "p99": _pct(refused, 0.99), "max": max(refused, default=None)},
        "sipp_exit": proc.returncode,
    }


def run_mode(nodes: int, steps: list[float], seconds: float, hold: float, serve_args: list[str],
             label: str, warmup: float = 0.0, direct: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="setup-rate-") as tmp:
        run_dir = Path(tmp) / "cluster"
        info = cluster(run_dir, "up", "--nodes", str(nodes), "--json", "--fresh", "--database", DATABASE,
                       "--api-port", "0", "--sip-port", "0", "--proxy-port", "0", "--rtp-span", "4000",
                       "--log-level", "warning", "--", *serve_args)
        app = AnsweringApp([n["api"] for n in info["nodes"]], info["api_key"], hold)
        try:
            resp = httpx.post(info["nodes"][0]["api"] + "/call_control_applications",
                              headers={"Authorization": f"Bearer {info['api_key']}"},
                              json={"application_name": "setup-rate", "webhook_event_url": app.url}, timeout=10)
            resp.raise_for_status()
            service = resp.json()["data"]["id"]
            time.sleep(2)  # Kamailio's probes mark the nodes active
            if warmup > 0:
                # Steady state before measuring: the nodes' lazily built statements and caches made, and the
                # tables analyzed as a running database's are (a fresh one has no statistics, and PostgreSQL
                # may then look a call up by its account's index rather than its key).
                sipp_step(info["sip_proxy"], service, min(steps[0], 30.0), warmup, hold, Path(tmp) / "warmup")
                with psycopg.connect(with_database(DEFAULT_PG, DATABASE), autocommit=True) as conn:
                    conn.execute("ANALYZE")
                for k in app.counts:
                    app.counts[k] = 0
                time.sleep(2)
            for i, rate in enumerate(steps):
                pgids = [n["pid"] for n in info["nodes"]]
                cpu0 = [cpu_seconds(p) for p in pgids]
                others0 = others_cpu()
                split0 = [cpu_by_process(p) for p in pgids]
                load0 = os.getloadavg()[0]
                target = info["nodes"][0]["sip"] if direct else info["sip_proxy"]
                step = sipp_step(target, service, rate, seconds, hold, Path(tmp) / f"step{i}")
                cpu = [round(cpu_seconds(p) - c, 2) for p, c in zip(pgids, cpu0, strict=True)]
                split = [{k: round(v - s0.get(k, 0.0), 2) for k, v in cpu_by_process(p).items()}
                         for p, s0 in zip(pgids, split0, strict=True)]
                done = max(1, step["completed"])
                others = {k: round(v - others0[k], 2) for k, v in others_cpu().items()}
                step.update(label=label, nodes=nodes, node_cpu_s=cpu, node_cpu_by_process_s=split, other_cpu_s=others,
                            cpu_ms_per_completed_call=round(1000 * sum(cpu) / done, 2),
                            app=dict(app.counts), load_before=round(load0, 2),
                            load_after=round(os.getloadavg()[0], 2))
                for k in app.counts:
                    app.counts[k] = 0
                print(json.dumps(step), flush=True)
                results.append(step)
                time.sleep(2)
        finally:
            app.stop()
            cluster(run_dir, "down")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="peak,scale,overload")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of offered calls per step")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds an answered call is held")
    parser.add_argument("--peak-steps", default="30,45,60,75,90", help="offered calls/s of the peak search")
    parser.add_argument("--scale-rate", type=float, default=60.0, help="offered calls/s for 1 node vs 2")
    parser.add_argument("--direct", action="store_true",
                        help="overload: SIPp sends to the node itself, not through Kamailio (their costs apart)")
    parser.add_argument("--repeat", type=int, default=1, help="turns of the scale mode (median reported)")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of calls before a mode measures (then ANALYZE), 0 for none")
    parser.add_argument("--capacity", type=float, default=None,
                        help="a node's capacity for the overload mode (default: its --max-calls-per-second)")
    parser.add_argument("--serve", default="", help="more serve options for every mode, space-separated")
    args = parser.parse_args()
    from callroom.admission import DEFAULT_MAX_CALLS_PER_SECOND

    extra = args.serve.split()
    unlimited = ["--max-calls-per-second", "0", "--max-setup-backlog", "0", "--max-tick-lateness", "0", *extra]
    out_path = ROOT / "bench" / "results" / "setup-rate.json"
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                               "seconds": args.seconds, "hold": args.hold}  # fmt: skip
    if out_path.exists():
        results = {**json.loads(out_path.read_text()), **results}
    modes = args.modes.split(",")
    if "peak" in modes:
        steps = [float(x) for x in args.peak_steps.split(",")]
        results["peak"] = run_mode(1, steps, args.seconds, args.hold, unlimited, "peak", args.warmup)
    if "scale" in modes:
        # One node at half the rate and at the rate (one cluster, two steps), two nodes at the rate: the same
        # offered load on one node and on two, and the same load per node (what adding a node for more calls
        # looks like).
        # Repeated in turns (one node, two nodes, one node, ...) so that a slower minute of the machine
        # falls on both; each ratio is of one turn's pair, and the median is reported.
        per_call = "cpu_ms_per_completed_call"
        rounds = []
        for _ in range(args.repeat):
            half, one = run_mode(1, [args.scale_rate / 2, args.scale_rate], args.seconds, args.hold, unlimited,
                                 "scale-1", args.warmup)  # fmt: skip
            two = run_mode(2, [args.scale_rate], args.seconds, args.hold, unlimited, "scale-2", args.warmup)[0]
            rounds.append({
                "one_half_rate": half, "one": one, "two": two,
                "cpu_per_call_ratio": round(two[per_call] / one[per_call], 3),
                "cpu_per_call_ratio_same_load_per_node": round(two[per_call] / half[per_call], 3),
                "completed_ratio": round((two["completed_per_s"] or 0) / max(0.1, one["completed_per_s"] or 0), 3),
            })
            print("scale", json.dumps({k: v for k, v in rounds[-1].items() if "ratio" in k}), flush=True)
        ratios = {k: sorted(r[k] for r in rounds) for k in rounds[0] if "ratio" in k}
        results["scale"] = {**rounds[len(rounds) // 2], "rounds": rounds,
                            "ratios": ratios, "median": {k: v[len(v) // 2] for k, v in ratios.items()}}  # fmt: skip
        print("scale median", json.dumps(results["scale"]["median"]), flush=True)
    if "overload" in modes:
        capacity = args.capacity or DEFAULT_MAX_CALLS_PER_SECOND
        results["overload"] = run_mode(1, [3 * capacity], args.seconds, args.hold, extra, "overload-3x",
                                       args.warmup, args.direct)
    results["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
