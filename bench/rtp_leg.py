"""CPU cost of RtpLeg per received packet and per 20 ms tick, on real loopback sockets.

Run: .venv/bin/python bench/rtp_leg.py [--legs 200] [--seconds 10] [--loop uvloop|asyncio] [--quiet]

A sender process plays N phones: every 20 ms it sends one PCMU packet to each leg (and discards what the
legs send back). This process runs N RtpLegs and an engine-like tick every 20 ms that pulls one frame from
and pushes one frame to every leg. Reported:
  - receive path per packet: process CPU time minus the time spent inside ticks, per packet received
    (the event loop's recvfrom and dispatch, parsing, RFC 3550 statistics, jitter buffer insert);
  - tick per leg: one pull_frame (jitter buffer, G.711 decode, concealment, in-band DTMF detection) plus
    one push_frame (G.711 encode, RTP header, sendto);
  - total CPU share of one core for N legs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import socket
import struct
import time
from multiprocessing.connection import Connection

import numpy as np

from callroom.media import g711
from callroom.media.rtp_leg import RtpLeg
from callroom.media.tones import ToneGenerator


def sender(ports: list[int], seconds: float, quiet: bool, ready: Connection) -> None:
    """The phones: one socket, one packet per leg every 20 ms, paced on absolute deadlines."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    ready.send(sock.getsockname()[1])
    ready.recv()  # go
    tone = ToneGenerator([500.0], amplitude=100.0 if quiet else 8000.0)
    payloads = [g711.ulaw_encode(tone.next_frame()) for _ in range(50)]
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


def timed(leg: RtpLeg, total_ns: list[int]) -> None:
    """Wrap the leg's datagram handler to add the time spent in it to ``total_ns[0]``."""
    protocol = leg._rtp.get_protocol()
    inner = protocol.handler  # type: ignore[attr-defined]
    clock = time.perf_counter_ns

    def handler(data: bytes, addr: tuple[str, int]) -> None:
        t0 = clock()
        inner(data, addr)
        total_ns[0] += clock() - t0

    protocol.handler = handler  # type: ignore[attr-defined]


async def run(legs_count: int, seconds: float, quiet: bool) -> None:
    legs = [await RtpLeg.open("127.0.0.1", port_range=(30000, 60000)) for _ in range(legs_count)]
    here, there = mp.Pipe()
    proc = mp.Process(target=sender, args=([leg.local_port for leg in legs], seconds + 1.0, quiet, there), daemon=True)
    proc.start()
    phones_port = here.recv()
    handler_ns = [0]
    for leg in legs:
        leg.set_remote(("127.0.0.1", phones_port), g711.PT_PCMU, 101, "sendrecv")
        timed(leg, handler_ns)
    silence = np.zeros(160, dtype=np.int16)
    loop = asyncio.get_running_loop()
    here.send("go")
    await asyncio.sleep(0.5)  # warm up: jitter buffers fill, sockets settle

    rx0 = sum(leg.stats().packets_received for leg in legs)
    handler_ns[0] = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tick_time = 0.0
    ticks = 0
    late: list[float] = []
    due = loop.time()
    end = due + seconds
    while due < end:
        late.append(loop.time() - due)
        t0 = time.perf_counter()
        for leg in legs:
            leg.pull_frame()
        for leg in legs:
            leg.push_frame(silence)
        tick_time += time.perf_counter() - t0
        ticks += 1
        due += 0.02
        await asyncio.sleep(max(0.0, due - loop.time()))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    received = sum(leg.stats().packets_received for leg in legs) - rx0
    concealed = sum(leg.stats().concealed_frames for leg in legs)
    for leg in legs:
        leg.close()
    proc.join(5)

    expected = legs_count * ticks
    print(f"  legs {legs_count}, {wall:.1f} s, packets received {received} of ~{expected}, concealed {concealed}")
    print(f"  receive path per packet   {1e6 * (cpu - tick_time) / max(received, 1):7.2f} µs")
    print(f"    in RtpLeg's handler     {handler_ns[0] / 1000 / max(received, 1):7.2f} µs (the rest: loop, syscalls)")
    print(f"  tick per leg (pull+push)  {1e6 * tick_time / max(ticks * legs_count, 1):7.2f} µs")
    print(f"  all-in per leg per 20 ms  {1e6 * cpu / max(ticks * legs_count, 1):7.2f} µs")
    print(f"  CPU                       {100 * cpu / wall:7.1f} % of one core")
    p99 = 1000 * float(np.percentile(late, 99))
    print(f"  tick lateness p99         {p99:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--quiet", action="store_true", help="phones send a faint tone (like a listener)")
    args = parser.parse_args()
    print(f"RtpLeg on {args.loop}, phones sending {'a faint' if args.quiet else 'a loud'} tone:")
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(run(args.legs, args.seconds, args.quiet))
    else:
        asyncio.run(run(args.legs, args.seconds, args.quiet))


if __name__ == "__main__":
    main()
