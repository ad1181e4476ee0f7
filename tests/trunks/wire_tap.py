"""A tap on the loopback interface: the UDP datagrams between two port ranges, as they were on the wire
(a raw ``AF_PACKET`` socket, which needs CAP_NET_RAW: the tests that use it skip without it)."""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

import pytest

_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4  # each loopback packet is seen twice, going out and coming in: keep one


class WireTap:
    """Keeps the UDP payloads sent from a port in ``src`` to a port in ``dst`` (ranges, high end excluded)."""

    def __init__(self, src: tuple[int, int], dst: tuple[int, int]) -> None:
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_IP))
        except (PermissionError, AttributeError) as exc:
            pytest.skip(f"no raw socket to tap loopback with: {exc}")
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.1)
        self.src, self.dst = src, dst
        self.payloads: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WireTap:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == _PACKET_OUTGOING:
                continue
            ip = frame[14:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
                continue
            udp = ip[(ip[0] & 0x0F) * 4:]
            sport, dport, length = struct.unpack_from("!HHH", udp)
            if self.src[0] <= sport < self.src[1] and self.dst[0] <= dport < self.dst[1]:
                self.payloads.append(bytes(udp[8:length]))
