"""Calls the node places: to a SIP address (``sip:``) or to a number through a trunk (``trunk:``), and the
far end's answer followed (or the call hung up when it cannot be). A trunk with ``srtp`` on gets an offer
with SDES keys and an SRTP leg; an answer that does not agree to what it requires ends the call (488)."""

from __future__ import annotations

import logging
import socket

from callroom.aio.rtp_leg import RtpLeg
from callroom.errors import MediaError, ProtocolError
from callroom.media_worker.sip_addresses import media_address, resolve
from callroom.media_worker.sip_legs import SipLeg, SipLegs, use_keys
from callroom.media_worker.trunk_book import TrunkInvite
from callroom.model import media as m
from callroom.model.messages import SipAnswered, SipFailed
from callroom.model.trunks import TRUNK_PREFIX
from callroom.sip.fields import SipUri
from callroom.sip.sdes import SrtpMode, answer_agrees, secure_offer
from callroom.sip.sdp import SessionDescription, accept_answer, make_offer

log = logging.getLogger(__name__)


class OutgoingCalls(SipLegs):
    """The outgoing side of ``SipPhones``: INVITEs out, their answers followed."""

    async def _dial(self, cid: str, endpoint: str, ring: m.Ring) -> None:
        assert self.transport is not None
        if endpoint.startswith(TRUNK_PREFIX):
            await self.trunks.ready()  # a trunk added just before the call: its address looked up
            try:
                trunk_invite = self.trunks.book.invite(endpoint, ring.from_, self.media_ip)
            except (LookupError, ValueError) as exc:
                log.warning("cannot dial %s: %s", endpoint, exc)
                self.report(SipFailed(cid, 503))
                return
            await self._dial_trunk(cid, trunk_invite, ring.headers)
            return
        try:
            target = SipUri.parse(endpoint)
            rtp = await RtpLeg.open(self.media_ip, self.config.rtp_ports, on_dtmf=self.engine.dtmf_from(cid))
        except (ProtocolError, OSError, ValueError) as exc:
            log.warning("cannot dial %s: %s", endpoint, exc)
            self.report(SipFailed(cid, 404))
            return
        except MediaError as exc:  # no RTP port free
            log.warning("cannot dial %s: %s", endpoint, exc)
            self.report(SipFailed(cid, 503))
            return
        try:
            addr = await resolve(target)
        except OSError as exc:
            rtp.close()
            log.warning("cannot dial %s: %s", endpoint, exc)
            self.report(SipFailed(cid, 404 if isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_NONAME
                                   else 503))
            return
        offer = make_offer(self.media_ip, rtp.local_port)
        headers, display_name = ring.headers, ring.display_name
        if ring.anonymous:  # RFC 3323: nothing in From tells who calls
            from_uri = SipUri("anonymous.invalid", user="anonymous")
            headers, display_name = (*headers, ("Privacy", "id")), "Anonymous"
        else:
            from_uri = SipUri(self.media_ip, user=ring.from_.lstrip("+") or "callroom", port=self.port)
        sip_call_id = self.transport.invite(target, from_uri, offer, addr=addr, extra_headers=headers,
                                            credentials=ring.credentials, display_name=display_name)
        leg = SipLeg(sip_call_id, cid, outgoing=True, offer=offer, rtp=rtp)
        self.by_sip[sip_call_id] = leg
        self.by_cid[cid] = leg

    async def _dial_trunk(self, cid: str, how: TrunkInvite, extra_headers: tuple[tuple[str, str], ...] = ()) -> None:
        """A call to a number through a trunk: its Request-URI, caller ID, codecs and credentials (and the
        application's own headers, after the trunk's)."""
        assert self.transport is not None
        try:
            await self.trunks.connect(how.trunk, how.addr)
            srtp = SrtpMode(how.trunk.srtp)
            rtp = await self._open_rtp(cid, srtp)
        except (MediaError, OSError) as exc:  # no connection to the gateway, or no RTP port free
            log.warning("cannot dial %s through trunk %s: %s", how.to, how.trunk.name, exc)
            self.report(SipFailed(cid, 503))
            return
        offer = make_offer(self.media_ip, rtp.local_port, codecs=how.trunk.codecs)
        crypto = secure_offer(offer, srtp)  # SDES keys: the trunk is TLS (checked with its settings)
        sip_call_id = self.transport.invite(how.to, how.from_, offer, addr=how.addr, credentials=how.credentials,
                                           headers=how.headers, extra_headers=extra_headers)
        leg = SipLeg(sip_call_id, cid, outgoing=True, offer=offer, rtp=rtp, srtp=srtp, over_tls=True, crypto=crypto)
        self.by_sip[sip_call_id] = leg
        self.by_cid[cid] = leg

    async def _answered(self, leg: SipLeg, answer: SessionDescription | None) -> None:
        """Our INVITE was answered: follow the SDP answer, or hang up if it cannot be followed."""
        assert leg.call_control_id is not None and leg.rtp is not None and leg.offer is not None
        cid, rtp = leg.call_control_id, leg.rtp
        if answer is not None:
            try:
                agreed = accept_answer(leg.offer, answer)
                keys = answer_agrees(answer, leg.crypto, leg.srtp)  # SRTP, plain, or refused (488)
                remote = await media_address(agreed.remote_rtp_addr, rtp)
            except (ProtocolError, ValueError) as exc:
                log.warning("hanging up %s: its answer cannot be followed: %s", leg.sip_call_id, exc)
                if not leg.released:
                    self._hang_up(leg)
                    self.report(SipFailed(cid, 488))
                return
            if leg.released:
                return
            use_keys(leg, rtp, keys)
            rtp.set_remote(remote, agreed.codec.pt, agreed.telephone_event_pt, agreed.direction.value)
            rtp.detect_inband = agreed.telephone_event_pt is None
        if leg.released:
            return
        self.engine.add_leg(cid, rtp)
        self.report(SipAnswered(cid))

