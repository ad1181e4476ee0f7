"""The UDP socket under one RTP session: non-blocking, read when the caller says so, with arrival times.

An :class:`~callroom.aio.rtp_leg.RtpLeg`'s socket is read either by an event-loop reader (``read_from``: a
leg on its own) or once per tick, with every other leg's, by :class:`~callroom.aio.rtp_batch.RtpBatch` (legs
in the media engine). Either way each datagram comes with the time it arrived, so the RFC 3550 jitter and the
jitter buffer see when a packet really came, not when it was read. On Linux that time is the kernel's
receive timestamp (``SO_TIMESTAMPNS``); elsewhere it is the time of the read.

Times are seconds on ``time.monotonic()``'s clock, which is the clock of the event loops callroom uses
(asyncio's ``loop.time()`` is ``time.monotonic()``; uvloop's is the same clock in 1 ms steps). The caller
passes ``realtime_offset`` = ``time.time() - time.monotonic()`` (read once per batch), the amount to take
off a kernel timestamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from callroom.errors import MediaError

__all__ = ["ANC_SPACE", "MAX_DATAGRAM", "TIMESPEC_SIZE", "RtcpEndpoint", "RtpSocket", "bind_rtp_pair",
           "kernel_arrival", "realtime_offset", "timespec_arrival"]

log = logging.getLogger(__name__)

Addr = tuple[str, int]
Handler = Callable[[bytes, Addr, float], None]

MAX_DATAGRAM: Final = 4096  # 120 ms of G.711 is 972 bytes; anything longer is not audio we can play
_SO_TIMESTAMPNS: Final = 35  # Linux (asm-generic), not exported by the socket module
_TIMESPEC: Final = struct.Struct("@ll")  # struct timespec of SO_TIMESTAMPNS (tv_sec, tv_nsec as longs)
TIMESPEC_SIZE: Final = _TIMESPEC.size
ANC_SPACE: Final = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
"""The ancillary buffer size to pass to ``recvmsg`` for the arrival timestamp."""


def realtime_offset() -> float:
    """``time.time() - time.monotonic()``: subtract from a kernel (wall-clock) timestamp."""
    return time.time() - time.monotonic()


def kernel_arrival(ancillary: list[tuple[int, int, bytes]], offset: float) -> float:
    """The arrival time in ``recvmsg``'s ancillary data (0.0 if it holds none), on the monotonic clock."""
    level, kind, value = ancillary[0]
    if kind == _SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
        return timespec_arrival(value, offset)
    return 0.0


def timespec_arrival(value: bytes, offset: float) -> float:
    """``kernel_arrival`` from the timestamp's value (0.0 if it is not a ``struct timespec``)."""
    if len(value) != _TIMESPEC.size:
        return 0.0
    sec, nsec = _TIMESPEC.unpack(value)
    arrival: float = sec - offset + nsec * 1e-9
    return arrival


class RtpSocket:
    """A bound, non-blocking UDP socket. Send errors are counted, never raised (UDP is lossy anyway)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.local_port: int = sock.getsockname()[1]
        self.errors = 0
        self.closed = False
        self._reader: asyncio.AbstractEventLoop | None = None  # the loop reading it (``read_from``)
        self._timestamps = False
        if sys.platform == "linux" and ANC_SPACE:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self._timestamps = True
            except OSError:
                pass

    @classmethod
    def bind(cls, family: socket.AddressFamily, address: tuple[object, ...]) -> RtpSocket:
        """Bind a new UDP socket of ``family`` to ``address``; raises ``OSError`` when the port is taken."""
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return cls(sock)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, handler: Handler, offset: float, limit: int) -> int:
        """Hand up to ``limit`` waiting datagrams to ``handler(data, addr, arrival)``; returns how many."""
        count = 0
        recvmsg = self.sock.recvmsg
        while count < limit:
            try:
                if self._timestamps:
                    data, ancillary, _flags, addr = recvmsg(MAX_DATAGRAM, ANC_SPACE)
                else:
                    data, addr = self.sock.recvfrom(MAX_DATAGRAM)
                    ancillary = []
            except (BlockingIOError, InterruptedError):
                return count
            except OSError as exc:  # e.g. an ICMP error reported on this socket (once): counted
                self.errors += 1
                log.debug("RTP socket error: %s", exc)
                return count
            count += 1
            arrival = kernel_arrival(ancillary, offset) if ancillary else 0.0
            handler(data, addr, arrival or time.monotonic())
        return count

    def read_from(self, loop: asyncio.AbstractEventLoop, handler: Handler) -> None:
        """Have ``loop`` read the socket as datagrams arrive, handing them to ``handler`` (``read``), until
        ``stop_reading`` or ``close``."""
        if self._reader is None and not self.closed:
            loop.add_reader(self.fileno(), self._readable, handler)
            self._reader = loop

    def stop_reading(self) -> None:
        loop, self._reader = self._reader, None
        if loop is not None:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(self.fileno())

    def _readable(self, handler: Handler) -> None:
        self.read(handler, realtime_offset(), 64)

    def sendto(self, data: bytes | memoryview, addr: Addr) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:  # full socket buffer, unreachable network, ICMP error from an earlier send
            self.errors += 1
            log.debug("RTP send to %s failed: %s", addr, exc)

    def close(self) -> None:
        if self.closed:
            return
        self.stop_reading()
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


class RtcpEndpoint(asyncio.DatagramProtocol):
    """RTCP: hands every datagram to ``handler``; socket errors (ICMP unreachable) are counted, not raised."""

    def __init__(self) -> None:
        self.handler: Callable[[bytes, Addr], None] = lambda data, addr: None
        self.errors = 0

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.handler(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1
        log.debug("RTCP socket error: %s", exc)


async def _local_address(loop: asyncio.AbstractEventLoop,
                         local_ip: str) -> tuple[socket.AddressFamily, tuple[Any, ...]]:  # fmt: skip
    """The family and socket address of ``local_ip``: an address as it is (the usual case, once per call:
    a lookup goes through a worker thread and back), a name looked up."""
    try:
        ip = ipaddress.ip_address(local_ip)
    except ValueError:
        infos = await loop.getaddrinfo(local_ip, 0, type=socket.SOCK_DGRAM)
        return infos[0][0], infos[0][4]
    return (socket.AF_INET, (local_ip, 0)) if ip.version == 4 else (socket.AF_INET6, (local_ip, 0, 0, 0))


async def bind_rtp_pair(local_ip: str, port_range: tuple[int, int], attempts: int, rng: random.Random,
                        ) -> tuple[RtpSocket, asyncio.DatagramTransport, RtcpEndpoint]:  # fmt: skip
    """RTP on a free even port in ``[low, high)`` picked at random, RTCP on the next port."""
    loop = asyncio.get_running_loop()
    low, high = port_range
    ports = range(low + (low & 1), high - 1, 2)
    if not ports:
        raise ValueError(f"no even port with a free successor in {port_range}")
    family, address = await _local_address(loop, local_ip)
    for _ in range(attempts):
        port = ports[rng.randrange(len(ports))]
        try:
            rtp = RtpSocket.bind(family, (address[0], port, *address[2:]))
        except OSError:
            continue
        try:
            rtcp, endpoint = await loop.create_datagram_endpoint(RtcpEndpoint, local_addr=(local_ip, port + 1))
        except OSError:
            rtp.close()
            continue
        return rtp, rtcp, endpoint
    raise MediaError(f"no free RTP/RTCP port pair on {local_ip} in {port_range} after {attempts} tries")
