"""The console's push channel under load: events per second one node delivers to 50 open consoles, and
what each event costs the API process.

One node (SQLite) runs here; a second process opens ``--consoles`` push channels (``/console/events``)
and counts what arrives; a few threads dial virtual phones (answered at once, then hung up), so each call
makes call.initiated, call.answered and call.hangup events. The same load runs twice, without and with the
consoles open: the difference in the API process's CPU time, divided by the events pushed, is the cost of
pushing one event to every console (encoded once, queued and written once per console).

    PYTHONPATH=. .venv/bin/python bench/console/push_fanout.py --consoles 50 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import _tenant
from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver


async def _consume(url: str, key: str, consoles: int, seconds: float) -> dict[str, Any]:
    counts = [0] * consoles
    opened = asyncio.Event()
    ready = 0

    async def one(i: int) -> None:
        nonlocal ready
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None)) as client, client.stream(
                "GET", f"{url}/console/events", headers={"Authorization": f"Bearer {key}"}) as response:
            ready += 1
            if ready == consoles:
                opened.set()
            async for line in response.aiter_lines():
                if line == "event: webhook":
                    counts[i] += 1

    tasks = [asyncio.create_task(one(i)) for i in range(consoles)]
    await asyncio.wait_for(opened.wait(), 30)
    print("open", flush=True)
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"per_console": counts}


def _load(tenant: Any, stop: threading.Event, made: list[int]) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    with httpx.Client(base_url=tenant.node.base_url, headers=headers, timeout=10) as client:
        while not stop.is_set():
            r = client.post("/calls", json={"connection_id": tenant.connection_id, "from": "+15550001111",
                                            "to": "virtual:load;answer_after=0"})
            cid = r.json()["data"]["call_control_id"]
            time.sleep(0.05)
            client.post(f"/calls/{cid}/actions/hangup", json={})
            made[0] += 1


def _run(node: NodeThread, tenant: Any, consoles: int, seconds: float, threads: int) -> dict[str, Any]:
    consumer = None
    if consoles:
        consumer = subprocess.Popen(
            [sys.executable, __file__, "--consume", node.root_url, tenant.api_key, str(consoles), str(seconds + 2)],
            stdout=subprocess.PIPE, text=True)
        assert consumer.stdout is not None
        assert consumer.stdout.readline().strip() == "open"
    hub = node.node.console_hub
    published0 = hub.events_published
    stop, made = threading.Event(), [0]
    workers = [threading.Thread(target=_load, args=(tenant, stop, made)) for _ in range(threads)]
    cpu0, wall0 = time.process_time(), time.monotonic()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    result: dict[str, Any] = {"consoles": consoles, "seconds": round(wall, 2), "calls": made[0],
                              "cpu_seconds": round(cpu, 3), "events": hub.events_published - published0}
    if consumer is not None:
        out, _ = consumer.communicate(timeout=60)
        per_console = json.loads(out.strip().splitlines()[-1])["per_console"]
        result["delivered_min"] = min(per_console)
        result["delivered_total"] = sum(per_console)
        result["deliveries_per_second"] = round(sum(per_console) / wall, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--consoles", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--out", default="bench/results/console-push.json")
    parser.add_argument("--consume", nargs=4, metavar=("URL", "KEY", "N", "SECONDS"))
    args = parser.parse_args()
    if args.consume:
        url, key, n, secs = args.consume
        print(json.dumps(asyncio.run(_consume(url, key, int(n), float(secs)))), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeThread(f"sqlite:///{tmp}/callroom.db", Path(tmp), rate_limit=None)
        receiver = WebhookReceiver()
        try:
            tenant = _tenant(node, receiver)
            without = _run(node, tenant, 0, args.seconds, args.threads)
            with_consoles = _run(node, tenant, args.consoles, args.seconds, args.threads)
        finally:
            node.stop()
            receiver.close()
    cpu_per_call = [r["cpu_seconds"] / max(1, r["calls"]) for r in (without, with_consoles)]
    events_per_call = with_consoles["events"] / max(1, with_consoles["calls"])
    extra_per_event = (cpu_per_call[1] - cpu_per_call[0]) / max(events_per_call, 1e-9)
    summary = {
        "without_consoles": without, "with_consoles": with_consoles,
        "events_per_second": round(with_consoles["events"] / with_consoles["seconds"], 1),
        "api_cpu_us_per_event_to_all_consoles": round(extra_per_event * 1e6, 1),
        "api_cpu_us_per_event_per_console": round(extra_per_event * 1e6 / args.consoles, 2),
        "note": "API process CPU (node, webhook receiver and load threads); the consoles run in another process",
    }
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
