"""SIP far ends: phones, trunks, SIPp and baresip calling the node, and the node calling them.

Runs on the media loop, beside the engine: one UDP SIP socket (``SipTransport`` over the sans-I/O
``SipEndpoint``) and one ``RtpLeg`` per answered call. Signalling instructions from the control plane
(ring, answer, reject, release) are carried out here; far-end facts go back to the control plane on
the API loop through ``report``.

Routing of incoming calls: the request-URI's user part names the application, either by its
``inbound.sip_subdomain`` or by its id (``sip:<connection_id>@node``). Calls from outside the
allowed source networks are refused with 403 before anything else; unknown users get 404.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from callroom.control import media_ops as m
from callroom.errors import ProtocolError
from callroom.media.engine import MediaEngine
from callroom.media.rtp_leg import RtpLeg
from callroom.media.sip_transport import InviteGate, IpNetwork, Rejection, SipTransport
from callroom.sip import call as sip_events
from callroom.sip.dialog import uri_addr
from callroom.sip.digest import DigestAuth
from callroom.sip.fields import SipUri
from callroom.sip.message import SipRequest
from callroom.sip.sdp import SessionDescription, accept_answer, make_offer, negotiate_answer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SipConfig:
    host: str = "127.0.0.1"
    port: int = 5060
    advertise: str | None = None  # the address put in Contact/SDP when host is a wildcard
    rtp_ports: tuple[int, int] = (20000, 30000)
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Digest credentials (username, password) callers must prove; empty: the networks above suffice.
    credentials: tuple[tuple[str, str], ...] = ()
    realm: str = "callroom"


@dataclass(frozen=True, slots=True)
class Incoming:
    """A new INVITE, for the control plane to route: ``accept(call_control_id)`` or ``refuse(status)``."""

    sip_call_id: str
    user: str
    from_: str
    to: str


@dataclass
class SipLeg:
    sip_call_id: str
    call_control_id: str | None
    outgoing: bool
    offer: SessionDescription | None = None  # theirs (incoming) or ours (outgoing)
    rtp: RtpLeg | None = None
    version: int = 0
    released: bool = False
    pending_answer: bool = False
    ops: list[m.MediaOp] = field(default_factory=list)


Report = Callable[[str, str, Any], None]  # (fact, call_control_id, detail: status, SIP cause or quality stats)


class SipPhones:
    """All SIP legs of a node. Lives on the media loop; ``apply`` receives the control plane's ops."""

    def __init__(self, engine: MediaEngine, config: SipConfig, *, on_incoming: Callable[[Incoming], None],
                 report: Report) -> None:
        self.engine = engine
        self.config = config
        self.on_incoming = on_incoming
        self.report = report
        self.transport: SipTransport | None = None
        self.by_sip: dict[str, SipLeg] = {}
        self.by_cid: dict[str, SipLeg] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def media_ip(self) -> str:
        return self.config.advertise or self.config.host

    async def start(self) -> None:
        allow: Iterable[IpNetwork | str] = self.config.allow
        gates: list[InviteGate] = []
        if self.config.credentials:
            auth = DigestAuth(dict(self.config.credentials), self.config.realm, secrets.token_bytes(32))
            gates.append(DigestGate(auth))
        self.transport = await SipTransport.open(
            self.config.host, self.config.port, on_event=self._on_event, allow=allow, gates=gates,
            advertise=self.config.advertise,
        )

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.local_addr[1]

    def close(self) -> None:
        for leg in list(self.by_sip.values()):
            self._hang_up(leg)
        if self.transport is not None:
            self.transport.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- from the control plane ---------------------------------------------------------------------

    def accept(self, sip_call_id: str, call_control_id: str) -> None:
        """The control plane created a leg for this INVITE: it rings until the application answers."""
        leg = self.by_sip.get(sip_call_id)
        if leg is None or self.transport is None:
            self.report("hangup", call_control_id, "487")
            return
        leg.call_control_id = call_control_id
        self.by_cid[call_control_id] = leg
        self.transport.ring(sip_call_id)

    def refuse(self, sip_call_id: str, status: int) -> None:
        leg = self.by_sip.pop(sip_call_id, None)
        if leg is not None and self.transport is not None:
            self.transport.reject(sip_call_id, status)

    def quality(self, call_control_id: str) -> dict[str, Any] | None:
        """The call_quality_stats of a live SIP leg (None for other legs)."""
        leg = self.by_cid.get(call_control_id)
        return None if leg is None or leg.rtp is None else leg.rtp.stats().call_quality_stats()

    def apply(self, ops: list[m.MediaOp]) -> None:
        for op in ops:
            try:
                self._apply(op)
            except Exception:
                log.exception("SIP op %r failed", op)

    def _apply(self, op: m.MediaOp) -> None:
        match op:
            case m.Ring(call_control_id=cid, endpoint=endpoint, from_=from_) if endpoint.startswith("sip:"):
                self._spawn(self._dial(cid, endpoint, from_))
            case m.Answer(call_control_id=cid) if cid in self.by_cid:
                self._spawn(self._answer(self.by_cid[cid]))
            case m.Reject(call_control_id=cid, sip_status=status) if cid in self.by_cid:
                leg = self.by_cid.pop(cid)
                self.by_sip.pop(leg.sip_call_id, None)
                if self.transport is not None:
                    self.transport.reject(leg.sip_call_id, status)
            case m.Release(call_control_id=cid) if cid in self.by_cid:
                self._hang_up(self.by_cid[cid])
            case _:
                pass

    async def _dial(self, cid: str, endpoint: str, from_: str) -> None:
        assert self.transport is not None
        try:
            target = SipUri.parse(endpoint)
            rtp = await RtpLeg.open(self.media_ip, self.config.rtp_ports, on_dtmf=self.engine.dtmf_from(cid))
        except (ProtocolError, OSError, ValueError) as exc:
            log.warning("cannot dial %s: %s", endpoint, exc)
            self.report("failed", cid, 404)
            return
        try:
            addr = await resolve(target)
        except OSError as exc:
            rtp.close()
            log.warning("cannot dial %s: %s", endpoint, exc)
            self.report("failed", cid, 404 if isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_NONAME
                        else 503)
            return
        offer = make_offer(self.media_ip, rtp.local_port)
        user = from_.lstrip("+") or "callroom"
        from_uri = SipUri(self.media_ip, user=user, port=self.port)
        sip_call_id = self.transport.invite(target, from_uri, offer, addr=addr)
        leg = SipLeg(sip_call_id, cid, outgoing=True, offer=offer, rtp=rtp)
        self.by_sip[sip_call_id] = leg
        self.by_cid[cid] = leg

    async def _answer(self, leg: SipLeg) -> None:
        assert self.transport is not None and leg.call_control_id is not None and leg.offer is not None
        cid = leg.call_control_id
        try:
            rtp = await RtpLeg.open(self.media_ip, self.config.rtp_ports, on_dtmf=self.engine.dtmf_from(cid))
            agreed = negotiate_answer(leg.offer, self.media_ip, rtp.local_port)
        except (ProtocolError, OSError) as exc:
            log.warning("cannot answer %s: %s", leg.sip_call_id, exc)
            self.transport.reject(leg.sip_call_id, 488)
            self.report("hangup", cid, "488")
            return
        if leg.released:
            rtp.close()
            return
        rtp.set_remote(agreed.remote_rtp_addr, agreed.codec.pt, agreed.telephone_event_pt, agreed.direction.value)
        # A peer that sends RFC 4733 events does not need its audio searched for DTMF tones.
        rtp.detect_inband = agreed.telephone_event_pt is None
        leg.rtp = rtp
        self.transport.answer(leg.sip_call_id, agreed.answer)
        self.engine.add_leg(cid, rtp)

    def _hang_up(self, leg: SipLeg) -> None:
        leg.released = True
        self.by_sip.pop(leg.sip_call_id, None)
        if leg.call_control_id is not None:
            self.by_cid.pop(leg.call_control_id, None)
            self.engine.remove_leg(leg.call_control_id)
        if self.transport is not None:
            try:
                self.transport.hangup(leg.sip_call_id)
            except (KeyError, ProtocolError, Exception) as exc:  # already gone on the SIP side
                log.debug("hangup of %s: %s", leg.sip_call_id, exc)
        if leg.rtp is not None:
            leg.rtp.close()

    # -- from the network -----------------------------------------------------------------------------

    def _on_event(self, ev: sip_events.CallEvent) -> None:
        try:
            self._event(ev)
        except Exception:
            log.exception("SIP event %r failed", ev)

    def _event(self, ev: sip_events.CallEvent) -> None:
        match ev:
            case sip_events.IncomingCall(call_id=call_id, from_=from_, to=to, request_uri=uri, sdp_offer=offer):
                self.by_sip[call_id] = SipLeg(call_id, None, outgoing=False, offer=offer)
                user = SipUri.parse(str(uri)).user or ""
                self.on_incoming(Incoming(call_id, user, _address(from_), _address(to)))
            case sip_events.CallAnswered(call_id=call_id, sdp_answer=answer):
                leg = self.by_sip.get(call_id)
                if leg is None or leg.call_control_id is None or leg.rtp is None or leg.offer is None:
                    return
                if answer is not None:
                    agreed = accept_answer(leg.offer, answer)
                    leg.rtp.set_remote(agreed.remote_rtp_addr, agreed.codec.pt, agreed.telephone_event_pt,
                                       agreed.direction.value)
                    leg.rtp.detect_inband = agreed.telephone_event_pt is None
                self.engine.add_leg(leg.call_control_id, leg.rtp)
                self.report("answered", leg.call_control_id, None)
            case sip_events.CallFailed(call_id=call_id, status=status):
                leg = self.by_sip.pop(call_id, None)
                if leg is not None and leg.call_control_id is not None:
                    self.by_cid.pop(leg.call_control_id, None)
                    if leg.rtp is not None:
                        leg.rtp.close()
                    self.report("failed", leg.call_control_id, status)
            case sip_events.CallEnded(call_id=call_id) | sip_events.CallCancelled(call_id=call_id):
                leg = self.by_sip.pop(call_id, None)
                if leg is None:
                    return
                leg.released = True
                if leg.call_control_id is not None:
                    self.by_cid.pop(leg.call_control_id, None)
                    self.engine.remove_leg(leg.call_control_id)
                    if leg.rtp is not None:  # the far end hung up: the webhook can carry the call's quality
                        self.report("quality", leg.call_control_id, leg.rtp.stats().call_quality_stats())
                    self.report("hangup", leg.call_control_id, "487" if isinstance(ev, sip_events.CallCancelled)
                                else "200")
                if leg.rtp is not None:
                    leg.rtp.close()
            case sip_events.ReInviteReceived(call_id=call_id, new_sdp=sdp):
                self._reinvite(call_id, sdp)
            case _:
                pass

    def _reinvite(self, call_id: str, sdp: SessionDescription | None) -> None:
        """Hold and resume from the phone: answer with the mirrored direction and follow it."""
        leg = self.by_sip.get(call_id)
        if leg is None or leg.rtp is None or self.transport is None:
            return
        if sdp is None:
            self.transport.answer(call_id, make_offer(self.media_ip, leg.rtp.local_port))
            return
        leg.version += 1
        try:
            agreed = negotiate_answer(sdp, self.media_ip, leg.rtp.local_port, session_version=leg.version)
        except ProtocolError:
            self.transport.reject(call_id, 488)
            return
        leg.rtp.set_remote(agreed.remote_rtp_addr, agreed.codec.pt, agreed.telephone_event_pt,
                           agreed.direction.value)
        self.transport.answer(call_id, agreed.answer)



class DigestGate:
    """Admit an INVITE only with valid digest credentials: for its Request-URI, from the address the nonce
    was issued to, with a nonce not used before at that count. Otherwise challenge it with 401 (a fresh
    nonce, ``stale=true`` when only the nonce was wrong), or 400 for credentials made for another URI."""

    def __init__(self, auth: DigestAuth) -> None:
        self.auth = auth

    def __call__(self, call: sip_events.IncomingCall, invite: SipRequest) -> Rejection | None:
        now = time.time()  # wall clock: nonces carry their issue time and may be checked by another node
        source = call.source_addr[0]
        verdict = self.auth.verify("INVITE", invite.headers.get("Authorization"), now, request_uri=invite.uri,
                                   source=source)
        if verdict.ok:
            return None
        if verdict.wrong_uri:
            return Rejection(400, "Bad Request")
        challenge = self.auth.challenge(now, source, stale=verdict.stale)
        return Rejection(401, "Unauthorized", (("WWW-Authenticate", challenge),))


def _address(name_addr: object) -> str:
    """The user@host of a From/To value, as Telnyx shows ``from`` and ``to``."""
    uri = getattr(name_addr, "uri", name_addr)
    user = getattr(uri, "user", None)
    host = getattr(uri, "host", None)
    if user and host:
        return f"sip:{user}@{host}"
    return str(uri)


RESOLVE_TIMEOUT: float = 5.0


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

