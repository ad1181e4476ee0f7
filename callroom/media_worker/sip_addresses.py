"""Where a SIP call's packets go: the host of a SIP URI or of an SDP ``c=`` line, as an address the node's
sockets can send to. Host names are looked up once per call, in a worker thread and within a time limit, never
per packet and never on the media loop itself; an address of the other IP family is refused."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from callroom.aio.rtp_leg import RtpLeg
from callroom.sip.dialog import uri_addr
from callroom.sip.fields import SipUri

ADDRESS_TIMEOUT: float = 2.0  # seconds to look up a host name given as a media address
RESOLVE_TIMEOUT: float = 5.0


def maybe_reachable(host: str, local_ip: str) -> bool:
    """False when ``host`` is an IP address of the other family than ``local_ip`` (a name may resolve)."""
    try:
        theirs = ipaddress.ip_address(host).version
    except ValueError:
        return True
    try:
        ours = ipaddress.ip_address(local_ip).version
    except ValueError:
        ours = 4
    return theirs == ours


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def media_address(addr: tuple[str, int], rtp: RtpLeg) -> tuple[str, int]:
    """The address to send ``rtp``'s packets to for an SDP's ``c=`` and port: an address as it is, a host
    name looked up once, off the media loop and within ``ADDRESS_TIMEOUT``. Raises ``ValueError`` when
    there is none the leg's socket can reach."""
    if rtp.reachable(addr):
        return addr
    if is_address(addr[0]):
        raise ValueError(f"cannot send RTP to {addr[0]} from an IPv{rtp.ip_version} socket")
    return await lookup(addr, rtp.ip_version)


async def lookup(addr: tuple[str, int], ip_version: int) -> tuple[str, int]:
    """``addr`` with its host name replaced by its first IPv4 (IPv6) address, looked up in a worker thread
    within ``ADDRESS_TIMEOUT``; ``ValueError`` when there is none."""
    family = socket.AF_INET6 if ip_version == 6 else socket.AF_INET
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(addr[0], addr[1], family=family, type=socket.SOCK_DGRAM), ADDRESS_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"media address {addr[0]!r} does not resolve: {exc or 'timed out'}") from exc
    for *_, sockaddr in found:
        return str(sockaddr[0]), addr[1]
    raise ValueError(f"media address {addr[0]!r} has no IPv{ip_version} address")


async def resolve(uri: SipUri) -> tuple[str, int]:
    """Where an INVITE for ``uri`` goes: its host (or ``maddr``) looked up as an IPv4 address without
    blocking the media loop, with the URI's port or the default. (An A record only: no NAPTR/SRV, RFC 3263.)"""
    host, port = uri_addr(uri)
    try:
        ipaddress.ip_address(host)
        return host, port
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM), RESOLVE_TIMEOUT)
    except TimeoutError as exc:
        raise OSError(f"looking up {host} took more than {RESOLVE_TIMEOUT:g} s") from exc
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: no address")
    address = str(found[0][4][0])
    return address, port

