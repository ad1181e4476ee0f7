"""What carrying media instructions across nodes costs an API command: three node processes on one PostgreSQL
database and the local NATS server, one conference of virtual phones, and the latency of the commands that
change it, as seen by an SDK client.

    local   every member lives on the conference's home, and every command is sent to it: no bus
    spread  the members live on all three nodes, and each command goes to the next node (two of three
            reach a node that is not the home: the mix travels over NATS before the COMMIT)

Measured one command at a time (latency, not throughput): mute/unmute pairs, and joins (a join across nodes
opens two relay legs). Run: .venv/bin/python bench/cluster/media_commands.py [--commands 200] [--joins 12]
Writes bench/results/cluster-media.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.cluster.conftest import fresh_database  # noqa: E402
from tests.support.cluster import Cluster, running_cluster  # noqa: E402
from tests.support.receiver import WebhookReceiver  # noqa: E402


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}  # fmt: skip


def scenario(trio: Cluster, spread: bool, commands: int, joins: int) -> dict[str, object]:
    nodes = len(trio.roots)
    home = 0
    creator = trio.dial(home, f"creator-{uuid.uuid4().hex[:4]}")
    conf = trio.client(home).conferences.create(call_control_id=creator, name=f"bench-{uuid.uuid4().hex}")
    assert conf.data is not None
    conf_id = conf.data.id
    members = [trio.dial(i % nodes if spread else home, f"m{i}") for i in range(joins)]
    join_times = []
    for i, cid in enumerate(members):
        client = trio.client(i % nodes if spread else home)
        t0 = time.perf_counter()
        client.conferences.actions.join(conf_id, call_control_id=cid)
        join_times.append(time.perf_counter() - t0)
    target = members[len(members) // 2]
    flag_times = []
    for i in range(commands):
        client = trio.client(i % nodes if spread else home)
        t0 = time.perf_counter()
        if i % 2 == 0:
            client.conferences.actions.mute(conf_id, call_control_ids=[target])
        else:
            client.conferences.actions.unmute(conf_id, call_control_ids=[target])
        flag_times.append(time.perf_counter() - t0)
    trio.client(home).conferences.actions.end_conference(conf_id)
    return {"join": _ms(join_times), "mute_unmute": _ms(flag_times), "members": joins + 1}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--joins", type=int, default=12)
    args = parser.parse_args()
    receiver = WebhookReceiver()
    results: dict[str, object] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, fresh_database() as url, \
                running_cluster(Path(tmp), url, receiver) as trio:  # fmt: skip
            for name, spread in (("local", False), ("spread", True), ("local-again", False)):
                results[name] = scenario(trio, spread, args.commands, args.joins)
                print(name, json.dumps(results[name]), flush=True)
    finally:
        receiver.close()
    out = ROOT / "bench" / "results" / "cluster-media.json"
    out.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"), **results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
