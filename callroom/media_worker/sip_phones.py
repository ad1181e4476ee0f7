"""SIP far ends: phones, trunks, SIPp and baresip calling the node, and the node calling them.

Runs on the media loop, beside the engine: one UDP SIP socket (``SipTransport`` over the sans-I/O
``SipEndpoint``) and one ``RtpLeg`` per answered call. Signalling instructions from the control plane
(ring, answer, reject, release) are carried out here; far-end facts go back to the control plane on
the API loop through ``report``.

Routing of incoming calls: the request-URI's user part names the application, either by its
``inbound.sip_subdomain`` or by its id (``sip:<connection_id>@node``). Calls from outside the
allowed source networks are refused with 403 before anything else; unknown users get 404. An overloaded node
refuses a new INVITE next, with 503 and Retry-After, before any leg, RTP port or message to the control plane
exists (``AdmissionGate``, deciding with ``callroom/admission.py``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from callroom.admission import Admission, Load
from callroom.aio.rtp_leg import RtpLeg
from callroom.aio.sip_stream import server_context
from callroom.aio.sip_transport import InviteGate, IpNetwork, Rejection, SipTransport, SourceNetworks
from callroom.errors import CallroomError, MediaError, ProtocolError, SrtpNotAcceptable
from callroom.media.engine import MediaEngine
from callroom.media_worker.invite_gates import AdmissionGate, DigestGate
from callroom.media_worker.sip_addresses import is_address, lookup, maybe_reachable, media_address
from callroom.media_worker.sip_dialing import OutgoingCalls
from callroom.media_worker.sip_legs import Report, SipLeg, Unanswerable, use_keys
from callroom.media_worker.trunk_book import TrunkOrNetworks
from callroom.model import media as m
from callroom.model.messages import (
    IncomingSipCall,
    SipConfig,
    SipFailed,
    SipHangup,
    SipMediaTimeout,
    SipQuality,
    SipReferProgress,
    TrunkStatus,
)
from callroom.model.trunks import TRUNK_PREFIX, Trunk
from callroom.sip import call as sip_events
from callroom.sip.digest import DigestAuth
from callroom.sip.fields import SipUri
from callroom.sip.message import SipRequest
from callroom.sip.register import RegistrationChanged
from callroom.sip.sdes import SrtpMode, answer_agrees, answer_offer, check_transport, offer_wants, secure_offer
from callroom.sip.sdp import SessionDescription, accept_answer, make_offer, negotiate_answer

log = logging.getLogger(__name__)

SWEEP_INTERVAL: float = 1.0  # seconds between checks for legs whose far end went silent


class SipPhones(OutgoingCalls):
    """All SIP legs of a node. Lives on the media loop; ``apply`` receives the control plane's ops.

    Every way a call can fail on the way to being answered or ended ends it cleanly: a final SIP response or
    a BYE, a fact for the control plane (so the application gets ``call.hangup``), and its RTP ports closed.
    """

    def __init__(self, engine: MediaEngine, config: SipConfig, *, on_incoming: Callable[[IncomingSipCall], None],
                 report: Report, admission: Admission | None = None,
                 load: Callable[[], Load] | None = None) -> None:  # fmt: skip
        super().__init__(engine, config, report)
        self.admission = admission  # None: every INVITE that passes the other gates is taken
        self.draining: int | None = None  # the node drains: INVITEs are refused (a Retry-After in seconds)
        self.load = load or (lambda: Load(len(self.by_sip), len(self.awaiting)))
        self.on_incoming = on_incoming
        self.awaiting: set[str] = set()  # incoming calls handed to the control plane, not yet taken or refused
        self._sweeper: asyncio.TimerHandle | None = None
        self.media_timeouts = 0  # legs hung up because their far end went silent
        self._allowed = SourceNetworks(config.allow)  # phones' networks (--sip-allow), beside the trunks

    async def start(self) -> None:
        allow: Iterable[IpNetwork | str] = self.config.allow
        self._allowed = SourceNetworks(allow)
        gates: list[InviteGate] = []
        await self.trunks.book.set(self.config.trunks)
        if self.config.credentials:  # a trunk proves itself by its address: it is not challenged
            auth = DigestAuth(dict(self.config.credentials), self.config.realm, secrets.token_bytes(32))
            gates.append(DigestGate(auth, exempt=lambda host: bool(self.trunks.book.trunks_at(host))))
        gates.append(self._draining_gate)
        if self.admission is not None:  # last: only calls that may come in at all take from the budget
            gates.append(AdmissionGate(self.admission, self.load))
        self.transport = await SipTransport.open(
            self.config.host, self.config.port, on_event=self._on_event, allow=allow, gates=gates,
            advertise=self.config.advertise, sources=TrunkOrNetworks(self.trunks.book, self._allowed),
        )
        self.transport.trace = self.config.trace
        await self._listen_streams()
        self.trunks.attach(self.transport)
        if self.config.rtp_timeout > 0:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)

    async def _listen_streams(self) -> None:
        assert self.transport is not None
        config = self.config
        if config.tcp_port is not None:
            port = await self.transport.listen_stream(config.host, config.tcp_port, "TCP")
            log.info("SIP listening on tcp %s:%d", config.host, port)
        if config.tls_port is not None:
            if not (config.tls_cert and config.tls_key):
                raise MediaError("SIP over TLS needs a certificate and its key")
            port = await self.transport.listen_stream(config.host, config.tls_port, "TLS",
                                                      server_context(config.tls_cert, config.tls_key))
            log.info("SIP listening on tls %s:%d", config.host, port)

    def close(self) -> None:
        self.trunks.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for leg in list(self.by_sip.values()):
            self._hang_up(leg)
        if self.transport is not None:
            self.transport.close()

    # -- from the control plane ---------------------------------------------------------------------

    def accept(self, sip_call_id: str, call_control_id: str) -> None:
        """The control plane created a leg for this INVITE: it rings until the application answers."""
        self.awaiting.discard(sip_call_id)
        leg = self.by_sip.get(sip_call_id)
        if leg is None or self.transport is None:
            self.report(SipHangup(call_control_id, "487"))
            return
        leg.call_control_id = call_control_id
        self.by_cid[call_control_id] = leg
        try:
            self.transport.ring(sip_call_id)
        except (KeyError, CallroomError) as exc:  # the caller gave up in the meantime
            log.info("cannot ring %s: %s", sip_call_id, exc)

    def set_trunks(self, trunks: tuple[Trunk, ...]) -> None:
        """The trunks changed (added, edited, removed): calls in progress keep going as they are."""
        self.trunks.change(trunks)

    def refuse(self, sip_call_id: str, status: int) -> None:
        self.awaiting.discard(sip_call_id)
        leg = self.by_sip.pop(sip_call_id, None)
        if leg is not None:
            self._reject(sip_call_id, status)

    def counters(self) -> dict[str, int]:
        """What the SIP plane holds and has counted: calls and transactions in the endpoint, legs, and the
        transport's datagrams (handled, dropped for a full queue, refused by the socket)."""
        t = self.transport
        return {
            "calls": len(t.endpoint.calls) if t else 0,
            "transactions": len(t.endpoint.transactions.transactions) if t else 0,
            "legs": len(self.by_sip),
            "received": t.received if t else 0,
            "overflowed": t.overflowed if t else 0,
            "send_errors": t.send_errors if t else 0,
            "refused": t.rejected if t else 0,
            "media_timeouts": self.media_timeouts,
            "setup_backlog": len(self.awaiting),
            **self._admission_counters(),
        }

    def _admission_counters(self) -> dict[str, int]:
        if self.admission is None:
            return {}
        refused = self.admission.refused
        return {"admitted": self.admission.admitted, **{f"refused_{r}": refused[r] for r in refused}}

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

    def drain(self, retry_after: int) -> None:
        """The node drains: new INVITEs get 503 with Retry-After, OPTIONS 503 (calls in progress go on)."""
        self.draining = retry_after
        if self.transport is not None:
            self.transport.endpoint.unavailable = retry_after

    def _draining_gate(self, call: sip_events.IncomingCall, invite: SipRequest) -> Rejection | None:
        if self.draining is None:
            return None
        return Rejection(503, "Service Unavailable", (("Retry-After", str(self.draining)),))

    def _apply(self, op: m.MediaOp) -> None:
        match op:
            case m.Ring(call_control_id=cid, endpoint=endpoint) if endpoint.startswith(("sip:", TRUNK_PREFIX)):
                self._spawn(self._dial(cid, endpoint, op))
            case m.Answer(call_control_id=cid, headers=headers) if cid in self.by_cid:
                self._spawn(self._answer(self.by_cid[cid], headers))
            case m.Reject(call_control_id=cid, sip_status=status) if cid in self.by_cid:
                leg = self.by_cid.pop(cid)
                leg.released = True
                self.by_sip.pop(leg.sip_call_id, None)
                self._reject(leg.sip_call_id, status)
            case m.Release(call_control_id=cid) if cid in self.by_cid:
                self._hang_up(self.by_cid[cid])
            case m.SipRequestInDialog(call_control_id=cid) if cid in self.by_cid and self.transport is not None:
                try:
                    self.transport.send_in_dialog(self.by_cid[cid].sip_call_id, op.method, body=op.body.encode(),
                                                  content_type=op.content_type, extra=op.headers)
                except (KeyError, CallroomError) as exc:  # the call ended meanwhile
                    log.info("cannot send %s on %s: %s", op.method, cid, exc)
                    if op.method == "REFER":
                        self.report(SipReferProgress(cid, "failed", 481))
            case _:
                pass

    async def _answer(self, leg: SipLeg, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """The application answered: RTP ports, the SDP answer (or, to a delayed offer, our offer) in a 200.
        Any failure on the way answers the INVITE with an error instead and ends the call."""
        assert self.transport is not None and leg.call_control_id is not None
        cid = leg.call_control_id
        rtp: RtpLeg | None = None
        try:
            rtp = await self._open_rtp(cid, leg.srtp)
            if leg.offer is None:  # a delayed offer (RFC 3261 13.2.1): ours goes in the 200, theirs in the ACK
                sdp = leg.our_offer = make_offer(self.media_ip, rtp.local_port)
                leg.crypto = secure_offer(sdp, leg.srtp if leg.over_tls else SrtpMode.OFF)
            else:
                agreed = negotiate_answer(leg.offer, self.media_ip, rtp.local_port)
                keys = answer_offer(leg.offer, agreed.answer, leg.srtp, leg.over_tls)
                remote = await media_address(agreed.remote_rtp_addr, rtp)
                if not leg.released:
                    use_keys(leg, rtp, keys)
                    rtp.set_remote(remote, agreed.codec.pt, agreed.telephone_event_pt, agreed.direction.value)
                # A peer that sends RFC 4733 events does not need its audio searched for DTMF tones.
                rtp.detect_inband = agreed.telephone_event_pt is None
                sdp = agreed.answer
        except (ProtocolError, ValueError, Unanswerable) as exc:
            self._not_answered(leg, rtp, exc.status if isinstance(exc, Unanswerable) else 488, exc)
            return
        except (MediaError, OSError) as exc:  # no RTP port pair free
            self._not_answered(leg, rtp, 503, exc)
            return
        if leg.released:  # hung up or cancelled while we were getting ready
            rtp.close()
            return
        leg.rtp = rtp
        self.transport.answer(leg.sip_call_id, sdp, headers)
        self.engine.add_leg(cid, rtp)

    # -- silent far ends ------------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Hang up answered legs whose far end has sent nothing for ``rtp_timeout`` (not while on hold)."""
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)
        now = loop.time()
        for leg in list(self.by_cid.values()):
            rtp = leg.rtp
            if rtp is None or leg.released or not rtp.expects_media:
                continue
            if rtp.silent_for(now) >= self.config.rtp_timeout:
                self.media_timeouts += 1
                cid = leg.call_control_id
                assert cid is not None
                log.info("call %s (%s): no media for %.0f s, hanging up", cid, leg.sip_call_id,
                         self.config.rtp_timeout)
                try:
                    self.report(SipQuality(cid, rtp.stats().call_quality_stats()))
                finally:
                    self._hang_up(leg)
                    self.report(SipMediaTimeout(cid))

    # -- from the network -----------------------------------------------------------------------------

    def _on_event(self, ev: sip_events.CallEvent) -> None:
        try:
            self._event(ev)
        except Exception:
            log.exception("SIP event %r failed", ev)

    def _event(self, ev: sip_events.CallEvent) -> None:
        match ev:
            case sip_events.IncomingCall(call_id=call_id, from_=from_, to=to, request_uri=uri, sdp_offer=offer,
                                         source_addr=source):
                self._incoming(call_id, from_, to, uri, offer, source, ev.custom_headers)
            case sip_events.CallAnswered(call_id=call_id, sdp_answer=answer):
                leg = self.by_sip.get(call_id)
                if leg is None or leg.call_control_id is None or leg.rtp is None or leg.offer is None:
                    return
                self._spawn(self._answered(leg, answer))
            case sip_events.CallConfirmed(call_id=call_id, sdp=sdp):
                leg = self.by_sip.get(call_id)
                if leg is not None and leg.our_offer is not None:
                    self._spawn(self._late_answer(leg, sdp))
            case sip_events.CallFailed(call_id=call_id, status=status):
                leg = self.by_sip.pop(call_id, None)
                if leg is not None:
                    leg.released = True
                    if leg.rtp is not None:
                        leg.rtp.close()
                    if leg.call_control_id is not None:
                        self.by_cid.pop(leg.call_control_id, None)
                        self.report(SipFailed(leg.call_control_id, status))
            case sip_events.CallEnded(call_id=call_id) | sip_events.CallCancelled(call_id=call_id):
                self._ended(call_id, "487" if isinstance(ev, sip_events.CallCancelled) else "200")
            case sip_events.ReferProgress(call_id=call_id, phase=phase, status=status):
                leg = self.by_sip.get(call_id)
                if leg is not None and leg.call_control_id is not None:
                    self.report(SipReferProgress(leg.call_control_id, phase, status))
            case sip_events.ReInviteReceived(call_id=call_id, new_sdp=sdp):
                self._spawn(self._reinvite(call_id, sdp))
            case RegistrationChanged(key=trunk_id, state=state, status=status, expires_at=at, reason=reason):
                # The endpoint's clock is the loop's: the API shows wall-clock time.
                wall = time.time() + (at - asyncio.get_running_loop().time()) if at is not None else None
                self.trunks.on_status(TrunkStatus(trunk_id, state.name.lower(), status, wall, reason))
            case _:
                pass

    def _incoming(self, call_id: str, from_: object, to: object, uri: SipUri, offer: SessionDescription | None,
                  source: tuple[str, int], headers: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        """A new INVITE: refused at once (488) when its offer cannot be answered (no common codec, media
        security its trunk does not agree to, a media address of the other family, or a host name that does
        not resolve), so the application never sees a call it could not take; otherwise handed to the control
        plane to route (by number when it came from a trunk)."""
        trunks = self.trunks.book.trunks_at(source[0])
        incoming = IncomingSipCall(call_id, uri.user or "", _address(from_), _address(to), trunks,
                                   self._allowed.admits(source[0]), headers)
        assert self.transport is not None
        leg = SipLeg(call_id, None, outgoing=False, offer=offer, srtp=self.trunks.book.srtp_of(trunks),
                     over_tls=self.transport.endpoint.streams.get(source) == "TLS")
        try:
            check_transport(leg.srtp, leg.over_tls)
        except SrtpNotAcceptable as exc:
            log.info("488 to INVITE %s: %s", call_id, exc)
            self._reject(call_id, 488)
            return
        if offer is not None:
            try:
                offer_wants(offer, leg.srtp, leg.over_tls)
                agreed = negotiate_answer(offer, self.media_ip, 0)
                host = agreed.remote_rtp_addr[0]
                if not maybe_reachable(host, self.media_ip):
                    raise ValueError(f"media address {host!r} is of another IP family")
            except (ProtocolError, ValueError) as exc:
                log.info("488 to INVITE %s: %s", call_id, exc)
                self._reject(call_id, 488)
                return
            if not is_address(host):  # looked up first, off the loop
                self._spawn(self._incoming_named(incoming, leg, agreed.remote_rtp_addr))
                return
        self.by_sip[call_id] = leg
        self.awaiting.add(call_id)
        self.on_incoming(incoming)

    async def _incoming_named(self, incoming: IncomingSipCall, leg: SipLeg, addr: tuple[str, int]) -> None:
        call_id = incoming.sip_call_id
        try:
            await lookup(addr, 6 if ":" in self.media_ip else 4)
        except ValueError as exc:
            log.info("488 to INVITE %s: %s", call_id, exc)
            self._reject(call_id, 488)
            return
        if self.transport is None or call_id not in self.transport.endpoint.calls:
            return  # cancelled while we looked
        self.by_sip[call_id] = leg
        self.awaiting.add(call_id)
        self.on_incoming(incoming)

    async def _late_answer(self, leg: SipLeg, sdp: SessionDescription | None) -> None:
        """The ACK of a delayed-offer call: it carries the answer to the offer in our 200, or the call ends
        (RFC 3261 13.3.1.4: a missing or unacceptable answer is ended with a BYE)."""
        assert leg.our_offer is not None and leg.rtp is not None
        offer, leg.our_offer, rtp = leg.our_offer, None, leg.rtp
        try:
            if sdp is None:
                raise ValueError("the ACK carried no SDP answer")
            agreed = accept_answer(offer, sdp)
            keys = answer_agrees(sdp, leg.crypto, leg.srtp)
            remote = await media_address(agreed.remote_rtp_addr, rtp)
        except (ProtocolError, ValueError) as exc:
            log.warning("hanging up %s: %s", leg.sip_call_id, exc)
            if not leg.released and leg.call_control_id is not None:
                cid = leg.call_control_id
                self._hang_up(leg)
                self.report(SipHangup(cid, "488"))
            return
        if not leg.released:
            use_keys(leg, rtp, keys)
            rtp.set_remote(remote, agreed.codec.pt, agreed.telephone_event_pt, agreed.direction.value)
            rtp.detect_inband = agreed.telephone_event_pt is None

    async def _reinvite(self, call_id: str, sdp: SessionDescription | None) -> None:
        """Hold and resume from the phone: answer with the mirrored direction and follow it; an offer we
        cannot follow gets 488 and changes nothing."""
        leg = self.by_sip.get(call_id)
        if leg is None or leg.rtp is None or self.transport is None:
            if self.transport is not None:
                self._reject(call_id, 488)
            return
        rtp = leg.rtp
        if sdp is None:
            if leg.keys is not None:  # an offer of ours would need new keys, and their answer in the ACK
                self._reject(call_id, 488)
                return
            self.transport.answer(call_id, make_offer(self.media_ip, rtp.local_port))
            return
        try:
            agreed = negotiate_answer(sdp, self.media_ip, rtp.local_port, session_version=leg.version + 1)
            keys = answer_offer(sdp, agreed.answer, leg.srtp, leg.over_tls, leg.keys)
            remote = await media_address(agreed.remote_rtp_addr, rtp)
        except (ProtocolError, ValueError) as exc:
            log.info("488 to the re-INVITE of %s: %s", call_id, exc)
            self._reject(call_id, 488)
            return
        if leg.released or rtp.closed:
            return
        leg.version += 1
        use_keys(leg, rtp, keys)
        rtp.set_remote(remote, agreed.codec.pt, agreed.telephone_event_pt, agreed.direction.value)
        try:
            self.transport.answer(call_id, agreed.answer)
        except (KeyError, CallroomError) as exc:
            log.info("re-INVITE of %s no longer pending: %s", call_id, exc)


def _address(name_addr: object) -> str:
    """The user@host of a From/To value, as Telnyx shows ``from`` and ``to``."""
    uri = getattr(name_addr, "uri", name_addr)
    user = getattr(uri, "user", None)
    host = getattr(uri, "host", None)
    if user and host:
        return f"sip:{user}@{host}"
    return str(uri)
