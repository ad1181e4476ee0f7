"""What SRTP adds per RTP packet: libsrtp's protect and unprotect alone, and a leg's receive and send paths
with SRTP (``SrtpLeg``) against plain RTP (``RtpLeg``), on loopback sockets, one process, no engine.

Run: .venv/bin/python bench/srtp_cost.py [--packets 20000]

Reported: microseconds per packet (best of 5 runs). Plain legs run exactly the code they ran before SRTP
existed (``RtpLeg`` is unchanged; only legs of trunks with ``srtp`` on are ``SrtpLeg``), so their figures are
the baseline, not a cost. An SRTP leg also never enters the batch's array lanes, so in a node its receive and
send go through the per-leg path measured here, where a plain leg in its steady state takes the lanes'
(cheaper) path; ``bench/rtp_leg.py --per-leg`` against its default gives that difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import time
from collections.abc import Callable

import numpy as np

from callroom.aio.rtp_leg import RtpLeg
from callroom.aio.srtp_leg import SrtpLeg
from callroom.rtp import g711
from callroom.rtp.srtp import SrtpContext
from callroom.sip.sdes import SUITES, new_key

_FRAME = (3000 * np.sin(2 * np.pi * 500 * np.arange(160) / 8000)).astype(np.int16)


def packets(n: int, ssrc: int = 0x1234) -> list[bytes]:
    payload = g711.ULAW_ENCODE[_FRAME.view(np.uint16)].tobytes()
    return [struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, 160 * i, ssrc) + payload for i in range(1, n + 1)]


def best(runs: int, n: int, once: Callable[[], None]) -> float:
    """Microseconds per packet of ``once`` (which handles ``n`` packets), best of ``runs``."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return min(times) / n * 1e6


def libsrtp(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    plain = packets(n)
    for suite in SUITES:
        k1, k2 = new_key(), new_key()
        results: dict[str, float] = {}
        runs = []
        for _ in range(5):  # new sessions per run: a replayed sequence number would be refused
            a, b = SrtpContext(suite, k1, k2), SrtpContext(suite, k2, k1)
            t0 = time.perf_counter()
            wire = [a.protect(p) for p in plain]
            t1 = time.perf_counter()
            back = [b.unprotect(w) for w in wire]
            t2 = time.perf_counter()
            assert back == plain
            runs.append((t1 - t0, t2 - t1))
        results["protect_us"] = min(r[0] for r in runs) / n * 1e6
        results["unprotect_us"] = min(r[1] for r in runs) / n * 1e6
        out.update({f"{suite}.{k}": round(v, 3) for k, v in results.items()})
    return out


async def legs(n: int) -> dict[str, float]:
    drain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drain.bind(("127.0.0.1", 0))
    drain.setblocking(False)
    peer = drain.getsockname()
    out: dict[str, float] = {}
    suite = "AES_CM_128_HMAC_SHA1_80"
    for kind in (RtpLeg, SrtpLeg):
        name = kind.__name__
        recv_runs, send_runs = [], []
        for _ in range(5):
            leg = await kind.open("127.0.0.1")
            leg.set_remote(peer, g711.PT_PCMU, 101, "sendrecv")
            leg.symmetric = False
            wire = packets(n, ssrc=0x5678)
            if isinstance(leg, SrtpLeg):
                k_send, k_recv = new_key(), new_key()
                leg.secure(suite, k_send, k_recv)
                peer_ctx = SrtpContext(suite, k_recv, k_send)
                wire = [peer_ctx.protect(p) for p in wire]
            loop_time = asyncio.get_running_loop().time()
            t0 = time.perf_counter()
            for i, p in enumerate(wire):
                leg.receive(p, peer, loop_time + i * 0.02)
            t1 = time.perf_counter()
            for _ in range(n):
                leg.push_frame(_FRAME)
            t2 = time.perf_counter()
            while True:  # empty the drain
                try:
                    drain.recv(2048)
                except BlockingIOError:
                    break
            assert leg.stats().packets_received == n, leg.stats()
            recv_runs.append(t1 - t0)
            send_runs.append(t2 - t1)
            leg.close()
        out[f"{name}.receive_us"] = round(min(recv_runs) / n * 1e6, 3)
        out[f"{name}.push_frame_us"] = round(min(send_runs) / n * 1e6, 3)
    drain.close()
    out["srtp_added.receive_us"] = round(out["SrtpLeg.receive_us"] - out["RtpLeg.receive_us"], 3)
    out["srtp_added.push_frame_us"] = round(out["SrtpLeg.push_frame_us"] - out["RtpLeg.push_frame_us"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=20000)
    args = parser.parse_args()
    t0 = time.perf_counter()
    for _ in range(1_000_000):
        pass
    calibration = (time.perf_counter() - t0) * 1e3
    result = {"packets": args.packets, "calibration_ns": round(calibration, 1), **libsrtp(args.packets),
              **asyncio.run(legs(args.packets))}  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
