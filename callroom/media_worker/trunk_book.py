"""The SIP trunks as the media process uses them: where an INVITE to a number goes and with what caller ID
and credentials, and which source addresses are a trunk's (its INVITEs are admitted and routed by number).

A trunk's gateway named by host name is looked up when the trunks are set (off the loop, 2 s at most): its
addresses count as the trunk's sources from then on, and an INVITE to it goes to the first one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

from callroom.aio.sip_transport import IpNetwork, Rejection, SourceNetworks
from callroom.model.trunks import Trunk, parse_trunk_endpoint
from callroom.sip.call import IncomingCall
from callroom.sip.fields import SipUri
from callroom.sip.message import SipRequest
from callroom.sip.sdes import SrtpMode
from callroom.sip.transaction import Addr

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class TrunkInvite:
    """What an INVITE through a trunk is made of."""

    trunk: Trunk
    to: SipUri
    from_: SipUri
    addr: Addr
    credentials: tuple[str, str] | None
    headers: tuple[tuple[str, str], ...]


class TrunkBook:
    """The trunks by id, and the networks their INVITEs come from."""

    def __init__(self) -> None:
        self.trunks: dict[str, Trunk] = {}
        self.addresses: dict[str, tuple[str, ...]] = {}  # trunk id -> the gateway's IP addresses
        self._sources: list[tuple[IpNetwork, str]] = []

    async def set(self, trunks: tuple[Trunk, ...]) -> None:
        """Replace the trunks; gateways named by host name are looked up (one that does not resolve has no
        address: calls to it fail with 503 and only its ``inbound_networks`` count as its sources)."""
        addresses = {t.id: await _addresses(t.host) for t in trunks}
        sources: list[tuple[IpNetwork, str]] = []
        for trunk in trunks:
            for text in (*addresses[trunk.id], *trunk.inbound_networks):
                try:
                    sources.append((ipaddress.ip_network(text, strict=False), trunk.id))
                except ValueError:
                    log.warning("trunk %s: %r is not a network", trunk.name, text)
        # The narrowest network first: a gateway's own address wins over another trunk's wide network.
        sources.sort(key=lambda s: -s[0].prefixlen)
        self.trunks = {t.id: t for t in trunks}
        self.addresses = addresses
        self._sources = sources

    def trunks_at(self, host: str) -> tuple[str, ...]:
        """The ids of the trunks an INVITE from IP address ``host`` may come from (several accounts may use
        one provider: the number called tells them apart), narrowest network first."""
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return ()
        found = (trunk_id for net, trunk_id in self._sources if ip.version == net.version and ip in net)
        return tuple(dict.fromkeys(found))

    def srtp_of(self, trunk_ids: tuple[str, ...]) -> SrtpMode:
        """The ``srtp`` setting for an INVITE from the trunks ``trunk_ids`` (those at its source): the strictest
        of theirs (several trunks at one address are one provider, which either asks for SRTP or not)."""
        modes = {self.trunks[t].srtp for t in trunk_ids if t in self.trunks}
        return next((SrtpMode(m) for m in ("required", "optional") if m in modes), SrtpMode.OFF)

    def invite(self, endpoint: str, from_number: str, local_host: str) -> TrunkInvite:
        """The INVITE to a ``trunk:`` far end from ``from_number`` (E.164, checked by the control plane):
        ``LookupError`` when the trunk is gone or its gateway has no address."""
        trunk_id, user = parse_trunk_endpoint(endpoint)
        trunk = self.trunks.get(trunk_id)
        if trunk is None:
            raise LookupError(f"no trunk {trunk_id!r}")
        hosts = self.addresses.get(trunk_id, ())
        if not hosts:
            raise LookupError(f"trunk {trunk.name}: gateway {trunk.host!r} has no address")
        params: dict[str, str | None] = {"user": "phone"}
        if trunk.transport != "udp":
            params["transport"] = trunk.transport
        to = SipUri(trunk.host, user=user, port=trunk.port, params=params)
        caller = from_number if trunk.number_format == "+e164" else from_number.lstrip("+")
        headers: tuple[tuple[str, str], ...] = ()
        if trunk.caller_id_header == "pai":
            # The From names our account with the provider; the caller ID is asserted (RFC 3325).
            from_ = SipUri(trunk.host, user=trunk.username or caller)
            headers = (("P-Asserted-Identity", f"<{SipUri(trunk.host, user=caller, params={'user': 'phone'})}>"),)
        else:
            from_ = SipUri(trunk.host, user=caller, params={"user": "phone"})
        credentials = (trunk.username, trunk.password) if trunk.username and trunk.password else None
        return TrunkInvite(trunk, to, from_, (hosts[0], trunk.port), credentials, headers)


class TrunkOrNetworks:
    """The source gate of a node with trunks: an INVITE from a trunk's address, or from one of the allowed
    networks, may come in; others get 403."""

    def __init__(self, book: TrunkBook, allowed: SourceNetworks) -> None:
        self.book = book
        self.allowed = allowed

    def __call__(self, call: IncomingCall, invite: SipRequest) -> Rejection | None:
        if self.book.trunks_at(call.source_addr[0]):
            return None
        return self.allowed(call, invite)


async def _addresses(host: str) -> tuple[str, ...]:
    try:
        return (ipaddress.ip_address(host).compressed,)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM), LOOKUP_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        log.warning("trunk gateway %r does not resolve: %s", host, exc)
        return ()
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))
