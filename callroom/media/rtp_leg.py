"""An :class:`~callroom.media.ports.AudioLeg` over real RTP: one asyncio UDP socket pair (RTP on an even
port, RTCP on the next one) driving the sans-I/O pieces of this package.

Receive: parse -> RFC 3550 statistics -> jitter buffer (audio) or RFC 4733 receiver (telephone-event);
``pull_frame`` plays one 160-sample frame per call, concealing losses, and runs the in-band DTMF detector.
Send: ``push_frame`` encodes one G.711 packet, or sends the next RFC 4733 packet instead while a digit is
being sent. RTCP SR/RR go out every ~5 s; received reports feed :meth:`RtpLeg.stats`.

The local clock is ``loop.time()`` expressed in 8 kHz timestamp units. The playout clock advances by
exactly one frame per ``pull_frame`` (so tick jitter does not matter) and is re-anchored to the loop
clock when the two drift more than a few frames apart (a stalled or restarted tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import numpy as np

from callroom.errors import MediaError, RtpParseError
from callroom.media.dtmf import DtmfDetector, Rfc4733Receiver, Rfc4733Sender, char_to_event, dtmf_tones
from callroom.media.g711 import ALAW_DECODE, ALAW_ENCODE, PT_PCMA, PT_PCMU, ULAW_DECODE, ULAW_ENCODE
from callroom.media.jitter import LOST, JitterBuffer, LossConcealer
from callroom.media.ports import FRAME_SAMPLES, SAMPLE_RATE, DtmfCallback, DtmfDigit, Frame
from callroom.media.rtcp import (
    RtcpOther,
    RtcpPacket,
    RtcpReceiverReport,
    RtcpReportBlock,
    RtcpSenderReport,
    RtpReceiveStats,
    ntp_timestamp,
    parse_compound,
    round_trip_seconds,
)
from callroom.media.rtp import RtpPacket, ts_diff
from callroom.media.rtp_stats import RtpLegStats

__all__ = ["DIRECTIONS", "RtpLeg", "RtpLegStats"]

log = logging.getLogger(__name__)

Addr = tuple[str, int]
DIRECTIONS: Final = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
_SENDING: Final = frozenset({"sendrecv", "sendonly"})
_HEADER: Final = struct.Struct("!BBHII")
_F: Final = FRAME_SAMPLES
_RESYNC: Final = 3 * FRAME_SAMPLES  # playout clock vs loop clock drift that re-anchors the playout clock
_CATCH_UP: Final = FRAME_SAMPLES  # a frame still this overdue after one is played is skipped (cuts latency)
_RTCP_SDES: Final = 202
_RTCP_BYE: Final = 203
_DTMF_GAP_MS: Final = 60
_DEDUP_SECONDS: Final = 1.0  # an RFC 4733 digit equal to an in-band one reported this recently is a repeat
_TABLES: Final = {PT_PCMU: (ULAW_ENCODE, ULAW_DECODE), PT_PCMA: (ALAW_ENCODE, ALAW_DECODE)}


class _Datagrams(asyncio.DatagramProtocol):
    """Hands every datagram to ``handler``; socket errors (ICMP unreachable) are counted, not raised."""

    def __init__(self) -> None:
        self.handler: Callable[[bytes, Addr], None] = lambda data, addr: None
        self.errors = 0

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.handler(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1
        log.debug("RTP socket error: %s", exc)


class RtpLeg:
    """One RTP session (G.711 + telephone-event) as an ``AudioLeg``. Create with :meth:`open`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rtp: asyncio.DatagramTransport,
                 rtcp: asyncio.DatagramTransport, *, on_dtmf: DtmfCallback | None = None, symmetric: bool = True,
                 detect_inband: bool = True, rtcp_interval: float = 5.0, silence_timeout: float = 0.5,
                 rng: random.Random | None = None) -> None:  # fmt: skip
        self._loop = loop
        self._rtp = rtp
        self._rtcp = rtcp
        self._rng = rng or random.SystemRandom()
        self.on_dtmf = on_dtmf
        self.symmetric = symmetric
        self.detect_inband = detect_inband
        # When set (by the engine), frames to search for in-band DTMF are left in ``inband_pending`` for
        # one batch classification of all legs per tick, answered through ``inband_result``.
        self.batch_inband = False
        self.inband_pending: Frame | None = None
        self._inband_now = 0.0
        self.rtcp_interval = rtcp_interval
        self.silence_timeout = silence_timeout
        self.local_port: int = rtp.get_extra_info("sockname")[1]
        self.ssrc = self._rng.getrandbits(32)
        self.cname = f"{self.ssrc:08x}@callroom"
        self._closed = False
        # negotiated
        self._sdp_remote: Addr | None = None
        self._remote: Addr | None = None
        self._remote_src: tuple[object, ...] | None = None  # the peer's address as the socket reports it
        self._rtcp_remote: Addr | None = None
        self._latched = False
        self._rtcp_latched = False
        self._pt = PT_PCMU
        self._te_pt: int | None = None
        self._direction = "sendrecv"
        self._can_send = False
        self._encode_table, self._decode_table = _TABLES[PT_PCMU]
        # receive
        self._rx_stats = RtpReceiveStats()
        self._jitter = JitterBuffer()
        self._concealer = LossConcealer()
        self._playout: int | None = None
        self._grid: int | None = None  # timestamp grid for reframing other packet sizes
        self._partial: dict[int, tuple[bytearray, int]] = {}
        self._last_rx = -1e9
        self._last_rx_ts = 0  # the peer's RTP timestamp in its latest audio or event packet
        self._rfc4733 = Rfc4733Receiver(101)
        self._rfc4733_seen = False
        self._detector = DtmfDetector()
        self._quiet_frames = 0
        self._inband_recent: tuple[str, float] | None = None
        self._rx_packets = 0
        self._rx_bytes = 0
        self._malformed = 0
        self._dropped = 0
        self._concealed = 0
        self._max_jitter = 0.0
        self._remote_block: RtcpReportBlock | None = None
        self._rtt: float | None = None
        # send
        self._seq = self._rng.getrandbits(16)
        self._ts = self._rng.getrandbits(32)
        self._marker = True
        self._tx_packets = 0
        self._tx_bytes = 0
        self._tx_octets = 0  # payload octets, for the SR
        self._tx_at_last_report = 0
        self._dtmf_sender = Rfc4733Sender(self.ssrc, 101)
        self._dtmf_queue: deque[tuple[str, int]] = deque()
        self._dtmf_packets: deque[RtpPacket] = deque()
        self._dtmf_wait = 0
        self._inband_out: deque[Frame] = deque()
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._schedule_rtcp()

    @classmethod
    async def open(cls, local_ip: str, port_range: tuple[int, int] = (20000, 30000), *,
                   on_dtmf: DtmfCallback | None = None, symmetric: bool = True, detect_inband: bool = True,
                   rtcp_interval: float = 5.0, silence_timeout: float = 0.5, attempts: int = 100,
                   rng: random.Random | None = None) -> RtpLeg:  # fmt: skip
        """Bind RTP on a free even port in ``[low, high)`` and RTCP on the next port."""
        loop = asyncio.get_running_loop()
        pick = rng or random.SystemRandom()
        low, high = port_range
        ports = range(low + (low & 1), high - 1, 2)
        if not ports:
            raise ValueError(f"no even port with a free successor in {port_range}")
        for _ in range(attempts):
            port = ports[pick.randrange(len(ports))]
            try:
                rtp, rtp_proto = await loop.create_datagram_endpoint(_Datagrams, local_addr=(local_ip, port))
            except OSError:
                continue
            try:
                rtcp, rtcp_proto = await loop.create_datagram_endpoint(_Datagrams, local_addr=(local_ip, port + 1))
            except OSError:
                rtp.close()
                continue
            leg = cls(
                loop,
                rtp,
                rtcp,
                on_dtmf=on_dtmf,
                symmetric=symmetric,
                detect_inband=detect_inband,
                rtcp_interval=rtcp_interval,
                silence_timeout=silence_timeout,
                rng=rng,
            )
            rtp_proto.handler = leg._on_rtp
            rtcp_proto.handler = leg._on_rtcp
            return leg
        raise MediaError(f"no free RTP/RTCP port pair on {local_ip} in {port_range} after {attempts} tries")

    # ---- negotiation -----------------------------------------------------------------------------
    def set_remote(self, addr: Addr, payload_type: int, telephone_event_pt: int | None = None,
                   direction: str = "sendrecv") -> None:  # fmt: skip
        """Apply an SDP negotiation: where to send, the G.711 payload type, the RFC 4733 payload type,
        and our direction (``sendonly``/``sendrecv`` send; ``recvonly``/``inactive`` do not: hold).

        Calling it again (re-INVITE) keeps a latched address unless the SDP address changed."""
        if payload_type not in _TABLES:
            raise ValueError(f"payload type {payload_type} is not PCMU (0) or PCMA (8)")
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        addr = (addr[0], int(addr[1]))
        if addr != self._sdp_remote:
            self._sdp_remote = self._remote = self._remote_src = addr
            self._rtcp_remote = (addr[0], addr[1] + 1)
            self._latched = self._rtcp_latched = False
        self._pt = payload_type
        self._encode_table, self._decode_table = _TABLES[payload_type]
        if telephone_event_pt != self._te_pt:
            self._te_pt = telephone_event_pt
            self._rfc4733 = Rfc4733Receiver(telephone_event_pt if telephone_event_pt is not None else -1)
            self._dtmf_sender = Rfc4733Sender(self.ssrc, telephone_event_pt or 101)
        was_sending = self._can_send
        self._direction = direction
        self._can_send = direction in _SENDING and addr[1] != 0 and addr[0] not in ("0.0.0.0", "::")
        if self._can_send and not was_sending:
            self._marker = True

    @property
    def remote_addr(self) -> Addr | None:
        """Where packets go: the SDP address, or the latched source of the peer's packets."""
        return self._remote

    @property
    def direction(self) -> str:
        return self._direction

    @property
    def payload_type(self) -> int:
        return self._pt

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- receive ---------------------------------------------------------------------------------
    def _on_rtp(self, data: bytes, addr: Addr) -> None:
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            self._malformed += 1
            return
        b1 = data[1]
        if 192 <= b1 <= 223:  # RTCP multiplexed on the RTP port (RFC 5761)
            self._on_rtcp(data, addr)
            return
        pt = b1 & 0x7F
        if self._remote is None or (pt != self._pt and pt != self._te_pt):
            self._dropped += 1
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            self._malformed += 1
            return
        if addr != self._remote_src and self.symmetric:
            if self._latched:
                self._dropped += 1  # not from the peer we latched on to
                return
            self._remote, self._remote_src = (addr[0], addr[1]), addr
        self._latched = True
        now = self._loop.time()
        arrival = int(now * SAMPLE_RATE)
        if not self._rx_stats.update(packet, arrival):
            self._dropped += 1  # an unconfirmed sequence jump (RFC 3550 A.1 probation)
            return
        self._rx_packets += 1
        self._rx_bytes += len(data)
        self._last_rx = now
        self._last_rx_ts = packet.timestamp
        if pt != self._pt:
            self._on_telephone_event(packet, now)
        elif len(packet.payload) == _F:
            self._jitter.put(packet, arrival)
        else:
            for frame in self._reframe(packet):
                self._jitter.put(frame, arrival)

    def _reframe(self, packet: RtpPacket) -> list[RtpPacket]:
        """Cut a packet of another ptime (10, 30, 40 ms ...) into 20 ms frames on a fixed timestamp grid,
        joining the pieces that straddle two packets; a frame missing a piece is left for concealment."""
        ts, payload = packet.timestamp, packet.payload
        if self._grid is None or abs(ts_diff(ts, self._grid)) > 1 << 24:
            self._grid = ts
            self._partial.clear()
        offset = ts_diff(ts, self._grid) % _F
        start = (ts - offset) & 0xFFFFFFFF
        out: list[RtpPacket] = []
        pos = 0
        while pos < len(payload):
            take = min(_F - offset, len(payload) - pos)
            buf, filled = self._partial.pop(start, (bytearray(_F), 0))
            buf[offset : offset + take] = payload[pos : pos + take]
            if filled + take >= _F:
                out.append(
                    RtpPacket(
                        packet.payload_type,
                        packet.sequence_number,
                        start,
                        packet.ssrc,
                        bytes(buf),
                        marker=packet.marker and not out,
                    )
                )
            else:
                self._partial[start] = (buf, filled + take)
            pos += take
            offset = 0
            start = (start + _F) & 0xFFFFFFFF
        while len(self._partial) > 8:
            del self._partial[next(iter(self._partial))]
        return out

    def _on_telephone_event(self, packet: RtpPacket, now: float) -> None:
        self._rfc4733_seen = True
        try:
            digits = self._rfc4733.receive(packet)
        except RtpParseError:
            self._malformed += 1
            return
        for d in digits:
            self._emit(d.digit, d.duration * 1000 // SAMPLE_RATE, "rfc4733", now)

    def _emit(self, digit: str, duration_ms: int, source: str, now: float) -> None:
        recent = self._inband_recent
        if source == "inband":
            self._inband_recent = (digit, now)
        elif recent is not None and recent[0] == digit and now - recent[1] < _DEDUP_SECONDS:
            self._inband_recent = None  # the same press, already reported from the audio
            return
        if self.on_dtmf is not None:
            try:
                self.on_dtmf(DtmfDigit(digit, duration_ms, source))
            except Exception:
                log.exception("DTMF callback failed")

    def pull_frame(self) -> Frame | None:
        now = self._loop.time()
        wall = int(now * SAMPLE_RATE)
        playout = self._playout
        playout = wall if playout is None or abs(wall - playout) > _RESYNC else playout + _F
        self._playout = playout
        if self._te_pt is not None and self._rfc4733_seen:
            for d in self._rfc4733.expire(self._last_rx_ts + int((now - self._last_rx) * SAMPLE_RATE)):
                self._emit(d.digit, d.duration * 1000 // SAMPLE_RATE, "rfc4733", now)
        got = self._jitter.get(playout)
        if got is None:
            return None
        later = self._jitter.get(playout - _CATCH_UP)
        if later is not None:  # more than _CATCH_UP behind: skip a frame
            got = later
        jitter_ms = self._rx_stats.jitter / (SAMPLE_RATE / 1000)
        if jitter_ms > self._max_jitter:
            self._max_jitter = jitter_ms
        if got is LOST:
            self._concealed += 1
            frame = self._concealer.next(None)
        else:
            frame = self._decode_table[np.frombuffer(got, dtype=np.uint8)]
            if len(frame) != _F:
                frame = np.resize(frame, _F) if len(frame) > _F else np.pad(frame, (0, _F - len(frame)))
            self._concealer.next(frame)
            if self.detect_inband and not self._rfc4733_seen:
                self._detect_inband(frame, now)
            elif self.inband_pending is not None:
                self.inband_pending = None
        if now - self._last_rx > self.silence_timeout:
            return None
        return frame

    def _detect_inband(self, frame: Frame, now: float) -> None:
        # A frame this quiet cannot hold a digit: a Goertzel power is at most 4x the frame's mean power, and
        # both tones need min_level**2. After a few such frames the detector sits in its idle state, where
        # more quiet frames change nothing, so they are skipped (most frames of a conference are quiet).
        x = frame.astype(np.float32)
        if float(x @ x) * (4.0 / _F) < self._detector.min_power:
            self.inband_pending = None
            if self._quiet_frames > self._detector.min_off_frames:
                return
            self._quiet_frames += 1
            self.inband_result(None, now)  # too quiet to hold a digit: no need to look
            return
        self._quiet_frames = 0
        if self.batch_inband:
            self.inband_pending = frame  # the engine classifies every such leg at once, then calls back
            self._inband_now = now
            return
        self.inband_result(self._detector.classify(frame), now)

    def inband_result(self, classified: str | None, now: float | None = None) -> None:
        """The classification of this tick's frame (by ``_detect_inband`` or the engine's batch)."""
        self.inband_pending = None
        digit = self._detector.advance(classified)
        if digit is not None:
            when = self._inband_now if now is None else now
            self._emit(digit, self._detector.min_on_frames * _F * 1000 // SAMPLE_RATE, "inband", when)

    # ---- send ------------------------------------------------------------------------------------
    def push_frame(self, frame: Frame) -> None:
        ts = self._ts
        self._ts = (ts + _F) & 0xFFFFFFFF
        if self._dtmf_wait:
            self._dtmf_wait -= 1
        if not self._dtmf_packets and self._dtmf_queue and not self._dtmf_wait:
            digit, duration_ms = self._dtmf_queue.popleft()
            packets = self._dtmf_sender.digit_packets(digit, ts, duration_ms)
            self._dtmf_packets.extend(packets)
            self._dtmf_wait = max(len(packets), -(-(duration_ms + _DTMF_GAP_MS) // 20))
        remote = self._remote
        if not self._can_send or remote is None or self._closed:
            if self._dtmf_packets:
                self._dtmf_packets.popleft()
            if self._inband_out:
                self._inband_out.popleft()
            self._marker = True
            return
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        if self._dtmf_packets:
            packet = self._dtmf_packets.popleft()
            packet.sequence_number = seq
            data = bytes(packet)
            payload_len = len(packet.payload)
        else:
            if self._inband_out:
                frame = self._inband_out.popleft()
            payload = self._encode_table[frame.view(np.uint16)].tobytes()
            data = _HEADER.pack(0x80, (0x80 if self._marker else 0) | self._pt, seq, ts, self.ssrc) + payload
            payload_len = len(payload)
            self._marker = False
        self._rtp.sendto(data, remote)
        self._tx_packets += 1
        self._tx_bytes += len(data)
        self._tx_octets += payload_len

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue digits: RFC 4733 events when the peer negotiated telephone-event, else in-band tones.
        Either way they replace the outgoing audio on the 20 ms schedule of ``push_frame``."""
        for d in digits:
            char_to_event(d)  # raises ValueError for anything but 0-9 * # A-D
        duration_ms = max(40, duration_ms)
        if self._te_pt is not None:
            self._dtmf_queue.extend((d, duration_ms) for d in digits)
            return
        samples = dtmf_tones(digits, on_ms=duration_ms, off_ms=_DTMF_GAP_MS)
        samples = np.pad(samples, (0, -len(samples) % _F))
        self._inband_out.extend(samples.reshape(-1, _F))

    # ---- RTCP ------------------------------------------------------------------------------------
    def _on_rtcp(self, data: bytes, addr: Addr) -> None:
        try:
            packets = parse_compound(data)
        except (RtpParseError, ValueError, struct.error, IndexError):
            self._malformed += 1
            return
        if self.symmetric and not self._rtcp_latched and self._latched and self._remote is not None:
            # latch on to the peer's RTCP source only when it reports about the stream we receive
            first = packets[0]
            sender = first.ssrc if isinstance(first, (RtcpSenderReport, RtcpReceiverReport)) else None
            if sender is not None and sender == self._rx_stats.ssrc and addr[0] == self._remote[0]:
                self._rtcp_remote, self._rtcp_latched = (addr[0], addr[1]), True
        self._on_reports(packets, time.time())

    def _on_reports(self, packets: list[RtcpPacket], now_unix: float) -> None:
        for p in packets:
            if isinstance(p, RtcpSenderReport):
                if p.ssrc == self._rx_stats.ssrc:
                    self._rx_stats.record_sender_report(p, now_unix)
            elif not isinstance(p, RtcpReceiverReport):
                continue
            for block in p.reports:
                if block.ssrc == self.ssrc:
                    self._remote_block = block
                    rtt = round_trip_seconds(block, now_unix)
                    if rtt is not None:
                        self._rtt = rtt

    def _schedule_rtcp(self) -> None:
        delay = self.rtcp_interval * self._rng.uniform(0.5, 1.5)
        self._rtcp_timer = self._loop.call_later(delay, self._rtcp_tick)

    def _rtcp_tick(self) -> None:
        self._rtcp_timer = None
        if self._closed:
            return
        self._send_rtcp()
        self._schedule_rtcp()

    def rtcp_report(self, bye: bool = False) -> bytes:
        """The compound RTCP packet we would send now: SR (if we sent since the last report) or RR,
        SDES CNAME, and BYE when leaving."""
        now_unix = time.time()
        blocks = [self._rx_stats.report_block(now_unix)] if self._rx_stats.received else []
        first: RtcpPacket
        if self._tx_packets != self._tx_at_last_report:
            first = RtcpSenderReport(
                self.ssrc,
                ntp_timestamp(now_unix),
                self._ts,
                self._tx_packets & 0xFFFFFFFF,
                self._tx_octets & 0xFFFFFFFF,
                blocks,
            )
        else:
            first = RtcpReceiverReport(self.ssrc, blocks)
        self._tx_at_last_report = self._tx_packets
        cname = self.cname.encode()
        item = bytes([1, len(cname)]) + cname
        sdes = struct.pack("!I", self.ssrc) + item + bytes(4 - (4 + len(item)) % 4)
        parts: list[RtcpPacket] = [first, RtcpOther(_RTCP_SDES, 1, sdes)]
        if bye:
            parts.append(RtcpOther(_RTCP_BYE, 1, struct.pack("!I", self.ssrc)))
        return b"".join(bytes(p) for p in parts)

    def _send_rtcp(self, bye: bool = False) -> None:
        if self._rtcp_remote is None:
            return
        self._rtcp.sendto(self.rtcp_report(bye), self._rtcp_remote)

    # ---- stats and teardown ----------------------------------------------------------------------
    def stats(self) -> RtpLegStats:
        block = self._remote_block
        jb = self._jitter.stats
        return RtpLegStats(
            packets_received=self._rx_packets,
            bytes_received=self._rx_bytes,
            packets_sent=self._tx_packets,
            bytes_sent=self._tx_bytes,
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
            round_trip_ms=self._rtt * 1000 if self._rtt is not None else None,
        )

    def close(self) -> None:
        """Send an RTCP BYE, stop the report timer and close both sockets. Safe to call twice."""
        if self._closed:
            return
        with contextlib.suppress(OSError):
            self._send_rtcp(bye=True)
        self._closed = True
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
        self._rtp.close()
        self._rtcp.close()
