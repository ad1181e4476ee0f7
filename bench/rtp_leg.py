"""CPU cost of the media engine's RTP legs per leg and per 20 ms tick, on real loopback sockets, without SIP or API.

Run: .venv/bin/python bench/rtp_leg.py [--legs 200] [--seconds 10] [--per-leg] [--quiet]

A sender process plays N phones: every 20 ms it sends one PCMU packet to each leg (a loud two-tone, like the
SIPp benchmark, or with --quiet a faint one) and drains what the legs send back. This process runs a
``MediaEngine`` on uvloop with N ``RtpLeg``s in conferences of 5, ticking every 20 ms as in the node.
By default the engine runs its RTP legs as one batch per tick (``RtpBatch``); ``--per-leg`` runs them leg by
leg (an event-loop reader per socket, ``pull_frame``/``push_frame`` per leg), for comparison. Reported: the
process's CPU per leg per tick, the tick's phases per leg (receive, pull, mix, push, talker detection), tick
lateness and losses. The machine's Python speed drifts on a shared VM: ``calibration`` is the time of one
iteration of a plain Python loop, measured just before, to compare runs made at different times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import struct
import time
from collections import defaultdict
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the media process sets it (before numpy loads)

import numpy as np

from callroom.aio.rtp_batch import RtpBatch
from callroom.aio.rtp_leg import RtpLeg
from callroom.media.engine import MediaEngine, TickStats
from callroom.model import media as m
from callroom.rtp import g711


def sender(ports: list[int], seconds: float, quiet: bool, ready: Connection) -> None:
    """The phones: one socket, one packet per leg every 20 ms, paced on absolute deadlines."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    ready.send(sock.getsockname()[1])
    ready.recv()  # go
    t = np.arange(160 * 50) / 8000
    level = 0.02 if quiet else 1.0
    pcm = (level * (5000 * np.sin(2 * np.pi * 500 * t) + 3000 * np.sin(2 * np.pi * 1100 * t))).astype(np.int16)
    payloads = [g711.ulaw_encode(pcm[i * 160 : (i + 1) * 160]) for i in range(50)]
    header = struct.Struct("!BBHII")
    start = time.monotonic()
    due = start
    i = 0
    while due - start < seconds:
        payload = payloads[i % 50]
        for n, port in enumerate(ports):
            packet = header.pack(0x80, 0, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, 1000 + n) + payload
            with contextlib.suppress(BlockingIOError):
                sock.sendto(packet, ("127.0.0.1", port))
        while True:  # drain what the legs sent back
            try:
                sock.recv(2048)
            except BlockingIOError:
                break
        i += 1
        due += 0.02
        time.sleep(max(0.0, due - time.monotonic()))


def calibration() -> float:
    """Nanoseconds per iteration of a plain Python loop (the machine's speed right now)."""
    started = time.thread_time()
    x = 0
    for i in range(1_000_000):
        x += i
    return (time.thread_time() - started) * 1000


def timed(phases: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] += time.thread_time() - started

    return wrapper


async def run(legs_count: int, seconds: float, per_leg: bool, quiet: bool) -> None:
    batch: Any = None if per_leg else RtpBatch()
    engine = MediaEngine(batch=batch)
    phases: dict[str, float] = defaultdict(float)
    if batch is not None:
        for name in ("receive", "pull", "push"):
            setattr(batch, name, timed(phases, name, getattr(batch, name)))
    mixer: Any = engine.mixer
    mixer.tick_slots = timed(phases, "mix", mixer.tick_slots)
    talkers: Any = engine
    talkers._detect_talkers = timed(phases, "talkers", engine._detect_talkers)

    legs = [await RtpLeg.open("127.0.0.1", port_range=(30000, 60000)) for _ in range(legs_count)]
    here, there = mp.Pipe()
    proc = mp.Process(target=sender, args=([leg.local_port for leg in legs], seconds + 4.0, quiet, there),
                      daemon=True)
    proc.start()
    phones_port = here.recv()
    cids = [f"leg{i}" for i in range(legs_count)]
    for cid, leg in zip(cids, legs, strict=True):
        leg.set_remote(("127.0.0.1", phones_port), g711.PT_PCMU, None, "sendrecv")  # in-band DTMF search on
        engine.add_leg(cid, leg)
    for g in range(0, legs_count, 5):
        members = tuple(m.ConferenceMember(c, False, False, "none") for c in cids[g : g + 5])
        engine.apply([m.ConferenceMix(f"conf{g}", members, comfort_noise=False)])
    ticking = asyncio.get_running_loop().create_task(engine.run())
    here.send("go")
    await asyncio.sleep(2.0)  # warm up: jitter buffers fill, sockets settle

    before = [leg.stats() for leg in legs]
    engine.stats = TickStats()
    phases.clear()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    after = [leg.stats() for leg in legs]
    summary = engine.stats.summary()
    engine.stop()
    await ticking
    for leg in legs:
        leg.close()
    await engine.aclose()
    proc.join(5)

    ticks = int(summary.get("ticks", 0)) or 1
    per_tick = 1e6 / (ticks * legs_count)
    received = sum(b.packets_received - a.packets_received for a, b in zip(before, after, strict=True))
    concealed = sum(b.concealed_frames - a.concealed_frames for a, b in zip(before, after, strict=True))
    late = sum(b.late_or_duplicate - a.late_or_duplicate for a, b in zip(before, after, strict=True))
    print(f"  legs {legs_count}, {'per leg' if per_leg else 'batch'}, {wall:.1f} s, {ticks} ticks, "
          f"packets received {received}, late {late}, concealed {concealed}")
    print(f"  CPU                       {100 * cpu / wall:7.1f} % of one core")
    print(f"  all-in per leg per 20 ms  {1e6 * cpu / wall * 0.02 / legs_count:7.2f} µs")
    for name in ("receive", "pull", "mix", "push", "talkers"):
        if name in phases:
            print(f"    {name:22s}  {phases[name] * per_tick:7.2f} µs")
    print(f"  tick work p50 / p99       {summary.get('work_p50_ms', 0):7.2f} / {summary.get('work_p99_ms', 0):.2f} ms")
    print(f"  tick lateness p50 / p99   {summary.get('late_p50_ms', 0):7.2f} / {summary.get('late_p99_ms', 0):.2f} ms "
          f"(max {summary.get('late_max_ms', 0):.2f}, skipped {summary.get('skipped', 0)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--per-leg", action="store_true", help="run the legs one by one instead of as a batch")
    parser.add_argument("--quiet", action="store_true", help="phones send a faint tone (like a listener)")
    args = parser.parse_args()
    import uvloop

    print(f"MediaEngine with RTP legs on uvloop, calibration {calibration():.0f} ns per Python loop iteration:")
    uvloop.run(run(min(args.legs, 2000), min(args.seconds, 120.0), args.per_leg, args.quiet))



if __name__ == "__main__":
    main()
