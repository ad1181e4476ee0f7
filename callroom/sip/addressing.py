"""How a SIP endpoint names itself on the wire and reaches its peers: the Via and Contact it puts on what it
sends (over UDP, or a TCP/TLS connection the adapter holds with that peer), where an in-dialog request goes,
and the random tokens (Call-IDs, tags, branches) it makes up.

:class:`Addressing` is the base of :class:`~callroom.sip.invite.InviteDialogs` and so of
:class:`~callroom.sip.ua.SipEndpoint`; it does no I/O and keeps no call state.
"""

from __future__ import annotations

import ipaddress
import random

from callroom.sip.call import Call
from callroom.sip.message import SipRequest, SipUri, Via
from callroom.sip.transaction import Addr


class Addressing:
    """One endpoint's own addresses (``local_addr``, the ``streams`` it holds) and how it advertises them."""

    def __init__(self, local_addr: Addr, *, user: str, user_agent: str, rng: random.Random | None) -> None:
        self.local_addr = local_addr
        try:
            self.ip_version = ipaddress.ip_address(local_addr[0]).version
        except ValueError:  # advertised by name: the socket is IPv4
            self.ip_version = 4
        self.user_agent = user_agent
        self.contact = SipUri(host=local_addr[0], user=user, port=local_addr[1])
        # Stream connections (TCP, TLS) the adapter holds, by peer address, and the ports we listen on for
        # each stream transport: what a message to such a peer says in its Via and Contact.
        self.streams: dict[Addr, str] = {}
        self.stream_ports: dict[str, int] = {}
        self._rng = rng or random.SystemRandom()

    def _hop(self, call: Call) -> Addr:
        """Where an in-dialog request (BYE, re-INVITE, ACK) goes: the dialog's next hop (RFC 3261 §12.2.1.1)
        when it is an address of our own family; otherwise the address the call's INVITE came from or went to.
        A host name in a Contact or Record-Route is never looked up here (that would block, and a per-packet
        lookup is a gift to whoever controls the name); an address we cannot send to (IPv6 on an IPv4
        socket) is not tried."""
        assert call.dialog is not None
        if call.peer in self.streams:  # over the call's connection (the peer's Contact may name another port)
            return call.peer
        hop = call.dialog.next_hop()
        return hop if self.sendable(hop) else call.peer

    def sendable(self, addr: Addr) -> bool:
        """Whether ``addr`` is an IP address of the socket's family with a usable port."""
        try:
            ip = ipaddress.ip_address(addr[0])
        except ValueError:
            return False
        return ip.version == self.ip_version and 0 < addr[1] < 65536

    def _peer_of(self, req: SipRequest) -> Addr:
        return req.top_via.response_addr()

    def _via(self, peer: Addr | None = None) -> Via:
        """Our Via for a request to ``peer``: the transport it is reached over, and our port for it."""
        params: dict[str, str | None] = {"branch": "z9hG4bK" + self._token(), "rport": None}
        transport = self.streams.get(peer, "UDP") if peer is not None else "UDP"
        return Via(self.local_addr[0], self.stream_ports.get(transport, self.local_addr[1]), transport, params)

    def _contact(self, peer: Addr, user: str | None = None) -> SipUri:
        """Our Contact for a dialog or registration with ``peer`` (``;transport=tcp`` or ``tls`` over a stream)."""
        transport = self.streams.get(peer)
        if transport is None:
            return self.contact if user is None else SipUri(self.contact.host, user=user, port=self.contact.port)
        return SipUri(self.contact.host, user=user or self.contact.user, port=self.stream_ports.get(transport),
                      params={"transport": transport.lower()})

    def _token(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

