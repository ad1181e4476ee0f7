"""An RTP leg's state: the session as negotiated, what the leg received and played, what it sent, and the
figures of both; with what hands that state over as a whole: to the batch's array lanes while the leg is in
its steady state (``steady``, ``lease``, ``resume``, ``catch_up``: see ``rtp_steady.py``), and as ``stats``.

:class:`RtpLegState` is the base of :class:`~callroom.aio.rtp_leg.RtpLeg`, which negotiates, receives,
plays out and sends with it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Final

from callroom.aio.rtcp_session import RtcpSession
from callroom.aio.rtp_socket import RtpSocket
from callroom.aio.rtp_steady import WINDOW_FRAMES, LegSteady
from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Frame
from callroom.rtp.dtmf import DtmfCallback
from callroom.rtp.g711 import PT_PCMU, ULAW_DECODE, ULAW_ENCODE
from callroom.rtp.jitter import JitterBuffer, LossConcealer, Reframer
from callroom.rtp.leg_dtmf import DtmfIn
from callroom.rtp.rtcp import RtpReceiveStats
from callroom.rtp.sender import RtpSender
from callroom.rtp.stats import RtpLegStats

Addr = tuple[str, int]
PLAIN_PACKET: Final = 12 + FRAME_SAMPLES  # a plain 20 ms G.711 packet


class RtpLegState:
    """What one RTP session holds, and its hand-over to the batch's lanes and to ``stats``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rtp: RtpSocket, rtcp: asyncio.DatagramTransport, *,
                 on_dtmf: DtmfCallback | None, symmetric: bool, detect_inband: bool, rtcp_interval: float,
                 silence_timeout: float, rng: random.Random | None) -> None:  # fmt: skip
        self._loop = loop
        self._rtp = rtp
        self._rng = rng or random.SystemRandom()
        # set while the batch's lanes hold the steady state: take it back, bring this leg's copy up to date
        self._release: Callable[[], None] | None = None
        self._sync: Callable[[], None] | None = None
        self.dtmf_in = DtmfIn(on_dtmf, detect_inband)
        self.symmetric = symmetric
        self.rtcp_interval = rtcp_interval
        self._silence_timeout = silence_timeout
        self.local_port: int = rtp.local_port
        self._sendto = rtp.sock.sendto
        self._in_batch: Callable[[], None] | None = None  # while a batch reads and runs it: tell it we close
        self.ssrc = self._rng.getrandbits(32)
        self.cname = f"{self.ssrc:08x}@callroom"
        self._closed = False
        # negotiated
        self._sdp_remote: Addr | None = None
        self._remote: Addr | None = None
        self._remote_src: tuple[object, ...] | None = None  # the peer's address as the socket reports it
        self._latched = False
        self._pt = PT_PCMU
        self._direction = "sendrecv"
        self._can_send = False
        # the G.711 tables of the payload type (the batch encodes and decodes all legs' frames with them)
        self.encode_table, self.decode_table = ULAW_ENCODE, ULAW_DECODE
        # receive
        self._rx_stats = RtpReceiveStats()
        self._jitter = JitterBuffer()
        self._concealer = LossConcealer()
        self._playout: int | None = None
        self._reframer = Reframer()  # for packets of other sizes than 20 ms
        self._last_rx = -1e9
        self._heard = -1e9  # loop time of the latest datagram from anyone on the RTP or RTCP port
        self._remote_since = -1e9  # when the SDP last gave the peer's address
        self._last_rx_ts = 0  # the peer's RTP timestamp in its latest audio or event packet
        self._rx_packets = 0
        self._rx_bytes = 0
        self._malformed = 0
        self._dropped = 0
        self._concealed = 0
        self._max_jitter = 0.0
        # send
        self._tx = RtpSender(self.ssrc, self._rng)
        self.dtmf_out = self._tx.dtmf
        self._rtcp = RtcpSession(loop, rtcp, self.ssrc, self.cname, self._rx_stats, rtcp_interval, self._rng)

    # ---- the batch's lanes -----------------------------------------------------------------------
    def _own(self) -> None:
        """Take the steady state back from the batch's lanes, if they hold it (before anything uses it)."""
        if self._release is not None:
            self._release()

    def steady(self) -> LegSteady | None:
        """The leg's state when it is in its steady state, for the batch to run in arrays; None when it is
        not (no stream yet, a loss being concealed, DTMF to send or being received, on hold ...)."""
        if (self._closed or self._in_batch is None or not self._latched or not self._can_send
                or self._remote is None or self._remote_src is None or self._playout is None
                or self.dtmf_out.busy or self.dtmf_in.event_open):  # fmt: skip
            return None
        rx = self._rx_stats.steady()
        jb = self._jitter.steady()
        if rx is None or jb is None or self._jitter.frame != FRAME_SAMPLES or self._jitter.capacity <= WINDOW_FRAMES:
            return None
        dtmf = self.dtmf_in
        return LegSteady(*rx, *jb, self._pt, self._remote_src, self._playout, self._last_rx, self._last_rx_ts,
                         self._max_jitter, self._silence_timeout, dtmf.wants_inband, dtmf.quiet_frames,
                         dtmf.detector.idle, self.ssrc, self._tx.seq, self._tx.ts, self._tx.marker, self._remote)

    def lease(self, release: Callable[[], None], sync: Callable[[], None]) -> None:
        """The batch now runs the state ``steady`` gave: ``release`` makes it give the state back (through
        ``resume``), ``sync`` bring this leg's figures up to date while keeping it (through ``catch_up``)."""
        self._release, self._sync = release, sync

    def resume(self, s: LegSteady, accepted: int, counted: int, sent: int, played_from: int,
               last_frame: Frame | None) -> None:  # fmt: skip
        """Take back the state: ``s`` as it is now, after ``accepted`` packets taken by the jitter buffer since
        the lease (``counted`` of them not yet counted here, and ``sent`` packets sent), every frame from
        ``played_from`` played, the latest of them ``last_frame``."""
        self._release = self._sync = None
        self.catch_up(s.max_seq, s.cycles, s.received, s.transit, s.jitter, s.max_jitter, counted, s.seq, s.ts,
                      s.marker, sent)
        self._jitter.resume(s.last_ext, s.jb_transit, s.next, s.jb_jitter, s.frames, accepted, played_from)
        if last_frame is not None:
            self._concealer.next(last_frame)
        self._playout, self._last_rx, self._last_rx_ts = s.playout, s.last_rx, s.last_rx_ts
        self.dtmf_in.quiet_frames = s.quiet_frames

    def catch_up(self, max_seq: int, cycles: int, received: int, transit: int, jitter: float, max_jitter: float,
                 counted: int, seq: int, ts: int, marker: bool, sent: int) -> None:  # fmt: skip
        """The figures ``stats`` and the RTCP reports give, from the lanes: the receive statistics, ``counted``
        more packets received, ``sent`` more sent, the sender's sequence number, timestamp and marker."""
        self._rx_stats.resume(max_seq, cycles, received, transit, jitter)
        self._max_jitter = max_jitter
        self._rx_packets += counted
        self._rx_bytes += counted * PLAIN_PACKET
        tx = self._tx
        tx.seq, tx.ts, tx.marker = seq, ts, marker
        tx.packets += sent
        tx.bytes += sent * PLAIN_PACKET
        tx.octets += sent * FRAME_SAMPLES

    # ---- figures ---------------------------------------------------------------------------------
    def stats(self) -> RtpLegStats:
        if self._sync is not None:
            self._sync()
        block, rtt, jb = self._rtcp.remote_block, self._rtcp.rtt, self._jitter.stats
        return RtpLegStats(
            packets_received=self._rx_packets,
            bytes_received=self._rx_bytes,
            packets_sent=self._tx.packets,
            bytes_sent=self._tx.bytes,
            packets_lost=self._rx_stats.cumulative_lost if self._rx_stats.received else 0,
            jitter_ms=self._rx_stats.jitter / (SAMPLE_RATE / 1000),
            max_jitter_ms=max(self._max_jitter, self._rx_stats.jitter / (SAMPLE_RATE / 1000)),
            late_or_duplicate=jb.late + jb.duplicates,
            concealed_frames=self._concealed,
            malformed=self._malformed,
            dropped=self._dropped,
            remote_fraction_lost=block.fraction_lost / 256 if block else 0.0,
            remote_packets_lost=block.packets_lost if block else 0,
            remote_jitter_ms=block.jitter / (SAMPLE_RATE / 1000) if block else 0.0,
            round_trip_ms=rtt * 1000 if rtt is not None else None,
        )
