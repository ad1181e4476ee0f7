"""Relay legs: the RTP ports that carry a leg's audio between two nodes of a cluster.

A conference is mixed on one node, its home; a member whose call lives on another node is, at the home, a
relay leg named after the call (the mix treats it as any member), and on the call's node a relay leg
bridged to the call. The two relay legs send each other G.711 (PCMU) every 20 ms, as any RTP peer; a bridge
between calls on two nodes is two relay legs, one bridged to each call. ``callroom/cluster/relays.py``
decides which relays exist; this module opens and closes them in the engine.

A few relay ports are kept open ahead (``fill``, reported as ``RelayPorts``): the API process then names one
(``UseRelay``) instead of asking for a port and waiting up to a tick for the answer, twice per link.

A relay leg takes audio only from the address it was told (no latching on to whoever sends first), detects
no DTMF (the call's own node does) and is not a SIP leg (no media timeout). One opened ahead and not used
takes nothing: it has nowhere to send and no address it accepts audio from.
"""

from __future__ import annotations

import logging

from callroom.aio.rtp_leg import RtpLeg
from callroom.media.engine import MediaEngine
from callroom.model import media as m

log = logging.getLogger(__name__)

PCMU = 0
POOL = 16  # relay ports kept open ahead


class RelayLegs:
    def __init__(self, engine: MediaEngine, host: str, ports: tuple[int, int]) -> None:
        self.engine = engine
        self.host = host  # the address the other nodes reach this node's relay ports at
        self.ports = ports
        self.legs: dict[str, RtpLeg] = {}
        self.ahead: dict[int, RtpLeg] = {}  # opened ahead, by port

    async def _bind(self) -> RtpLeg:
        return await RtpLeg.open(self.host, self.ports, symmetric=False, detect_inband=False)

    async def fill(self, target: int = POOL) -> list[int]:
        """Open relay ports ahead until ``target`` wait; the ports opened."""
        opened = []
        while len(self.ahead) < target:
            leg = await self._bind()
            self.ahead[leg.local_port] = leg
            opened.append(leg.local_port)
        return opened

    async def open(self, leg_id: str, remote: tuple[str, int] | None, attach: str | None) -> tuple[str, int]:
        """A relay leg named ``leg_id`` (one of that name is replaced), bridged to ``attach`` if named."""
        self._place(leg_id, await self._bind(), remote, attach)
        return self.host, self.legs[leg_id].local_port

    def use(self, leg_id: str, port: int, remote: tuple[str, int] | None, attach: str | None) -> bool:
        """``open`` with the port opened ahead; False if there is no such port."""
        leg = self.ahead.pop(port, None)
        if leg is None:
            log.error("relay port %d was not opened ahead (relay leg %s not opened)", port, leg_id)
            return False
        self._place(leg_id, leg, remote, attach)
        return True

    def _place(self, leg_id: str, leg: RtpLeg, remote: tuple[str, int] | None, attach: str | None) -> None:
        self.close(leg_id)
        if remote is not None:
            leg.set_remote(remote, PCMU)
        self.legs[leg_id] = leg
        self.engine.add_leg(leg_id, leg)
        if attach is not None:
            self.engine.apply([m.Bridge(attach, leg_id)])

    def peer(self, leg_id: str, remote: tuple[str, int]) -> None:
        leg = self.legs.get(leg_id)
        if leg is None:
            log.warning("relay leg %s is not open (its peer %s:%s is dropped)", leg_id, *remote)
            return
        leg.set_remote(remote, PCMU)

    def close(self, leg_id: str) -> None:
        """Close the relay leg and forget where it was placed (a mix it was in no longer hears it)."""
        if self.legs.pop(leg_id, None) is None:
            return
        self.engine.apply([m.Release(leg_id)])
        self.engine.remove_leg(leg_id)

    def close_all(self) -> None:
        for leg_id in list(self.legs):
            self.close(leg_id)
        for leg in self.ahead.values():
            leg.close()
        self.ahead.clear()
