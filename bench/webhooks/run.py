"""Webhook delivery benchmark: signed deliveries per second and latency from state change to receipt.

Run: .venv/bin/python bench/webhooks/run.py [--backlog N] [--rate R] [--seconds S]

Two measurements against a real ``callroom serve`` process (fresh SQLite data dir, free loopback port,
pinned to the first CPU when there are two or more) and a fast receiver in a separate process (pinned to
the other CPUs) that answers 200 at once and checks the Ed25519 signature of every tenth request:

1. throughput: ``--backlog`` outbox rows (spread over 1,000 calls, so per-call order applies) are written
   to the database before the node starts; the node loads them as it would after a crash and delivers
   them. Reported: deliveries/s between the first and the last receipt, and the node's CPU seconds.
2. latency: for ``--seconds`` the benchmark dials answered calls at ``--rate`` dials/s through the API
   (each produces call.initiated and call.answered); the receiver notes, for every webhook, the time
   from its ``occurred_at`` (the state change's transaction) to its arrival. Reported: p50/p95/p99/max
   and webhooks/s, plus the node's own commit-to-2xx histogram from ``/metrics``.

Results are printed and written to bench/results/webhooks.json. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.api.run import cpu_seconds, free_port, percentile  # noqa: E402

RESULTS = ROOT / "bench" / "results"


# -- the receiver (its own process) ---------------------------------------------------------------------


def _receiver_main(port: int, public_key: str, cpus: set[int] | None) -> None:
    import uvloop
    from nacl.signing import VerifyKey

    if cpus:
        os.sched_setaffinity(0, cpus)
    verify_key = VerifyKey(base64.b64decode(public_key)) if public_key else None
    latencies: list[float] = []
    arrivals: list[float] = []
    state = {"count": 0, "bad_signatures": 0, "checked": 0}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.time()
                lines = head.split(b"\r\n")
                length, sig, ts = 0, b"", b""
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"telnyx-signature-ed25519":
                        sig = value.strip()
                    elif name == b"telnyx-timestamp":
                        ts = value.strip()
                body = await reader.readexactly(length) if length else b""
                if lines[0].startswith(b"GET /__stats"):
                    out = json.dumps({**state, "latencies": latencies, "arrivals": arrivals}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(out) + out)
                    continue
                if lines[0].startswith(b"POST /__reset"):
                    latencies.clear()
                    arrivals.clear()
                    state.update(count=0, bad_signatures=0, checked=0)
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                state["count"] += 1
                arrivals.append(now)
                occurred = json.loads(body)["data"]["occurred_at"]
                latencies.append(now - datetime.fromisoformat(occurred).timestamp())
                if verify_key is not None and state["count"] % 10 == 0:
                    state["checked"] += 1
                    try:
                        verify_key.verify(ts + b"|" + body, base64.b64decode(sig))
                    except Exception:
                        state["bad_signatures"] += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=512)
        await server.serve_forever()

    uvloop.run(main())


class Receiver:
    def __init__(self, public_key: str, cpus: set[int] | None) -> None:
        self.port = free_port()
        ctx = multiprocessing.get_context("spawn")
        self.proc = ctx.Process(target=_receiver_main, args=(self.port, public_key, cpus), daemon=True)
        self.proc.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url("/__stats"), timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("receiver did not start")

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(self.url("/__stats"), timeout=10).json()
        return data

    def reset(self) -> None:
        httpx.post(self.url("/__reset"), timeout=5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(5)


# -- the node -------------------------------------------------------------------------------------------


def start_node(data_dir: Path, cpu: int | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [sys.executable, "-m", "callroom.cli", "--data-dir", str(data_dir), "serve", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--allow-url-network", "127.0.0.0/8"]  # the receiver
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLROOM_")}
    log = open(data_dir / "node.log", "ab")  # noqa: SIM115 - the child keeps writing to it
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError((data_dir / "node.log").read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("node did not come up")
        time.sleep(0.02)


def stop_node(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def prepare_backlog(data_dir: Path, url: str, n: int) -> str:
    """Write ``n`` pending outbox rows (1,000 calls) into a fresh database; returns the public key."""
    from callroom.model.records import OutboundEvent
    from callroom.store.engine import Store
    from callroom.webhooks.signing import WebhookSigner

    store = Store(f"sqlite:///{data_dir / 'callroom.db'}")
    store.migrate()
    signer = WebhookSigner.load_or_create(store)
    now = time.time()
    calls = [f"v3:{uuid.uuid4().hex}" for _ in range(1000)]
    with store.transaction() as tx:
        for i in range(n):
            cid = calls[i % len(calls)]
            payload = {"call_control_id": cid, "call_leg_id": str(uuid.uuid4()), "call_session_id": str(uuid.uuid4()),
                       "client_state": None, "connection_id": "bench", "from": "+15550001111",
                       "to": "virtual:bench", "call_sequence": i // len(calls) + 1}
            ev = OutboundEvent(id=str(uuid.uuid4()), account_id="bench", event_type="call.initiated",
                               occurred_at=now, payload=payload, url=url, failover_url=None, method="POST",
                               timeout_secs=2.0, order_key=f"call:{cid}")
            tx.add_event(ev, now)
    key = signer.public_key_b64
    store.dispose()
    return key


# -- the two measurements -------------------------------------------------------------------------------


def throughput(args: argparse.Namespace, node_cpu: int | None, bench_cpus: set[int] | None) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="callroom-bench-webhooks-"))
    receiver: Receiver | None = None
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}/hooks"
        public_key = prepare_backlog(data_dir, url, args.backlog)
        receiver = Receiver.__new__(Receiver)
        receiver.port = port
        ctx = multiprocessing.get_context("spawn")
        receiver.proc = ctx.Process(target=_receiver_main, args=(port, public_key, bench_cpus), daemon=True)
        receiver.proc.start()
        time.sleep(1.0)
        proc, _ = start_node(data_dir, node_cpu)
        cpu0 = cpu_seconds(proc.pid)
        deadline = time.monotonic() + 120
        while receiver.stats()["count"] < args.backlog and time.monotonic() < deadline:
            time.sleep(0.2)
        cpu1 = cpu_seconds(proc.pid)
        stats = receiver.stats()
        stop_node(proc)
        arrivals = sorted(stats["arrivals"])
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
        return {
            "backlog": args.backlog,
            "delivered": stats["count"],
            "seconds": round(span, 3),
            "deliveries_per_s": round((len(arrivals) - 1) / span, 1) if span else None,
            "node_cpu_seconds_incl_startup": round(cpu1 - cpu0, 2),
            "signatures_checked": stats["checked"],
            "bad_signatures": stats["bad_signatures"],
        }
    finally:
        if receiver is not None:
            receiver.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _dial_load(base: str, key: str, connection_id: str, rate: float, seconds: float) -> tuple[int, int]:
    headers = {"Authorization": f"Bearer {key}"}
    ok = errors = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10,
                                 limits=httpx.Limits(max_connections=32)) as client:
        async def one(i: int) -> None:
            nonlocal ok, errors
            try:
                body = {"connection_id": connection_id, "from": "+15550001111", "to": f"virtual:b{i};answer_after=0"}
                resp = await client.post("/v2/calls", json=body)
                if resp.status_code < 300:
                    ok += 1
                else:
                    errors += 1
            except httpx.HTTPError:
                errors += 1

        tasks = []
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    return ok, errors


def latency(args: argparse.Namespace, node_cpu: int | None, bench_cpus: set[int] | None) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="callroom-bench-webhooks-"))
    try:
        proc, port = start_node(data_dir, node_cpu)
        try:
            base = f"http://127.0.0.1:{port}"
            key = (data_dir / "initial-api-key").read_text().strip()
            public_key = httpx.get(f"{base}/v2/public_key").json()["data"]["public_key"]
            receiver = Receiver(public_key, bench_cpus)
            try:
                app = httpx.post(f"{base}/v2/call_control_applications", headers={"Authorization": f"Bearer {key}"},
                                 json={"application_name": "bench", "webhook_event_url": receiver.url()}).json()
                cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
                ok, errors = asyncio.run(_dial_load(base, key, app["data"]["id"], args.rate, args.seconds))
                time.sleep(1.0)
                cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
                stats = receiver.stats()
                metrics = httpx.get(f"{base}/metrics").text
            finally:
                receiver.stop()
        finally:
            stop_node(proc)
        ms = sorted(x * 1000 for x in stats["latencies"])
        arrivals = sorted(stats["arrivals"])
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
        return {
            "rate_dials_per_s": args.rate,
            "seconds": args.seconds,
            "dials_ok": ok,
            "dial_errors": errors,
            "webhooks": stats["count"],
            "webhooks_per_s": round(stats["count"] / span, 1) if span else None,
            "p50_ms": round(percentile(ms, 0.50), 2),
            "p95_ms": round(percentile(ms, 0.95), 2),
            "p99_ms": round(percentile(ms, 0.99), 2),
            "max_ms": round(ms[-1], 2) if ms else None,
            "node_cores_used": round((cpu1 - cpu0) / (wall1 - wall0), 3),
            "bad_signatures": stats["bad_signatures"],
            "signatures_checked": stats["checked"],
            "node_metrics": [line for line in metrics.splitlines() if line and not line.startswith("#")],
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def inproc(args: argparse.Namespace, node_cpu: int | None, bench_cpus: set[int] | None) -> dict[str, Any]:
    """Commit webhook-emitting transactions inside the node's loop at ``--inproc-rate`` events/s."""
    data_dir = Path(tempfile.mkdtemp(prefix="callroom-bench-webhooks-"))
    try:
        receiver = Receiver("", bench_cpus)
        try:
            cmd = [sys.executable, str(Path(__file__).with_name("loaded_node.py")), str(data_dir), receiver.url(),
                   str(args.inproc_rate), str(args.seconds)]
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
            if node_cpu is not None:
                os.sched_setaffinity(proc.pid, {node_cpu})
            out, err = proc.communicate(timeout=args.seconds + 90)
            if proc.returncode != 0:
                raise RuntimeError(err.decode()[-3000:])
            report = json.loads(out.decode().strip().splitlines()[-1])
            stats = receiver.stats()
        finally:
            receiver.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    ms = sorted(x * 1000 for x in stats["latencies"])
    arrivals = sorted(stats["arrivals"])
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    return {
        "target_events_per_s": args.inproc_rate,
        "emitted": report["emitted"],
        "delivered": stats["count"],
        "deliveries_per_s": round((len(arrivals) - 1) / span, 1) if span else None,
        "node_cores_used": round(report["cpu_seconds"] / report["wall"], 3),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
        "node_metrics": [line for line in report["metrics"].splitlines() if line and not line.startswith("#")],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=20000, help="outbox rows for the throughput run")
    parser.add_argument("--rate", type=float, default=150.0, help="dials per second in the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    parser.add_argument("--inproc-rate", type=float, default=1000.0,
                        help="events/s committed inside the node in the in-process run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the node to the first CPU")
    args = parser.parse_args(argv)
    if not 1 <= args.backlog <= 200_000 or not 0 < args.rate <= 1000 or not 0 < args.seconds <= 120 or not (
        0 < args.inproc_rate <= 20_000
    ):
        parser.error("--backlog in [1, 200000], --rate in (0, 1000], --seconds in (0, 120]")
    node_cpu: int | None = None
    bench_cpus: set[int] | None = None
    cpus = sorted(os.sched_getaffinity(0))
    if not args.no_pin and len(cpus) >= 2:
        node_cpu, bench_cpus = cpus[0], set(cpus[1:])
        os.sched_setaffinity(0, bench_cpus)

    t = throughput(args, node_cpu, bench_cpus)
    print(f"throughput: {t['delivered']}/{t['backlog']} delivered in {t['seconds']} s = {t['deliveries_per_s']} "
          f"signed deliveries/s on one core (bad signatures: {t['bad_signatures']} of {t['signatures_checked']})")
    lat = latency(args, node_cpu, bench_cpus)
    print(f"latency: {lat['webhooks']} webhooks at {lat['webhooks_per_s']}/s from {lat['dials_ok']} dials "
          f"({lat['dial_errors']} errors); state change -> receipt p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
          f"p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms; node {lat['node_cores_used']} cores")
    ip = inproc(args, node_cpu, bench_cpus)
    print(f"in-process load: {ip['delivered']}/{ip['emitted']} events at {ip['deliveries_per_s']} deliveries/s "
          f"(target {ip['target_events_per_s']:g}/s); commit -> receipt p50 {ip['p50_ms']} ms, p95 {ip['p95_ms']} ms, "
          f"p99 {ip['p99_ms']} ms, max {ip['max_ms']} ms; node {ip['node_cores_used']} cores")
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "webhooks",
        "node_pinned_to_cpu": node_cpu,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "throughput": t,
        "latency": lat,
        "inproc": ip,
    }
    out = RESULTS / "webhooks.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
