"""The UDP socket under one RTP session: non-blocking, read when the caller says so, with arrival times.

An :class:`~callroom.media.rtp_leg.RtpLeg` reads its socket either from an event-loop reader (a leg on its
own) or once per tick, with every other leg's, through :class:`~callroom.media.rtp_batch.RtpBatch` (legs in
the media engine). Either way each datagram comes with the time it arrived, so the RFC 3550 jitter and the
jitter buffer see when a packet really came, not when it was read. On Linux that time is the kernel's
receive timestamp (``SO_TIMESTAMPNS``); elsewhere it is the time of the read.

Times are seconds on ``time.monotonic()``'s clock, which is the clock of the event loops callroom uses
(asyncio's ``loop.time()`` is ``time.monotonic()``; uvloop's is the same clock in 1 ms steps). The caller
passes ``realtime_offset`` = ``time.time() - time.monotonic()`` (read once per batch), the amount to take
off a kernel timestamp.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Final

__all__ = ["ANC_SPACE", "MAX_DATAGRAM", "RtpSocket", "kernel_arrival", "realtime_offset"]

log = logging.getLogger(__name__)

Addr = tuple[str, int]
Handler = Callable[[bytes, Addr, float], None]

MAX_DATAGRAM: Final = 4096  # 120 ms of G.711 is 972 bytes; anything longer is not audio we can play
_SO_TIMESTAMPNS: Final = 35  # Linux (asm-generic), not exported by the socket module
_TIMESPEC: Final = struct.Struct("@ll")  # struct timespec of SO_TIMESTAMPNS (tv_sec, tv_nsec as longs)
ANC_SPACE: Final = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
"""The ancillary buffer size to pass to ``recvmsg`` for the arrival timestamp."""


def realtime_offset() -> float:
    """``time.time() - time.monotonic()``: subtract from a kernel (wall-clock) timestamp."""
    return time.time() - time.monotonic()


def kernel_arrival(ancillary: list[tuple[int, int, bytes]], offset: float) -> float:
    """The arrival time in ``recvmsg``'s ancillary data (0.0 if it holds none), on the monotonic clock."""
    level, kind, value = ancillary[0]
    if kind == _SO_TIMESTAMPNS and level == socket.SOL_SOCKET and len(value) == _TIMESPEC.size:
        sec, nsec = _TIMESPEC.unpack(value)
        arrival: float = sec - offset + nsec * 1e-9
        return arrival
    return 0.0


class RtpSocket:
    """A bound, non-blocking UDP socket. Send errors are counted, never raised (UDP is lossy anyway)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.local_port: int = sock.getsockname()[1]
        self.errors = 0
        self.closed = False
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

    def sendto(self, data: bytes | memoryview, addr: Addr) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:  # full socket buffer, unreachable network, ICMP error from an earlier send
            self.errors += 1
            log.debug("RTP send to %s failed: %s", addr, exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
