"""API benchmark: drive a real ``callroom serve`` process with a realistic Call Control mix.

Run: .venv/bin/python bench/api/run.py [--db sqlite|postgres|both] [--seconds N] [--concurrency C [C ...]]

For every (database, concurrency) pair it starts a fresh node as a subprocess on a free loopback port
(fresh data dir; on PostgreSQL a fresh database that is created before and dropped after the run), a
webhook receiver inside this process, prepares answered calls (virtual phones), ``--conferences``
conferences (default 1) of ``--participants`` legs and one queue (with one caller and one agent) per
worker, then lets C workers
(httpx.AsyncClient) run the mix for N seconds after a short warm-up:

    conference action  mute / unmute / hold / unhold, on everyone or on one participant
    participants       GET /conferences/{id}/participants
    enqueue + dequeue  POST .../actions/enqueue, then POST .../actions/bridge {"queue": ...} by an agent
    get call           GET /calls/{call_control_id}

It reports requests/s, p50/p95/p99 per request type and overall, and the node process's CPU time
(user+system from /proc/<pid>/stat) so that throughput per core can be stated. Results are printed as a
table and written to bench/results/api-<db>.json. Only 127.0.0.1 is ever contacted.

Placement (machines with 2+ CPUs): the node's API process is pinned to CPU 0 and this process to the
others. The node's media process (the audio of the benchmark's calls, not API work) goes to CPU 1 by
default, as a node with two cores runs it; ``--media-cpu same`` keeps it on CPU 0 with the API, which
then shares its core with the audio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from client import Connection, HTTPError

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
PROFILED_NODE = Path(__file__).resolve().parent / "profiled_node.py"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# How often each step of the mix is chosen (the queue step issues two requests: enqueue, dequeue).
MIX: dict[str, int] = {"conference_action": 4, "participants": 2, "queue_cycle": 2, "get_call": 2}
TYPES = ("mute", "unmute", "hold", "unhold", "list_participants", "enqueue", "dequeue", "get_call")
WRITE_TYPES = frozenset({"mute", "unmute", "hold", "unhold", "enqueue", "dequeue"})


# -- helpers -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the node's media process and multiprocessing's helper)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                out.append(int(entry))
    return out


def total_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def server_cpu_seconds(name: str) -> dict[int, float]:
    """CPU seconds of every process whose command is ``name`` (the database server's backends), per pid."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() != name:
                        continue
                out[int(entry)] = cpu_seconds(int(entry))
            except OSError:
                continue
    return out


@contextlib.contextmanager
def server_pinned(name: str, cpus: set[int] | None) -> Iterator[None]:
    """Every process whose command is ``name`` pinned to ``cpus`` (backends forked meanwhile inherit the
    postmaster's), put back as they were afterwards. ``None``: left alone."""
    if cpus is None:
        yield
        return
    before: dict[int, set[int]] = {}
    for pid in server_cpu_seconds(name):
        with contextlib.suppress(OSError):
            before[pid] = os.sched_getaffinity(pid)
            os.sched_setaffinity(pid, cpus)
    try:
        yield
    finally:
        everything = set(range(os.cpu_count() or 1))
        for pid in server_cpu_seconds(name):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, before.get(pid, everything))


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two ``server_cpu_seconds`` readings (processes that began in between count whole)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarise(latencies: list[float], errors: int, seconds: float) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests": len(ms),
        "errors": errors,
        "rps": round(len(ms) / seconds, 1),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
    }


# -- the webhook receiver --------------------------------------------------------------------------------


class WebhookSink:
    """A minimal HTTP/1.1 server on 127.0.0.1 answering every request 200 with an empty body."""

    def __init__(self) -> None:
        self.count = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                self.count += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


# -- the database and the node process -------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, pg_host: str = "127.0.0.1", pg_options: str = "") -> Iterator[str | None]:
    """None for SQLite (the node's default file in its data dir); a fresh PostgreSQL database URL otherwise
    (``pg_host``: an address for TCP, or the server's socket directory for a Unix-domain socket;
    ``pg_options``: libpq's ``options``, server settings for the node's sessions)."""
    if kind == "sqlite":
        yield None
        return
    import psycopg

    name = f"callroom_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        query = {"host": pg_host} if pg_host.startswith("/") else {}
        if pg_options:
            query["options"] = pg_options
        where = "" if pg_host.startswith("/") else f"{pg_host}:5432"
        yield f"postgresql://postgres@{where}/{name}" + (f"?{urlencode(query)}" if query else "")
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class NodeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    api_key: str
    data_dir: Path
    log_path: Path
    children: list[int] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_node(data_dir: Path, database_url: str | None, cpu: int | None, media_cpu: int | None,
               profile_out: Path | None) -> NodeProcess:
    port = free_port()
    cli = [sys.executable, str(PROFILED_NODE), str(profile_out)] if profile_out else [
        sys.executable, "-m", "callroom.cli"
    ]
    cmd = [*cli, "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    # The per-key rate limit (default 1,000/s) is off: the benchmark measures the node, not the limiter.
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--rate-limit", "0",
            "--allow-url-network", "127.0.0.0/8",  # the webhook receiver is on this machine
            "--drain-timeout", "0"]  # stopped with its conference's legs up: no grace for them (and the profile)
    log_path = data_dir / "node.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLROOM_")}
    log = open(log_path, "wb")  # noqa: SIM115 - the child keeps writing to it
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"node did not come up:\n{log_path.read_text()}")
        time.sleep(0.1)
    key = (data_dir / "initial-api-key").read_text().strip()
    children = children_of(proc.pid)
    if media_cpu is not None:
        for child in children:  # the media process: the node's other core (see --media-cpu)
            os.sched_setaffinity(child, {media_cpu})
    return NodeProcess(proc, port, key, data_dir, log_path, children)


# -- preparing calls, the conference and the queues ---------------------------------------------------------


@dataclass
class Fixture:
    connection_id: str
    conferences: list[tuple[str, list[str]]]  # (conference id, its participants' call ids)
    pairs: list[tuple[str, str, str]]  # (caller, agent, queue name), one per worker
    all_calls: list[str] = field(default_factory=list)


async def _ok(resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code >= 300:
        raise RuntimeError(f"{resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text}")
    if resp.status_code == 204 or not resp.content:
        return {}
    body: dict[str, Any] = resp.json()
    return body


async def dial_answered(client: httpx.AsyncClient, connection_id: str, name: str, **extra: Any) -> str:
    body = {"connection_id": connection_id, "from": "+15550001111", "to": f"virtual:{name};answer_after=0", **extra}
    cid: str = (await _ok(await client.post("/v2/calls", json=body)))["data"]["call_control_id"]
    for _ in range(500):
        state = (await _ok(await client.get(f"/v2/calls/{cid}")))["data"]["state"]
        if state != "ringing":
            if state != "parked":
                raise RuntimeError(f"call {cid} is {state}, not parked")
            return cid
        await asyncio.sleep(0.01)
    raise RuntimeError(f"call {cid} was never answered")


async def prepare(
    client: httpx.AsyncClient, sink_url: str, workers: int, participants: int, conferences: int = 1
) -> Fixture:
    app = await _ok(await client.post(
        "/v2/call_control_applications", json={"application_name": "bench", "webhook_event_url": sink_url}
    ))
    connection_id: str = app["data"]["id"]
    sem = asyncio.Semaphore(16)

    async def one(name: str, **extra: Any) -> str:
        async with sem:
            return await dial_answered(client, connection_id, name, **extra)

    callers = await asyncio.gather(*(one(f"caller{i}") for i in range(workers)))
    agents = await asyncio.gather(*(one(f"agent{i}", park_after_unbridge="self") for i in range(workers)))
    rooms: list[tuple[str, list[str]]] = []
    for k in range(conferences):
        members = await asyncio.gather(*(one(f"member{k}-{i}") for i in range(participants)))
        conf = await _ok(await client.post("/v2/conferences",
                                           json={"call_control_id": members[0], "name": f"bench{k}"}))
        conference_id: str = conf["data"]["id"]
        for cid in members[1:]:
            await _ok(await client.post(f"/v2/conferences/{conference_id}/actions/join",
                                        json={"call_control_id": cid}))
        listed = await _ok(await client.get(f"/v2/conferences/{conference_id}/participants",
                                            params={"page[size]": 250}))
        if len(listed["data"]) != participants:
            raise RuntimeError(f"conference has {len(listed['data'])} participants, expected {participants}")
        rooms.append((conference_id, list(members)))

    pairs = []
    for i, (caller, agent) in enumerate(zip(callers, agents, strict=True)):
        qname = f"bench-q{i}"
        await _ok(await client.post("/v2/queues", json={"queue_name": qname, "max_size": 10}))
        pairs.append((caller, agent, qname))
    everyone = [cid for _conf, members in rooms for cid in members]
    return Fixture(connection_id, rooms, pairs, [*everyone, *callers, *agents])


# -- the load ---------------------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in TYPES})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPES, 0))
    error_samples: list[str] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)
    recording: bool = False


async def worker(
    n: int, client: Connection, fx: Fixture, stats: Stats, stop_at: float, seed: int, mix: dict[str, int]
) -> None:
    rng = random.Random(seed)
    steps = [s for s in mix if mix[s] > 0]
    weights = [mix[s] for s in steps]
    caller, agent, qname = fx.pairs[n]
    conf, everyone = fx.conferences[n % len(fx.conferences)]

    async def call(kind: str, method: str, url: str, body: dict[str, Any] | None = None) -> bool:
        t0 = time.perf_counter()
        try:
            resp = await client.request(method, url, body)
            ok = resp.status_code < 300
            detail = f"{resp.status_code} {resp.text[:300]}"
        except (HTTPError, OSError) as exc:
            ok, detail = False, repr(exc)
        t1 = time.perf_counter()
        dt = t1 - t0
        if stats.recording:
            stats.completions.append(t1)
            if ok:
                stats.latencies[kind].append(dt)
            else:
                stats.errors[kind] += 1
                if len(stats.error_samples) < 10:
                    stats.error_samples.append(f"{kind} {method} {url} -> {detail}")
        return ok

    while time.monotonic() < stop_at:
        step = rng.choices(steps, weights)[0]
        if step == "conference_action":
            action = rng.choice(("mute", "unmute", "hold", "unhold"))
            ids = [rng.choice(everyone)] if rng.random() < 0.5 else None
            if action == "unhold" and ids is None:
                ids = everyone  # unhold requires call_control_ids
            await call(action, "POST", f"/v2/conferences/{conf}/actions/{action}",
                       {"call_control_ids": ids} if ids else {})
        elif step == "participants":
            await call("list_participants", "GET", f"/v2/conferences/{conf}/participants")
        elif step == "queue_cycle":
            if await call("enqueue", "POST", f"/v2/calls/{caller}/actions/enqueue", {"queue_name": qname}):
                await call("dequeue", "POST", f"/v2/calls/{agent}/actions/bridge", {"queue": qname})
        else:
            await call("get_call", "GET", f"/v2/calls/{rng.choice(fx.all_calls)}")


async def run_load(
    node: NodeProcess, sink: WebhookSink, concurrency: int, seconds: float, warmup: float, participants: int,
    mix: dict[str, int], conferences: int = 1,
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {node.api_key}"}
    async with httpx.AsyncClient(base_url=node.base, headers=headers, limits=limits, timeout=30) as client:
        t0 = time.monotonic()
        fx = await prepare(client, sink.url, concurrency, participants, conferences)
        setup_secs = time.monotonic() - t0
        await asyncio.sleep(0.5)  # let the setup's webhooks drain
        stats = Stats()
        stop_at = time.monotonic() + warmup + seconds
        # The load itself goes through lean keep-alive connections (one per worker): httpx would make
        # this process, not the node, the bottleneck above ~700 requests/s.
        conns = [Connection("127.0.0.1", node.port, headers) for _ in range(concurrency)]
        tasks = [
            asyncio.create_task(worker(i, conns[i], fx, stats, stop_at, seed=i, mix=mix)) for i in range(concurrency)
        ]
        await asyncio.sleep(warmup)
        hooks0 = sink.count
        cpu0, own0, wall0 = cpu_seconds(node.proc.pid), time.process_time(), time.monotonic()
        media0 = total_cpu_seconds(node.children)
        db0 = server_cpu_seconds("postgres")
        stats.recording = True
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        stats.recording = False
        cpu1, own1, wall1 = cpu_seconds(node.proc.pid), time.process_time(), time.monotonic()
        media1 = total_cpu_seconds(node.children)
        db1 = server_cpu_seconds("postgres")
        hooks1 = sink.count
        await asyncio.gather(*tasks)
        for conn in conns:
            conn.close()

    wall = wall1 - wall0
    node_cpu = cpu1 - cpu0
    per_type = {t: summarise(stats.latencies[t], stats.errors[t], wall) for t in TYPES}
    every = [x for t in TYPES for x in stats.latencies[t]]
    overall = summarise(every, sum(stats.errors.values()), wall)
    writes = sum(per_type[t]["requests"] for t in WRITE_TYPES)
    cores = node_cpu / wall
    done = sorted(stats.completions)
    gaps = sorted((b - a for a, b in itertools.pairwise(done)), reverse=True)
    per_second = [0] * (int(wall) + 1)
    for t in done:
        per_second[min(int(t - done[0]), len(per_second) - 1)] += 1
    return {
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "warmup_seconds": warmup,
        "setup_seconds": round(setup_secs, 2),
        "participants": participants,
        "conferences": conferences,
        "mix_weights": mix,
        "overall": overall,
        "write_actions_per_s": round(writes / wall, 1),
        "per_type": per_type,
        "node_cpu": {
            "cpu_seconds": round(node_cpu, 2),
            "cores_used": round(cores, 3),
            "requests_per_core_s": round(overall["requests"] / node_cpu, 1) if node_cpu else None,
            "write_actions_per_core_s": round(writes / node_cpu, 1) if node_cpu else None,
        },
        "media_process_cores_used": round((media1 - media0) / wall, 3),
        # PostgreSQL's own processes (all of them on this machine; zero on SQLite unless another client is busy).
        "postgres_cores_used": round(cpu_delta(db0, db1) / wall, 3),
        "longest_stalls_ms": [round(g * 1000, 1) for g in gaps[:5]],
        "completions_per_second": per_second,
        "bench_process_cores_used": round((own1 - own0) / wall, 3),
        "webhooks_received": hooks1 - hooks0,
        "webhooks_per_s": round((hooks1 - hooks0) / wall, 1),
        "error_samples": stats.error_samples,
    }


def parse_mix(text: str) -> dict[str, int]:
    mix = dict.fromkeys(MIX, 0)
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in MIX:
            raise argparse.ArgumentTypeError(f"unknown step {name!r}; steps: {', '.join(MIX)}")
        mix[name.strip()] = int(weight or "1")
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("at least one step needs a positive weight")
    return mix


def outbox_counts(node: NodeProcess, database_url: str | None) -> dict[str, Any]:
    """Webhook outbox rows by status once the measured run is over (a growing 'pending' means the node's
    dispatcher did not keep up with the events the mix produced)."""
    query = "SELECT status, count(*) FROM outbox GROUP BY status"
    errors = "SELECT last_error, count(*) FROM outbox WHERE status = 'failed' GROUP BY last_error LIMIT 3"
    out: dict[str, Any] = {}
    try:
        if database_url is None:
            import sqlite3

            with contextlib.closing(sqlite3.connect(node.data_dir / "callroom.db", timeout=5)) as conn:
                out = {str(s): int(n) for s, n in conn.execute(query)}
                failed = list(conn.execute(errors))
        else:
            import psycopg

            with psycopg.connect(database_url) as pg:
                out = {str(s): int(n) for s, n in pg.execute(query)}
                failed = list(pg.execute(errors))
        if failed:
            out["failed_errors"] = {str(e)[:160]: int(n) for e, n in failed}
    except Exception as exc:  # the table is the node's business: report, do not fail the run
        out["error"] = repr(exc)[:160]
    return out


# -- output -----------------------------------------------------------------------------------------------


def print_table(db: str, r: dict[str, Any]) -> None:
    cpu = r["node_cpu"]
    print(f"\n== {db}, concurrency {r['concurrency']}, {r.get('conferences', 1)} conference(s), {r['seconds']} s "
          f"(node API process: {cpu['cores_used']:.2f} cores; its media process: "
          f"{r.get('media_process_cores_used', 0):.2f} cores; "
          f"bench process: {r['bench_process_cores_used']:.2f} cores; "
          f"PostgreSQL server: {r.get('postgres_cores_used', 0):.2f} cores)")
    print(f"{'type':<18}{'requests':>9}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    rows = [*((t, r["per_type"][t]) for t in TYPES), ("ALL", r["overall"])]
    for name, s in rows:
        print(f"{name:<18}{s['requests']:>9}{s['errors']:>7}{s['rps']:>9.1f}{s['p50_ms']:>9.2f}"
              f"{s['p95_ms']:>9.2f}{s['p99_ms']:>9.2f}{(s['max_ms'] or 0):>9.2f}")
    print(f"write actions/s: {r['write_actions_per_s']:.1f}   requests per node CPU-second: "
          f"{cpu['requests_per_core_s']}   write actions per node CPU-second: {cpu['write_actions_per_core_s']}   "
          f"webhooks/s: {r['webhooks_per_s']}   outbox after run: {r.get('outbox_after_run')}")
    print(f"longest pauses with no response at all (ms): {r['longest_stalls_ms']}")
    print(f"responses per second over the run: {r['completions_per_second']}")
    for sample in r["error_samples"][:5]:
        print(f"  error: {sample}")


async def bench_one(
    db: str, concurrency: int, args: argparse.Namespace, node_cpu: int | None, media_cpu: int | None
) -> dict[str, Any]:
    sink = WebhookSink()
    await sink.start()
    data_dir = Path(tempfile.mkdtemp(prefix=f"callroom-bench-{db}-"))
    profile_out = None
    if args.profile:
        RESULTS.mkdir(parents=True, exist_ok=True)
        profile_out = RESULTS / f"api-{db}-c{concurrency}.prof"
    try:
        pg_cpus = {args.pg_cpu} if args.pg_cpu is not None and db == "postgres" else None
        with database(db, args.pg_host, args.pg_options) as url, server_pinned("postgres", pg_cpus):
            node = start_node(data_dir, url, node_cpu, media_cpu, profile_out)
            try:
                result = await run_load(
                    node, sink, concurrency, args.seconds, args.warmup, args.participants, args.mix,
                    args.conferences,
                )
                result["outbox_after_run"] = outbox_counts(node, url)
            finally:
                node.stop()
            if node.proc.returncode not in (0, -signal.SIGINT):
                print(f"node exited with {node.proc.returncode}; log:\n{node.log_path.read_text()[-3000:]}")
    finally:
        await sink.close()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    if profile_out:
        result["profile"] = str(profile_out.relative_to(ROOT))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--pg-host", default="127.0.0.1",
                        help="PostgreSQL's address (TCP, port 5432) or its socket directory, e.g. /var/run/postgresql")
    parser.add_argument("--pg-options", default="",
                        help="server settings for the node's sessions, e.g. '-c synchronous_commit=off'")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (max 300)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16], help="workers (one run per value)")
    parser.add_argument("--mix", type=parse_mix, default=dict(MIX),
                        help="step weights, e.g. 'get_call=1' or 'conference_action=4,queue_cycle=2' "
                        f"(steps: {', '.join(MIX)}; default {','.join(f'{k}={v}' for k, v in MIX.items())})")
    parser.add_argument("--participants", type=int, default=10, help="legs in each conference")
    parser.add_argument("--conferences", type=int, default=1,
                        help="conferences the workers' conference actions are spread over (worker i: i mod N); "
                             "1 is the worst case: every action waits for that one conference's lock")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the node to CPU 0 and this process to CPU 1")
    parser.add_argument("--media-cpu", choices=("other", "same"), default="other",
                        help="where the node's media process runs when pinned: 'other' (default) on CPU 1 with "
                        "this process, as a node uses its second core; 'same' on CPU 0 with the API process")
    parser.add_argument("--pg-cpu", type=int, default=None,
                        help="pin the PostgreSQL server's processes to this CPU for the run (e.g. 1: the database "
                        "off the API's core, as on a server of its own); by default they are left unpinned")
    parser.add_argument("--profile", action="store_true",
                        help="run the node under cProfile; stats go to bench/results/api-<db>-c<C>.prof")
    parser.add_argument("--keep", action="store_true", help="keep the node's data dir (and its log)")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 300 or not 0 <= args.warmup <= 60:
        parser.error("--seconds must be in (0, 300] and --warmup in [0, 60]")
    if any(not 1 <= c <= 256 for c in args.concurrency) or not 1 <= args.participants <= 100:
        parser.error("--concurrency must be in [1, 256] and --participants in [1, 100]")
    if not 1 <= args.conferences <= 64:
        parser.error("--conferences must be in [1, 64]")

    node_cpu: int | None = None
    media_cpu: int | None = None
    cpus = sorted(os.sched_getaffinity(0))
    if not args.no_pin and len(cpus) >= 2:
        node_cpu = cpus[0]
        media_cpu = cpus[1] if args.media_cpu == "other" else cpus[0]
        os.sched_setaffinity(0, set(cpus[1:]))

    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for db in dbs:
        runs = []
        for c in args.concurrency:
            # uvloop, as the node uses: the load generator takes less of the CPU it shares with the rest.
            runs.append(uvloop.run(bench_one(db, c, args, node_cpu, media_cpu)))
            print_table(db, runs[-1])
        doc = {
            "benchmark": "api",
            "db": db,
            "mix_weights": args.mix,
            "node_pinned_to_cpu": node_cpu,
            "media_process_pinned_to_cpu": media_cpu,
            "postgres_pinned_to_cpu": args.pg_cpu if db == "postgres" else None,
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                     "platform": platform.platform(), "machine": platform.machine()},
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "runs": runs,
        }
        out = RESULTS / f"api-{db}.json"
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    if not re.match(r"^(linux)", sys.platform):
        raise SystemExit("this benchmark reads /proc and runs on Linux only")
    raise SystemExit(main())
