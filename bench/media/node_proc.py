"""A callroom node for the media benchmark, in its own process.

It is what ``callroom serve`` runs (the same ``Node``, uvicorn with uvloop and httptools), plus one
read-only route the benchmark needs, ``GET /bench/stats``: the media engine's tick statistics
(``MediaEngine.stats.summary()``) and every leg's RTP counters, from the media process's ``StatsRequest``,
and the native thread ids of the API process (so CPU can be split per thread from /proc). ``?reset=1`` starts a fresh
``TickStats`` window after reading; ``?legs=0`` leaves out the per-leg counters (a cheap call, so the
tick after it is not delayed by the snapshot).

Run by ``run.py``; prints one JSON line (API key, ports, pid) once it listens.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import uvicorn

from callroom.api.server import uvicorn_config
from callroom.endpoints import media_process
from callroom.identity import ensure_first_key
from callroom.media_worker import main as media_worker
from callroom.model.messages import SipConfig
from callroom.node import Node
from callroom.node_config import NodeConfig
from callroom.outbound import LOOPBACK


def bench_media_main(*args: Any) -> None:
    """The media process's entry point (when the node runs its media plane in a child process): the
    node's own, with the RTP legs run leg by leg under ``run.py --per-leg``."""
    if os.environ.get("CALLROOM_BENCH_PER_LEG"):  # run.py --per-leg: RTP legs one by one, for comparison
        media_worker.MediaWorker.batch_rtp = False
    media_worker.media_main(*args)


def thread_ids() -> dict[str, int | None]:
    ids: dict[str, int | None] = {"main": threading.main_thread().native_id}
    for t in threading.enumerate():
        if t.name == "callroom-media":
            ids["media"] = t.native_id
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--rtp-ports", default="30000-34999")
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    low, _, high = args.rtp_ports.partition("-")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    config = NodeConfig(database_url=f"sqlite:///{(args.data_dir / 'callroom.db').resolve()}",
                        data_dir=args.data_dir,
                        sip=SipConfig(host="127.0.0.1", port=args.sip_port, rtp_ports=(int(low), int(high))),
                        allow_url_networks=LOOPBACK)  # media and webhook servers on this machine
    media_process.media_main = bench_media_main  # what the node's media process runs
    node = Node(config)
    key = ensure_first_key(node.store)

    async def stats(reset: int = 0, legs: int = 1) -> dict[str, Any]:
        try:
            return await read_stats(bool(reset), bool(legs))
        except Exception as exc:  # say why (the node's error handler would only say "internal error")
            logging.exception("bench stats failed")
            return {"error": f"{type(exc).__name__}: {exc}"}

    async def read_stats(reset: bool, legs: bool) -> dict[str, Any]:
        media = node.media
        reply = await media.stats(reset, per_leg=legs, timeout=10.0)
        return {"summary": reply.tick, "legs": reply.rtp, "conferences": reply.conferences,
                "threads": thread_ids(), "media_pid": media._process.pid if media._process is not None else None}

    node.app.add_api_route("/bench/stats", stats, methods=["GET"])
    server = uvicorn.Server(uvicorn_config(node.app, "127.0.0.1", args.port, log_level="warning", loop="uvloop",
                                           lifespan="on"))

    def announce() -> None:
        while not server.started:
            threading.Event().wait(0.02)
        print(json.dumps({"api_key": key, "pid": os.getpid(), "sip_port": args.sip_port,
                          "port": args.port, "node_id": node.node_id}), flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
