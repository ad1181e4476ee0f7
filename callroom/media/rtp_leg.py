"""An :class:`~callroom.media.ports.AudioLeg` over real RTP: a UDP socket pair (RTP on an even port, RTCP on
the next one) driving the sans-I/O pieces of this package.

Receive: parse -> RFC 3550 statistics -> jitter buffer (audio) or RFC 4733 receiver (telephone-event);
``pull_frame`` plays one 160-sample frame per call, concealing losses, and runs the in-band DTMF detector.
Send: ``push_frame`` encodes one G.711 packet, or sends the next RFC 4733 packet instead while a digit is
being sent. RTCP SR/RR go out every ~5 s; received reports feed :meth:`RtpLeg.stats`.

The RTP socket is read by an event-loop reader while the leg is on its own; once the media engine takes the
leg into its :class:`~callroom.media.rtp_batch.RtpBatch`, the batch reads every leg's socket once per tick
and runs ``pull_frame``/``push_frame``'s work for all legs at once, through the staged methods below
(``next_payload``, ``received_frame``, ``send_encoded`` ...), which ``pull_frame`` and ``push_frame`` use too.
RTCP (a packet every few seconds) stays on an asyncio datagram endpoint.

The local clock is ``loop.time()`` expressed in 8 kHz timestamp units. The playout clock advances by
exactly one frame per ``pull_frame`` (so tick jitter does not matter) and is re-anchored to the loop
clock when the two drift more than a few frames apart (a stalled or restarted tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import numpy as np

from callroom.errors import MediaError, RtpParseError
from callroom.media.dtmf import DtmfDetector, Rfc4733Receiver, Rfc4733Sender, char_to_event, dtmf_tones
from callroom.media.g711 import ALAW_DECODE, ALAW_ENCODE, PT_PCMA, PT_PCMU, ULAW_DECODE, ULAW_ENCODE
from callroom.media.jitter import LOST, JitterBuffer, LossConcealer, Lost
from callroom.media.ports import FRAME_SAMPLES, SAMPLE_RATE, DtmfCallback, DtmfDigit, Frame
from callroom.media.rtcp import RtpReceiveStats
from callroom.media.rtcp_session import RtcpSession
from callroom.media.rtp import RtpPacket, ts_diff
from callroom.media.rtp_socket import RtpSocket, realtime_offset
from callroom.media.rtp_stats import RtpLegStats

if TYPE_CHECKING:
    from callroom.media.rtp_batch import RtpBatch

__all__ = ["DIRECTIONS", "RtpLeg", "RtpLegStats"]

log = logging.getLogger(__name__)

Addr = tuple[str, int]
DIRECTIONS: Final = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
_SENDING: Final = frozenset({"sendrecv", "sendonly"})
_HEADER: Final = struct.Struct("!BBHII")
_SEQ_TS_SSRC: Final = struct.Struct("!HII")  # the fixed header after its first two bytes
_PACKET: Final = 12 + FRAME_SAMPLES  # a plain 20 ms G.711 packet
_F: Final = FRAME_SAMPLES
_RESYNC: Final = 3 * FRAME_SAMPLES  # playout clock vs loop clock drift that re-anchors the playout clock
_CATCH_UP: Final = FRAME_SAMPLES  # a frame still this overdue after one is played is skipped (cuts latency)
_DTMF_GAP_MS: Final = 60
_DEDUP_SECONDS: Final = 1.0  # an RFC 4733 digit equal to an in-band one reported this recently is a repeat
_TABLES: Final = {PT_PCMU: (ULAW_ENCODE, ULAW_DECODE), PT_PCMA: (ALAW_ENCODE, ALAW_DECODE)}


class _Datagrams(asyncio.DatagramProtocol):
    """RTCP: hands every datagram to ``handler``; socket errors (ICMP unreachable) are counted, not raised."""

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

    def __init__(self, loop: asyncio.AbstractEventLoop, rtp: RtpSocket,
                 rtcp: asyncio.DatagramTransport, *, on_dtmf: DtmfCallback | None = None, symmetric: bool = True,
                 detect_inband: bool = True, rtcp_interval: float = 5.0, silence_timeout: float = 0.5,
                 rng: random.Random | None = None) -> None:  # fmt: skip
        self._loop = loop
        self._rtp = rtp
        self._rng = rng or random.SystemRandom()
        self.on_dtmf = on_dtmf
        self.symmetric = symmetric
        self._detect_inband_on = detect_inband
        self.wants_inband = detect_inband  # detect_inband, until the peer sends RFC 4733 events
        self.rtcp_interval = rtcp_interval
        self.silence_timeout = silence_timeout
        self.local_port: int = rtp.local_port
        self._sendto = rtp.sock.sendto
        self._batch: RtpBatch | None = None  # the engine's batch that reads and runs this leg, if any
        self._reading = False
        self.ssrc = self._rng.getrandbits(32)
        self.cname = f"{self.ssrc:08x}@callroom"
        self._closed = False
        # negotiated
        self._sdp_remote: Addr | None = None
        self._remote: Addr | None = None
        self._remote_src: tuple[object, ...] | None = None  # the peer's address as the socket reports it
        self._latched = False
        self._pt = PT_PCMU
        self._te_pt: int | None = None
        self._direction = "sendrecv"
        self._can_send = False
        # the G.711 tables of the payload type (the batch encodes and decodes all legs' frames with them)
        self.encode_table, self.decode_table = _TABLES[PT_PCMU]
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
        # send
        self._seq = self._rng.getrandbits(16)
        self._ts = self._rng.getrandbits(32)
        self._marker = True
        self._tx_packets = 0
        self._tx_bytes = 0
        self._tx_octets = 0  # payload octets, for the SR
        self._dtmf_sender = Rfc4733Sender(self.ssrc, 101)
        self._dtmf_queue: deque[tuple[str, int]] = deque()
        self._dtmf_packets: deque[RtpPacket] = deque()
        self._dtmf_wait = 0
        self._inband_out: deque[Frame] = deque()
        self._rtcp = RtcpSession(loop, rtcp, self.ssrc, self.cname, self._rx_stats, rtcp_interval, self._rng)
        self._rtcp.start(lambda: (self._tx_packets, self._tx_octets, self._ts))
        self._start_reading()

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
        infos = await loop.getaddrinfo(local_ip, 0, type=socket.SOCK_DGRAM)
        family, address = infos[0][0], infos[0][4]
        for _ in range(attempts):
            port = ports[pick.randrange(len(ports))]
            try:
                rtp = RtpSocket.bind(family, (address[0], port, *address[2:]))
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
            self._rtcp.peer_moved(addr)
            self._latched = False
        self._pt = payload_type
        self.encode_table, self.decode_table = _TABLES[payload_type]
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

    # ---- reading the socket ----------------------------------------------------------------------
    def _start_reading(self) -> None:
        if not self._reading and not self._closed:
            self._loop.add_reader(self._rtp.fileno(), self._readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            with contextlib.suppress(OSError, ValueError):
                self._loop.remove_reader(self._rtp.fileno())

    def _readable(self) -> None:
        self._rtp.read(self._on_rtp, realtime_offset(), 64)

    def join_batch(self, batch: RtpBatch) -> tuple[RtpSocket, Callable[[bytes, Addr, float], None]]:
        """From now on ``batch`` reads this leg's socket (once per tick), handing each datagram and its
        arrival time to the handler returned with the socket."""
        self._stop_reading()
        self._batch = batch
        return self._rtp, self._on_rtp

    def leave_batch(self) -> None:
        """Back to being read by the event loop (unless closed)."""
        self._batch = None
        self._start_reading()

    def loop_time(self) -> float:
        """The event loop's clock, which ``pull_frame`` plays out by."""
        return self._loop.time()

    # ---- receive ---------------------------------------------------------------------------------
    def _on_rtp(self, data: bytes, addr: Addr, now: float) -> None:
        """One datagram from the RTP socket, which arrived at ``now`` (seconds, loop clock)."""
        if len(data) == _PACKET and data[0] == 0x80 and addr == self._remote_src:
            b1 = data[1]
            if b1 & 0x7F == self._pt:
                # The usual packet: audio of one 20 ms frame, no padding, extension or CSRCs, from the peer.
                # Handled from its header fields, without an RtpPacket.
                self._latched = True
                seq, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
                arrival = int(now * SAMPLE_RATE)
                if not self._rx_stats.receive(seq, ssrc, timestamp, arrival):
                    self._dropped += 1  # an unconfirmed sequence jump (RFC 3550 A.1 probation)
                    return
                self._rx_packets += 1
                self._rx_bytes += _PACKET
                self._last_rx = now
                self._last_rx_ts = timestamp
                self._jitter.put_payload(timestamp, b1 > 0x7F, data[12:], arrival)
                return
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
        self.wants_inband = False
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
        got = self.next_payload(now)
        if got is None:
            return None
        if got is LOST:
            frame = self.conceal()
        else:
            frame = self.decode_table[np.frombuffer(got, dtype=np.uint8)]
            if len(frame) != _F:
                frame = np.resize(frame, _F) if len(frame) > _F else np.pad(frame, (0, _F - len(frame)))
            self.received_frame(frame)
            if self.wants_inband:
                self._detect_inband(frame, now)
        return frame if self.audible(now) else None

    # The stages of ``pull_frame``, which the batch runs for many legs at once (decoding and the in-band
    # DTMF search as whole-array operations in between).

    def next_payload(self, now: float) -> bytes | Lost | None:
        """Advance the playout clock by one frame: the G.711 payload to play, ``LOST`` (conceal it: call
        ``conceal``), or None when nothing is playing yet. A payload is to be decoded and handed to
        ``received_frame`` (and to the in-band search if ``wants_inband``)."""
        wall = int(now * SAMPLE_RATE)
        playout = self._playout
        playout = wall if playout is None or abs(wall - playout) > _RESYNC else playout + _F
        self._playout = playout
        if self._te_pt is not None and self._rfc4733_seen:
            for d in self._rfc4733.expire(self._last_rx_ts + int((now - self._last_rx) * SAMPLE_RATE)):
                self._emit(d.digit, d.duration * 1000 // SAMPLE_RATE, "rfc4733", now)
        got = self._jitter.get_catching_up(playout, _CATCH_UP)  # more than _CATCH_UP behind: skip a frame
        if got is None:
            return None
        jitter_ms = self._rx_stats.jitter / (SAMPLE_RATE / 1000)
        if jitter_ms > self._max_jitter:
            self._max_jitter = jitter_ms
        if got is LOST:
            self._concealed += 1
        return got

    def conceal(self) -> Frame:
        """The frame to play for a ``LOST`` payload."""
        return self._concealer.next(None)

    def received_frame(self, frame: Frame) -> None:
        """The decoded frame of this tick's payload (kept for concealing a loss that follows)."""
        self._concealer.next(frame)

    def take_frame(self, frame: Frame, now: float) -> bool:
        """``received_frame`` then ``audible``, in one call (the batch's per-leg step)."""
        self._concealer.next(frame)
        return now - self._last_rx <= self.silence_timeout

    @property
    def detect_inband(self) -> bool:
        """Whether received audio is searched for DTMF tones (``wants_inband``: and the peer has not sent
        RFC 4733 events)."""
        return self._detect_inband_on

    @detect_inband.setter
    def detect_inband(self, on: bool) -> None:
        self._detect_inband_on = on
        self.wants_inband = on and not self._rfc4733_seen

    def audible(self, now: float) -> bool:
        """False once the peer has sent nothing for ``silence_timeout``: the frame is not played then."""
        return now - self._last_rx <= self.silence_timeout

    def _detect_inband(self, frame: Frame, now: float) -> None:
        # A frame this quiet cannot hold a digit: a Goertzel power is at most 4x the frame's mean power, and
        # both tones need min_level**2. (The batch checks this for all legs at once.)
        x = frame.astype(np.float32)
        if float(x @ x) * (4.0 / _F) < self._detector.min_power:
            self.inband_quiet(now)
        else:
            self.inband_classified(self._detector.classify(frame), now)

    @property
    def inband_min_power(self) -> float:
        return self._detector.min_power

    def inband_quiet(self, now: float) -> None:
        """This tick's frame is too quiet to hold a digit. After a few such frames the detector sits in its
        idle state, where more quiet frames change nothing, so they are skipped (most frames of a conference
        are quiet)."""
        if self._quiet_frames > self._detector.min_off_frames:
            return
        self._quiet_frames += 1
        self._inband_advance(None, now)

    def inband_classified(self, classified: str | None, now: float) -> None:
        """The classification of this tick's (loud enough) frame, by ``DtmfDetector.classify(_many)``."""
        self._quiet_frames = 0
        if classified is None and self._detector.idle:
            return  # the usual loud frame (speech): nothing to advance
        self._inband_advance(classified, now)

    def _inband_advance(self, classified: str | None, now: float) -> None:
        digit = self._detector.advance(classified)
        if digit is not None:
            self._emit(digit, self._detector.min_on_frames * _F * 1000 // SAMPLE_RATE, "inband", now)

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
            payload = self.encode_table[frame.view(np.uint16)].tobytes()
            data = _HEADER.pack(0x80, (0x80 if self._marker else 0) | self._pt, seq, ts, self.ssrc) + payload
            payload_len = len(payload)
            self._marker = False
        self._rtp.sendto(data, remote)
        self._tx_packets += 1
        self._tx_bytes += len(data)
        self._tx_octets += payload_len

    def send_encoded(self, buf: bytearray, view: memoryview, offset: int) -> bool:
        """``push_frame`` for a frame the batch has already encoded (with ``encode_table``) into
        ``buf[offset + 12 : offset + 172]``: writes the header in front and sends the packet. Returns False,
        sending nothing, when this tick needs ``push_frame`` itself (DTMF being sent, on hold, no peer)."""
        remote = self._remote
        if (not self._can_send or remote is None or self._dtmf_wait or self._dtmf_packets or self._dtmf_queue
                or self._inband_out or self._closed):
            return False
        ts = self._ts
        self._ts = (ts + _F) & 0xFFFFFFFF
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        _HEADER.pack_into(buf, offset, 0x80, (0x80 if self._marker else 0) | self._pt, seq, ts, self.ssrc)
        self._marker = False
        try:
            self._sendto(view[offset : offset + _PACKET], remote)
        except OSError:
            self._rtp.errors += 1
        self._tx_packets += 1
        self._tx_bytes += _PACKET
        self._tx_octets += _F
        return True

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
        latch_to = self._remote if self.symmetric and self._latched else None
        if not self._rtcp.receive(data, addr, latch_to=latch_to):
            self._malformed += 1

    def rtcp_report(self, bye: bool = False) -> bytes:
        """The compound RTCP packet this leg would send now (see ``RtcpSession.report``)."""
        return self._rtcp.report(bye)

    # ---- stats and teardown ----------------------------------------------------------------------
    def stats(self) -> RtpLegStats:
        block = self._rtcp.remote_block
        rtt = self._rtcp.rtt
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
            round_trip_ms=rtt * 1000 if rtt is not None else None,
        )

    def close(self) -> None:
        """Send an RTCP BYE, stop the report timer and close both sockets. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._rtcp.close()
        if self._batch is not None:
            self._batch.forget(self)
            self._batch = None
        self._stop_reading()
        self._rtp.close()
