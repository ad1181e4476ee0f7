"""An in-memory UDP network between sans-I/O peers, with a loss pattern and a clock the test advances."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from callroom.sip.message import parse_message
from callroom.sip.transaction import Addr, TransactionLayer


class Peer(Protocol):
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


class LayerPeer:
    """A bare TransactionLayer seen as a peer (the transport parses, the layer receives)."""

    def __init__(self, layer: TransactionLayer) -> None:
        self.layer = layer

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.layer.receive(parse_message(data), addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        return self.layer.datagrams_to_send()

    def get_timer(self) -> float | None:
        return self.layer.get_timer()

    def handle_timer(self, now: float) -> None:
        self.layer.handle_timer(now)


@dataclass
class Wire:
    time: float
    src: Addr
    dst: Addr
    data: bytes
    dropped: bool

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()


@dataclass
class Net:
    peers: dict[Addr, Peer]
    drop: Callable[[Wire], bool] = lambda w: False
    now: float = 0.0
    log: list[Wire] = field(default_factory=list)

    def flush(self) -> None:
        """Deliver everything queued, including what the deliveries cause, at the current time."""
        moved = True
        while moved:
            moved = False
            for src, peer in list(self.peers.items()):
                for data, dst in peer.datagrams_to_send(self.now):
                    moved = True
                    wire = Wire(self.now, src, dst, data, False)
                    wire.dropped = self.drop(wire) or dst not in self.peers
                    self.log.append(wire)
                    if not wire.dropped:
                        self.peers[dst].receive_datagram(data, src, self.now)

    def run(self, until: float) -> None:
        """Advance the clock from timer to timer up to ``until``, delivering as we go."""
        self.flush()
        while True:
            timers = [t for p in self.peers.values() if (t := p.get_timer()) is not None]
            if not timers or min(timers) > until:
                break
            self.now = max(self.now, min(timers))
            for peer in self.peers.values():
                timer = peer.get_timer()
                if timer is not None and timer <= self.now:
                    peer.handle_timer(self.now)
            self.flush()
        self.now = max(self.now, until)

    def sent(self, src: Addr, starts: str) -> list[Wire]:
        return [w for w in self.log if w.src == src and w.first_line.startswith(starts)]
