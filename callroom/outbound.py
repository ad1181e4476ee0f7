"""Which addresses the node connects to on an application's behalf: webhook URLs and media URLs.

An application names URLs the node then opens itself (``webhook_event_url`` and its failover, a call's
``webhook_url``, ``audio_url`` and every other media URL, ``media_url`` uploads). Left open, that lets any
API key reach what only the node can: its own loopback services, the private network around it, a cloud's
metadata service at 169.254.169.254. ``AddressPolicy`` refuses addresses that are not public (loopback,
link-local, private: RFC 1918, 100.64/10, fc00::/7; unspecified, multicast, broadcast and the other
special-purpose ranges: whatever ``ipaddress`` does not call global), unless a network of ``allow`` holds
them.

The check is made where the connection is: ``resolve`` looks the host up, checks every address it has
(one refused address refuses the host: a name may not mix public and internal answers) and returns the
addresses to connect to, so that a DNS answer that changes between a check and the connection (DNS
rebinding) changes nothing. Both webhook delivery (``webhooks/http.py``) and media fetching
(``audio/fetch.py``) connect only to addresses ``resolve`` returned. ``refusal_for_url`` tells, without any
lookup, whether a URL names a refused address literally, for the API to answer 422 early.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from callroom.errors import AddressRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK = ("127.0.0.0/8", "::1/128")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix: an IPv4 address in its last 32 bits

REFUSED_WHY = ("refused: the host is, or resolves to, a loopback, private, link-local or other non-public address "
               "(the node's --allow-url-network decides which are allowed)")


def internal(address: Address) -> bool:
    """Whether ``address`` is one the policy refuses unless allowed: anything but a public unicast address,
    including the IPv4 address an IPv6 one carries (mapped, 6to4, NAT64)."""
    embedded: Address | None = None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if embedded is not None and internal(embedded):
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return False  # the mapped IPv4 address decides, and it is public
    return address.is_multicast or not address.is_global


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """``refuse_internal``: refuse the addresses ``internal`` names, except those in ``allow``."""

    allow: tuple[Network, ...] = ()
    refuse_internal: bool = True

    @classmethod
    def allowing(cls, networks: Iterable[str]) -> AddressPolicy:
        """The policy of a node started with these ``--allow-url-network`` values (``ValueError`` if one is
        not a network or an address)."""
        return cls(tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip()))

    def permits(self, address: Address) -> bool:
        if not self.refuse_internal or not internal(address):
            return True
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return any(address in net or (mapped is not None and mapped in net) for net in self.allow)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` to connect to, every one of them permitted; ``AddressRefused`` if any is
        not, ``OSError`` (``socket.gaierror``) if the name does not resolve."""
        found = _numeric(host)
        if found is None:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found = []
            for *_, sockaddr in infos:
                address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
                if address not in found:
                    found.append(address)
        refused = [a for a in found if not self.permits(a)]
        if refused:
            raise AddressRefused(host, [str(a) for a in refused])
        return [str(a) for a in found]

    def refusal_for_url(self, url: str) -> str | None:
        """Why the node would refuse ``url`` whatever DNS says (its host is a refused address written as
        such), or None. No lookup is made: a name is only checked when it is connected to."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return None
        found = _numeric(host) if host else None
        if found and any(not self.permits(a) for a in found):
            return REFUSED_WHY
        return None

    def describe(self) -> str:
        """For the node's start-up lines."""
        if not self.refuse_internal:
            return "any address"
        if not self.allow:
            return "public addresses only (--allow-url-network allows more)"
        loopback = any(self.permits(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1"))
        allowed = ", ".join(str(n) for n in self.allow)
        return f"public addresses and {allowed}" + (": loopback URLs allowed" if loopback else "")


UNRESTRICTED = AddressPolicy(refuse_internal=False)


def _numeric(host: str) -> list[Address] | None:
    """The address(es) a host written as an address means, in any form the resolver takes (``127.1``,
    ``2130706433``, ``[::1]``), without a lookup; None for a name."""
    try:  # an IPv6 zone ("fe80::1%eth0", "%25" in a URL) names an interface, not another address
        infos = socket.getaddrinfo(host.strip("[]").split("%", 1)[0], None, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos))
