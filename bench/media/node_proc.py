"""A callroom node for the media benchmark, in its own process.

It is what ``callroom serve`` runs (the same ``Node``, uvicorn with uvloop and httptools), plus one
read-only route the benchmark needs, ``GET /bench/stats``: the media engine's tick statistics
(``MediaEngine.stats.summary()``), every leg's RTP counters, and the native thread ids of the media
thread and the API thread (so CPU can be split per thread from /proc). ``?reset=1`` starts a fresh
``TickStats`` window after reading; ``?legs=0`` leaves out the per-leg counters (a cheap call, so the
tick after it is not delayed by the snapshot).

Run by ``run.py``; prints one JSON line (API key, ports, pid) once it listens.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import uvicorn

from callroom.api.server import uvicorn_config
from callroom.endpoints.sip import SipConfig
from callroom.media.engine import MediaEngine, TickStats
from callroom.node import Node, NodeConfig, ensure_first_key
from callroom.outbound import LOOPBACK


def snapshot(engine: MediaEngine, reset: bool, with_legs: bool) -> dict[str, Any]:
    """Runs on the media loop (between two ticks), so it sees a consistent engine."""
    summary = engine.stats.summary()
    if reset:
        engine.stats = TickStats()
    legs: dict[str, dict[str, Any]] = {}
    for cid, leg in engine.legs.items() if with_legs else ():
        stats = getattr(leg, "stats", None)
        if stats is None:
            continue
        legs[cid] = dataclasses.asdict(stats())
    return {"summary": summary, "legs": legs, "conferences": len(engine.conferences)}


def bench_media_main(*args: Any) -> None:
    """The media process's entry point (when the node runs its media plane in a child process): the
    node's own, with one more read-only request, ``bench_stats``, answered like ``snapshot``."""
    from callroom.media import process

    original = process.MediaWorker._reply

    def reply(self: Any, req_id: int, what: str, request_args: tuple[Any, ...]) -> None:
        if what != "bench_stats":
            original(self, req_id, what, request_args)
            return
        try:
            value = snapshot(self.engine, *request_args)
        except Exception as exc:
            self.send(("reply", req_id, None, f"{type(exc).__name__}: {exc}"))
            return
        self.send(("reply", req_id, value, None))

    process.MediaWorker._reply = reply  # type: ignore[method-assign,assignment]
    if os.environ.get("CALLROOM_BENCH_PER_LEG"):  # run.py --per-leg: RTP legs one by one, for comparison
        module: Any = process
        module.MediaEngine = functools.partial(module.MediaEngine, batch_rtp=False)
    process.media_main(*args)


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
    try:  # the media plane in a child process: give it the bench_stats request
        from callroom.media import process

        process.media_main = bench_media_main  # type: ignore[assignment]
    except ImportError:  # the media plane is a thread of this process
        pass
    node = Node(config)
    key = ensure_first_key(node.store)

    async def stats(reset: int = 0, legs: int = 1) -> dict[str, Any]:
        try:
            return await read_stats(bool(reset), bool(legs))
        except Exception as exc:  # say why (the node's error handler would only say "internal error")
            logging.exception("bench stats failed")
            return {"error": f"{type(exc).__name__}: {exc}"}

    async def read_stats(reset: bool, legs: bool) -> dict[str, Any]:
        media: Any = node.media
        if hasattr(media, "request"):  # media process
            data: dict[str, Any] = await media.request("bench_stats", bool(reset), bool(legs), timeout=10.0)
            data["threads"] = thread_ids()
            data["media_pid"] = media._process.pid if media._process is not None else None
        else:  # media thread
            data = media.call(snapshot, media.engine, bool(reset), bool(legs), timeout=10.0)
            data["threads"] = thread_ids()
        return data

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
