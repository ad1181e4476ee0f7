"""The UDP side of forks (``media/forks.py``): one datagram socket per fork, in the media process, sending
the packets the tick queued to the fork's targets (``udp:host:port``), only to addresses the node's
``AddressPolicy`` permits. ``sendto`` never waits: a datagram the kernel does not take is lost, as RTP is."""

from __future__ import annotations

import asyncio
import logging
import socket

from callroom.aio.tasks import Tasks
from callroom.errors import AddressRefused
from callroom.media.forks import ForkTap
from callroom.outbound import UNRESTRICTED, AddressPolicy

log = logging.getLogger(__name__)


def parse_target(target: str) -> tuple[str, int]:
    """``udp:host:port`` (``udp:[v6]:port``) as (host, port); ``ValueError`` otherwise."""
    if not target.startswith("udp:"):
        raise ValueError("a fork target is udp:host:port")
    host, _, port = target[4:].rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a fork target is udp:host:port")
    return host.strip("[]"), int(port)


class ForkSockets:
    def __init__(self, policy: AddressPolicy = UNRESTRICTED) -> None:
        self.policy = policy
        self._tasks = Tasks()

    def open(self, tap: ForkTap) -> None:
        self._tasks.spawn(self._run(tap), f"fork {tap.op.call_control_id}")

    async def close(self) -> None:
        await self._tasks.close()

    async def _run(self, tap: ForkTap) -> None:
        where: dict[str, tuple[str, int]] = {}
        try:
            for direction, target in tap.targets.items():
                if target is not None:
                    host, port = parse_target(target)
                    where[direction] = ((await self.policy.resolve(host, port))[0], port)
        except (ValueError, OSError, AddressRefused) as exc:
            log.info("fork of %s: target refused or unknown: %s", tap.op.call_control_id, exc)
            return
        families = {socket.AF_INET6 if ":" in a else socket.AF_INET for a, _ in where.values()}
        socks = {f: socket.socket(f, socket.SOCK_DGRAM) for f in families}
        for s in socks.values():
            s.setblocking(False)
        wake = asyncio.Event()
        tap.notify = wake.set
        try:
            while not tap.stopped:
                await wake.wait()
                wake.clear()
                for direction, packet in tap.take():
                    address = where.get(direction)
                    if address is None:
                        continue
                    try:
                        socks[socket.AF_INET6 if ":" in address[0] else socket.AF_INET].sendto(packet, address)
                    except (BlockingIOError, OSError):
                        tap.dropped += 1
        finally:
            tap.notify = lambda: None
            for s in socks.values():
                s.close()
