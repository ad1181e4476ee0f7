"""The SIP legs of a node and how they end: the state ``SipPhones`` keeps (legs by SIP Call-ID and by
call_control_id, the transport, background tasks) and the teardown every path shares (refused, hung up from
our side, ended by the far end), each step done whatever the one before did."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from callroom.aio.rtp_leg import RtpLeg
from callroom.aio.sip_transport import SipTransport
from callroom.aio.srtp_leg import SrtpLeg
from callroom.errors import CallroomError, SrtpNotAcceptable
from callroom.media.engine import MediaEngine
from callroom.media_worker.trunk_lines import TrunkLines
from callroom.model import media as m
from callroom.model.messages import SipConfig, SipFact, SipHangup, SipQuality
from callroom.sip.sdes import CryptoAttribute, SrtpKeys, SrtpMode
from callroom.sip.sdp import SessionDescription

log = logging.getLogger(__name__)


@dataclass
class SipLeg:
    sip_call_id: str
    call_control_id: str | None
    outgoing: bool
    offer: SessionDescription | None = None  # theirs (incoming; None: a delayed offer) or ours (outgoing)
    rtp: RtpLeg | None = None
    version: int = 0
    released: bool = False
    pending_answer: bool = False
    our_offer: SessionDescription | None = None  # what our 200 offered to a delayed-offer INVITE
    ops: list[m.MediaOp] = field(default_factory=list)
    srtp: SrtpMode = SrtpMode.OFF  # the trunk's srtp setting (off for calls not through a trunk)
    over_tls: bool = False  # its INVITE came over TLS (an RTP/SAVP offer needs it)
    crypto: list[CryptoAttribute] = field(default_factory=list)  # the a=crypto lines our offer made
    keys: SrtpKeys | None = None  # what the offer and answer agreed (None: plain RTP)


Report = Callable[[SipFact], None]


class Unanswerable(Exception):
    """Why an incoming call cannot be answered: ``status`` is the SIP response it gets."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def use_keys(leg: SipLeg, rtp: RtpLeg, keys: SrtpKeys | None) -> None:
    """Follow a negotiation's outcome on the leg's RTP: SRTP with ``keys``, or plain RTP (None)."""
    if keys is not None and not isinstance(rtp, SrtpLeg):
        raise SrtpNotAcceptable("SRTP agreed on a plain RTP leg")
    leg.keys = keys
    if isinstance(rtp, SrtpLeg):
        if keys is None:
            rtp.plain()
        elif keys != rtp.keys:
            rtp.secure(*keys)


class SipLegs:
    """The legs of a node's SIP plane and their teardown (the base of ``SipPhones``)."""

    def __init__(self, engine: MediaEngine, config: SipConfig, report: Report) -> None:
        self.engine = engine
        self.config = config
        self.report = report
        self.transport: SipTransport | None = None
        self.by_sip: dict[str, SipLeg] = {}
        self.by_cid: dict[str, SipLeg] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.trunks = TrunkLines(config.tls_ca)

    @property
    def media_ip(self) -> str:
        return self.config.advertise or self.config.host

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.local_addr[1]

    async def _open_rtp(self, cid: str, srtp: SrtpMode) -> RtpLeg:
        """RTP ports for a leg: an ``SrtpLeg`` when the call may be secure, a plain ``RtpLeg`` otherwise."""
        kind = RtpLeg if srtp is SrtpMode.OFF else SrtpLeg
        return await kind.open(self.media_ip, self.config.rtp_ports, on_dtmf=self.engine.dtmf_from(cid))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SIP task failed", exc_info=task.exception())


    def _not_answered(self, leg: SipLeg, rtp: RtpLeg | None, status: int, why: Exception) -> None:
        log.warning("cannot answer %s: %s", leg.sip_call_id, why)
        if rtp is not None:
            rtp.close()
        if leg.released:
            return
        leg.released = True
        self.by_sip.pop(leg.sip_call_id, None)
        if leg.call_control_id is not None:
            self.by_cid.pop(leg.call_control_id, None)
            self.report(SipHangup(leg.call_control_id, str(status)))
        self._reject(leg.sip_call_id, status)

    def _reject(self, sip_call_id: str, status: int) -> None:
        if self.transport is None:
            return
        try:
            self.transport.reject(sip_call_id, status)
        except (KeyError, CallroomError) as exc:  # the caller gave up in the meantime
            log.info("cannot refuse %s with %d: %s", sip_call_id, status, exc)

    def _hang_up(self, leg: SipLeg) -> None:
        """End a leg from our side: BYE (or CANCEL/603), out of the engine, ports closed, each step whatever
        the one before did."""
        leg.released = True
        self.by_sip.pop(leg.sip_call_id, None)
        try:
            if self.transport is not None:
                try:
                    self.transport.hangup(leg.sip_call_id)
                except (KeyError, CallroomError) as exc:  # already gone on the SIP side
                    log.debug("hangup of %s: %s", leg.sip_call_id, exc)
            if leg.call_control_id is not None:
                self.by_cid.pop(leg.call_control_id, None)
                self.engine.remove_leg(leg.call_control_id)
        finally:
            if leg.rtp is not None:
                leg.rtp.close()

    def _ended(self, call_id: str, cause: str) -> None:
        leg = self.by_sip.pop(call_id, None)
        if leg is None:
            return
        leg.released = True
        try:
            if leg.call_control_id is not None:
                self.by_cid.pop(leg.call_control_id, None)
                if leg.rtp is not None:  # the far end hung up: the webhook can carry the call's quality
                    self.report(SipQuality(leg.call_control_id, leg.rtp.stats().call_quality_stats()))
                self.engine.remove_leg(leg.call_control_id)
        finally:
            if leg.call_control_id is not None:
                self.report(SipHangup(leg.call_control_id, cause))
            if leg.rtp is not None:
                leg.rtp.close()

