"""The asyncio adapter that puts one sans-I/O :class:`~callroom.sip.ua.SipEndpoint` on a UDP socket.

Datagrams go in with ``loop.time()``; after every input (datagram, timer, command) the endpoint's
outgoing datagrams are sent, its events handed to ``on_event``, and exactly one ``loop.call_at`` timer
is kept for ``get_timer()``. Commands called from inside ``on_event`` are fine: their output is sent in
the same pass.

Incoming INVITEs go through *gates* before the callback sees them. The default gate admits only source
addresses in ``allow`` (loopback by default) and answers the rest with 403. Digest authentication is
meant to be another gate: it gets the INVITE request and returns a :class:`Rejection` (a 401/407
challenge) or ``None`` to admit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from callroom.aio.sip_stream import StreamConnections
from callroom.logs import sip_trace
from callroom.sip.call import CallEvent, IncomingCall
from callroom.sip.message import SipRequest, SipUri
from callroom.sip.sdp import SessionDescription
from callroom.sip.transaction import Addr
from callroom.sip.ua import SipEndpoint

__all__ = ["LOOPBACK", "InviteGate", "Rejection", "SipTransport", "SourceNetworks"]

log = logging.getLogger(__name__)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: Final[tuple[IpNetwork, ...]] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True, slots=True)
class Rejection:
    """How a gate refuses an INVITE, with any headers the response needs (a digest challenge's
    WWW-Authenticate)."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class InviteGate(Protocol):
    """Decides whether a new incoming call may reach ``on_event``."""

    def __call__(self, call: IncomingCall, invite: SipRequest) -> Rejection | None: ...


class SourceNetworks:
    """Admit INVITEs whose source address lies in one of ``networks``; 403 the others."""

    def __init__(self, networks: Iterable[IpNetwork | str]) -> None:
        self.networks = tuple(ipaddress.ip_network(n) if isinstance(n, str) else n for n in networks)

    def __call__(self, call: IncomingCall, invite: SipRequest) -> Rejection | None:
        return None if self.admits(call.source_addr[0]) else Rejection(403, "Forbidden")

    def admits(self, host: str) -> bool:
        try:
            source = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        return any(source in net for net in self.networks)


RECEIVE_BUDGET: Final = 0.002  # seconds of SIP work per turn of the loop before the tick gets its turn
RECEIVE_QUEUE: Final = 4096  # datagrams read but not yet handled; more are dropped
RECEIVE_BUFFER: Final = 4 * 1024 * 1024  # the socket's receive buffer asked for (the kernel may give less)


def _count_status(counts: dict[int, int], response: bytes) -> None:
    """Count a response datagram under its status code (one that has none is not counted)."""
    code = response[8:11]
    if code.isdigit():
        status = int(code)
        counts[status] = counts.get(status, 0) + 1


def _grow_receive_buffer(transport: asyncio.DatagramTransport) -> None:
    """A larger kernel buffer for bursts (Linux's default is ~208 kB): SO_RCVBUFFORCE when we may (root),
    else SO_RCVBUF, which the kernel caps at net.core.rmem_max."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
            break
        except OSError:
            continue
    log.debug("SIP receive buffer: %d bytes", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.owner: SipTransport | None = None  # set right after binding

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if self.owner is not None:
            self.owner._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)


class SipTransport:
    """One UDP SIP socket and its endpoint. Create with :meth:`open`; stop with :meth:`close`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.DatagramTransport, endpoint: SipEndpoint,
                 on_event: Callable[[CallEvent], None], gates: Sequence[InviteGate]) -> None:  # fmt: skip
        self._loop = loop
        self._transport = transport
        self.endpoint = endpoint
        self.on_event = on_event
        self.gates = list(gates)
        self.rejected = 0  # INVITEs refused by a gate
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._busy = False
        self._again = False
        self._closed = False
        self._inbox: deque[tuple[bytes, Addr]] = deque()
        self._draining = False
        self.received = 0  # datagrams handed to the endpoint
        self.overflowed = 0  # datagrams dropped because RECEIVE_QUEUE were waiting
        self.send_errors = 0  # datagrams the socket refused to send (an address it cannot reach)
        self.responses_sent: dict[int, int] = {}  # SIP responses by status code (retransmissions too)
        self.responses_received: dict[int, int] = {}
        self.trace = False  # every message in and out, whole, on the ``callroom.sip.trace`` log (``--sip-trace``)
        # TCP and TLS: their messages join the datagrams' inbox; messages to their peers go over them.
        self.streams = StreamConnections(self._on_datagram, endpoint.stream_opened, endpoint.stream_closed)

    @classmethod
    async def open(cls, host: str = "127.0.0.1", port: int = 5060, *,
                   on_event: Callable[[CallEvent], None] = lambda _ev: None,
                   allow: Iterable[IpNetwork | str] = LOOPBACK, gates: Sequence[InviteGate] = (),
                   advertise: str | None = None, user: str = "callroom",
                   user_agent: str = "callroom", sources: InviteGate | None = None) -> SipTransport:  # fmt: skip
        """Bind ``host:port`` (0 picks a free port). ``advertise`` is the address put in Via and Contact
        when ``host`` is a wildcard. ``gates`` run after the ``allow`` check, in order; ``sources`` replaces
        that check (a gate that also knows trunks' addresses)."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(_Datagrams, local_addr=(host, port))
        _grow_receive_buffer(transport)
        bound = transport.get_extra_info("sockname")
        endpoint = SipEndpoint((advertise or host, int(bound[1])), user=user, user_agent=user_agent)
        self = cls(loop, transport, endpoint, on_event, [sources or SourceNetworks(allow), *gates])
        protocol.owner = self
        return self

    @property
    def local_addr(self) -> Addr:
        return self.endpoint.local_addr

    @property
    def timer_at(self) -> float | None:
        """When the one armed timer fires (loop time), or None."""
        return self._timer_at if self._timer is not None else None

    # ---- commands (each passes the loop clock and flushes) ----------------------------------------
    def invite(self, to_uri: SipUri | str, from_uri: SipUri | str, sdp: SessionDescription | None, *,
               addr: Addr | None = None, display_name: str | None = None,
               credentials: tuple[str, str] | None = None, headers: Sequence[tuple[str, str]] = (),
               extra_headers: Sequence[tuple[str, str]] = ()) -> str:  # fmt: skip
        call_id = self.endpoint.invite(to_uri, from_uri, sdp, self._loop.time(), addr=addr, display_name=display_name,
                                       credentials=credentials, headers=headers, extra_headers=extra_headers)
        self._flush()
        return call_id

    def ring(self, call_id: str, sdp: SessionDescription | None = None) -> None:
        self.endpoint.ring(call_id, self._loop.time(), sdp)
        self._flush()

    def answer(self, call_id: str, sdp: SessionDescription | None,
               extra_headers: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        self.endpoint.answer(call_id, sdp, self._loop.time(), extra_headers)
        self._flush()

    def reject(self, call_id: str, status: int, reason: str | None = None) -> None:
        self.endpoint.reject(call_id, status, self._loop.time(), reason)
        self._flush()

    def cancel(self, call_id: str) -> None:
        self.endpoint.cancel(call_id, self._loop.time())
        self._flush()

    def send_in_dialog(self, call_id: str, method: str, *, body: bytes = b"", content_type: str | None = None,
                       extra: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        self.endpoint.send_in_dialog(call_id, method, self._loop.time(), body=body, content_type=content_type,
                                     extra=extra)
        self._flush()

    def reinvite(self, call_id: str, sdp: SessionDescription) -> None:
        self.endpoint.reinvite(call_id, sdp, self._loop.time())
        self._flush()

    def hangup(self, call_id: str) -> None:
        self.endpoint.hangup(call_id, self._loop.time())
        self._flush()

    def register(self, key: str, registrar: SipUri, aor: SipUri, *, addr: Addr,
                 credentials: tuple[str, str] | None, expires: int) -> None:  # fmt: skip
        self.endpoint.register(key, registrar, aor, self._loop.time(), addr=addr, credentials=credentials,
                               expires=expires)
        self._flush()

    def unregister(self, key: str) -> None:
        self.endpoint.unregister(key, self._loop.time())
        self._flush()

    async def listen_stream(self, host: str, port: int, kind: str, context: ssl.SSLContext | None = None) -> int:
        """Take SIP over ``kind`` ("TCP", or "TLS" with ``context``) on ``host:port`` too; the port bound."""
        bound = await self.streams.listen(host, port, kind, context)
        self.endpoint.stream_ports[kind] = bound
        return bound

    # ---- I/O -------------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        """Queue the datagram: SIP is handled in slices of ``RECEIVE_BUDGET`` seconds per loop turn, so a burst
        of datagrams (or a few costly ones) cannot hold up the audio tick that runs on the same loop."""
        if self._closed:
            return
        if len(self._inbox) >= RECEIVE_QUEUE:
            self.overflowed += 1  # the kernel would have dropped it a moment later; counting costs less
            return
        self._inbox.append((data, (addr[0], addr[1])))
        if not self._draining:
            self._draining = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        deadline = time.perf_counter() + RECEIVE_BUDGET
        inbox = self._inbox
        try:
            while inbox and not self._closed:
                data, addr = inbox.popleft()
                self.received += 1
                if self.trace:
                    sip_trace.info("received from %s:%s\n%s", addr[0], addr[1], data.decode("utf-8", "replace"),
                                   extra={"peer": f"{addr[0]}:{addr[1]}"})
                if data.startswith(b"SIP/2.0 "):
                    _count_status(self.responses_received, data)
                try:
                    self.endpoint.receive_datagram(data, addr, self._loop.time())
                except Exception:  # the endpoint never raises; a bug must not stop SIP for every call
                    log.exception("SIP datagram from %s failed", addr)
                if time.perf_counter() > deadline:
                    break
            self._flush()
        finally:
            if inbox and not self._closed:
                self._loop.call_soon(self._drain)  # the rest after the loop's other work (the tick)
            else:
                self._draining = False

    def _on_timer(self) -> None:
        self._timer = None
        at, self._timer_at = self._timer_at, None
        if self._closed:
            return
        now = self._loop.time()
        try:
            self.endpoint.handle_timer(max(now, at) if at is not None else now)  # call_at may fire a hair early
        except Exception:
            log.exception("SIP timers failed")
        self._flush()

    def _flush(self) -> None:
        """Send what the endpoint queued, deliver its events, re-arm the timer; repeat while the
        callbacks' commands produce more. The timer is re-armed whatever happens on the way."""
        if self._busy:
            self._again = True
            return
        self._busy = True
        try:
            while True:
                self._again = False
                for data, addr in self.endpoint.datagrams_to_send(self._loop.time()):
                    self._send(data, addr)
                while (event := self.endpoint.next_event()) is not None:
                    self._deliver(event)
                if not self._again:
                    break
        finally:
            self._busy = False
            self._arm_timer()

    def _send(self, data: bytes, addr: Addr) -> None:
        """One datagram; an address the socket cannot send to fails this datagram only (its transaction
        times out as it would on a lost packet)."""
        if self._closed:
            return
        if self.trace:
            sip_trace.info("sent to %s:%s\n%s", addr[0], addr[1], data.decode("utf-8", "replace"),
                           extra={"peer": f"{addr[0]}:{addr[1]}"})
        if data.startswith(b"SIP/2.0 "):
            _count_status(self.responses_sent, data)
        if addr in self.endpoint.streams:
            if not self.streams.send(addr, data):
                self.send_errors += 1
            return
        try:
            self._transport.sendto(data, addr)
        except (OSError, ValueError, TypeError, OverflowError) as exc:
            self.send_errors += 1
            log.info("SIP send to %s failed: %s", addr, exc)

    def _deliver(self, event: CallEvent) -> None:
        if isinstance(event, IncomingCall):
            call = self.endpoint.calls.get(event.call_id)
            if call is None:
                return  # already gone (cancelled in the same pass): nothing to admit
            rejection = self._check(event, call.invite)
            if rejection is not None:
                self.rejected += 1
                # An overloaded node's 503s may come by the hundred a second: not one log line each.
                log.log(logging.DEBUG if rejection.status == 503 else logging.INFO, "refused INVITE %s from %s: %d",
                        event.call_id, event.source_addr, rejection.status)
                self.endpoint.reject(event.call_id, rejection.status, self._loop.time(), rejection.reason,
                                     rejection.headers)
                self._again = True
                return
        try:
            self.on_event(event)
        except Exception:
            log.exception("SIP event handler failed on %r", event)

    def _check(self, event: IncomingCall, invite: SipRequest) -> Rejection | None:
        for gate in self.gates:
            rejection = gate(event, invite)
            if rejection is not None:
                return rejection
        return None

    def _arm_timer(self) -> None:
        at = None if self._closed else self.endpoint.get_timer()
        if self._timer is not None and at != self._timer_at:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if at is not None and self._timer is None:
            self._timer_at = at
            self._timer = self._loop.call_at(at, self._on_timer)

    def close(self) -> None:
        """Stop the timer and close the socket (calls in progress are abandoned, not hung up)."""
        if self._closed:
            return
        self._closed = True
        self._arm_timer()
        self._transport.close()
        self.streams.close()

    async def __aenter__(self) -> SipTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
