"""An :class:`~callroom.media.ports.AudioLeg` over real RTP: a UDP socket pair (RTP on an even port, RTCP on
the next one) around the sans-I/O pieces of ``callroom/rtp``.

Receive: ``receive`` takes a datagram (parse, RFC 3550 statistics, jitter buffer or RFC 4733 receiver);
``pull_frame`` plays one 160-sample frame per call, concealing losses, searching it for in-band DTMF. Send:
``push_frame`` encodes one G.711 packet (or the RFC 4733 packet of a digit being sent). RTCP SR/RR go out
every ~5 s; received reports feed :meth:`RtpLeg.stats`.

One receive path: whoever reads the socket hands each datagram to ``receive`` unless the batch's lanes take
it. In the engine, :class:`~callroom.aio.rtp_batch.RtpBatch` reads the socket once per tick and leases the
leg's steady state to its array lanes (``steady``/``lease``/``resume``: ``rtp_steady.py``; the leg's side of
it, with the state itself, is ``rtp_leg_state.py``), which take the usual packets; what they hand back comes
here, and whatever needs the state takes it back first (``_own``). Legs outside the lanes run through the
stages of ``pull_frame``/``push_frame`` (``next_payload``, ``take_frame``, ``send_encoded`` ...). Outside an
engine, an event-loop reader reads the socket. The leg knows nothing of the batch or the lanes.

The local clock is ``loop.time()`` in 8 kHz timestamp units; the playout clock advances one frame per
``pull_frame`` and is re-anchored to it when the two drift more than a few frames apart (a stalled tick).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
from collections.abc import Callable
from typing import Final, Self

from callroom.aio.rtp_leg_state import PLAIN_PACKET, RtpLegState
from callroom.aio.rtp_socket import RtpSocket, bind_rtp_pair
from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Frame
from callroom.errors import RtpParseError
from callroom.rtp.dtmf import DtmfCallback
from callroom.rtp.g711 import ALAW_DECODE, ALAW_ENCODE, PT_PCMA, PT_PCMU, ULAW_DECODE, ULAW_ENCODE, decode_frame
from callroom.rtp.jitter import LOST, Lost
from callroom.rtp.packet import RtpPacket
from callroom.rtp.stats import RtpLegStats

__all__ = ["DIRECTIONS", "RtpLeg", "RtpLegStats"]

log = logging.getLogger(__name__)

Addr = tuple[str, int]
DIRECTIONS: Final = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
_SENDING: Final = frozenset({"sendrecv", "sendonly"})
_SEQ_TS_SSRC: Final = struct.Struct("!HII")  # the fixed header after its first two bytes
_F: Final = FRAME_SAMPLES
_RESYNC: Final = 3 * FRAME_SAMPLES  # playout clock vs loop clock drift that re-anchors the playout clock
_CATCH_UP: Final = FRAME_SAMPLES  # a frame still this overdue after one is played is skipped (cuts latency)
_TABLES: Final = {PT_PCMU: (ULAW_ENCODE, ULAW_DECODE), PT_PCMA: (ALAW_ENCODE, ALAW_DECODE)}


class RtpLeg(RtpLegState):
    """One RTP session (G.711 + telephone-event) as an ``AudioLeg``. Create with :meth:`open`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rtp: RtpSocket,
                 rtcp: asyncio.DatagramTransport, *, on_dtmf: DtmfCallback | None = None, symmetric: bool = True,
                 detect_inband: bool = True, rtcp_interval: float = 5.0, silence_timeout: float = 0.5,
                 rng: random.Random | None = None) -> None:  # fmt: skip
        super().__init__(loop, rtp, rtcp, on_dtmf=on_dtmf, symmetric=symmetric, detect_inband=detect_inband,
                         rtcp_interval=rtcp_interval, silence_timeout=silence_timeout, rng=rng)
        self._rtcp.start(self._sent)
        rtp.read_from(loop, self.receive)  # until a batch reads it

    @classmethod
    async def open(cls, local_ip: str, port_range: tuple[int, int] = (20000, 30000), *,
                   on_dtmf: DtmfCallback | None = None, symmetric: bool = True, detect_inband: bool = True,
                   rtcp_interval: float = 5.0, silence_timeout: float = 0.5, attempts: int = 100,
                   rng: random.Random | None = None) -> Self:  # fmt: skip
        """Bind RTP on a free even port in ``[low, high)`` and RTCP on the next port."""
        rtp, rtcp, rtcp_endpoint = await bind_rtp_pair(local_ip, port_range, attempts, rng or random.SystemRandom())
        leg = cls(asyncio.get_running_loop(), rtp, rtcp, on_dtmf=on_dtmf, symmetric=symmetric,
                  detect_inband=detect_inband, rtcp_interval=rtcp_interval, silence_timeout=silence_timeout, rng=rng)
        rtcp_endpoint.handler = leg._on_rtcp
        return leg

    # ---- negotiation -----------------------------------------------------------------------------
    def set_remote(self, addr: Addr, payload_type: int, telephone_event_pt: int | None = None,
                   direction: str = "sendrecv") -> None:  # fmt: skip
        """Apply an SDP negotiation: where to send, the G.711 payload type, the RFC 4733 payload type,
        and our direction (``sendonly``/``sendrecv`` send; ``recvonly``/``inactive`` do not: hold).

        Calling it again (re-INVITE) keeps a latched address unless the SDP address changed."""
        self._own()
        if payload_type not in _TABLES:
            raise ValueError(f"payload type {payload_type} is not PCMU (0) or PCMA (8)")
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        addr = (addr[0], int(addr[1]))
        if not self.reachable(addr):
            raise ValueError(f"cannot send RTP to {addr[0]!r} from an IPv{self.ip_version} socket")
        if addr != self._sdp_remote:
            self._remote_since = self._loop.time()
            self._sdp_remote = self._remote = self._remote_src = addr
            self._rtcp.peer_moved(addr)
            self._latched = False
        self._pt = payload_type
        self.encode_table, self.decode_table = _TABLES[payload_type]
        self.dtmf_in.set_payload_type(telephone_event_pt)
        self.dtmf_out.set_payload_type(telephone_event_pt)
        was_sending = self._can_send
        self._direction = direction
        self._can_send = direction in _SENDING and addr[1] != 0 and addr[0] not in ("0.0.0.0", "::")
        if self._can_send and not was_sending:
            self._tx.marker = True

    @property
    def ip_version(self) -> int:
        return 6 if self._rtp.sock.family == socket.AF_INET6 else 4

    def reachable(self, addr: Addr) -> bool:
        """Whether packets can go to ``addr`` from this leg's socket: an IP address (never a name: a lookup
        per packet would block the media loop) of the socket's family, and a port (0 means "not now")."""
        try:
            ip = ipaddress.ip_address(addr[0])
        except ValueError:
            return False
        return ip.version == self.ip_version and 0 <= addr[1] < 65536

    def silent_for(self, now: float) -> float:
        """Seconds since the peer last sent anything (RTP or RTCP) or, if it never has, since its address was
        set; 0.0 while the batch's lanes run the leg (they give it back at the first missing packet)."""
        if self._release is not None:
            return 0.0
        return now - max(self._heard, self._remote_since)

    @property
    def expects_media(self) -> bool:
        """Whether the peer's silence means something is wrong: it has an address and the call is not on
        hold either way (a phone that holds with ``sendonly`` often sends nothing at all; ``recvonly`` and
        ``inactive`` send nothing by definition, and neither does a peer at ``c=0.0.0.0``, the old way to
        hold), so only ``sendrecv`` to a real address expects packets."""
        return self._can_send and self._direction == "sendrecv"

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

    @property
    def on_dtmf(self) -> DtmfCallback | None:
        """Called with every digit the peer sends (RFC 4733 or in-band)."""
        return self.dtmf_in.on_dtmf

    @on_dtmf.setter
    def on_dtmf(self, callback: DtmfCallback | None) -> None:
        self.dtmf_in.on_dtmf = callback

    @property
    def silence_timeout(self) -> float:
        """Seconds without packets after which received frames are no longer played."""
        return self._silence_timeout

    @silence_timeout.setter
    def silence_timeout(self, seconds: float) -> None:
        self._own()
        self._silence_timeout = seconds

    # ---- who reads the socket --------------------------------------------------------------------
    def join_batch(self, closing: Callable[[], None]) -> RtpSocket:
        """From now on a batch reads this leg's socket (once per tick) and hands it what its lanes do not
        take (``receive``); ``closing`` is called when the leg closes, before its socket does."""
        self._rtp.stop_reading()
        self._in_batch = closing
        return self._rtp

    def leave_batch(self) -> None:
        """Back to being read by the event loop (unless closed)."""
        self._own()
        self._in_batch = None
        self._rtp.read_from(self._loop, self.receive)

    def loop_time(self) -> float:
        """The event loop's clock, which ``pull_frame`` plays out by."""
        return self._loop.time()

    # ---- receive ---------------------------------------------------------------------------------
    def receive(self, data: bytes, addr: Addr, now: float) -> None:
        """One datagram from the RTP socket, which arrived at ``now`` (seconds, loop clock)."""
        if self._release is not None:
            self._release()
        self._heard = now
        if len(data) == PLAIN_PACKET and data[0] == 0x80 and addr == self._remote_src:
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
                self._rx_bytes += PLAIN_PACKET
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
        if self._remote is None or (pt != self._pt and pt != self.dtmf_in.te_pt):
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
            if not self.dtmf_in.telephone_event(packet, now):
                self._malformed += 1
        elif len(packet.payload) == _F:
            self._jitter.put(packet, arrival)
        else:
            for frame in self._reframer.cut(packet):
                self._jitter.put(frame, arrival)

    def pull_frame(self) -> Frame | None:
        now = self._loop.time()
        got = self.next_payload(now)
        if got is None:
            return None
        if got is LOST:
            frame = self.conceal()
            return frame if self.audible(now) else None
        frame = decode_frame(self.decode_table, got, _F)
        if self.dtmf_in.wants_inband:
            self.dtmf_in.search(frame, now)
        return frame if self.take_frame(frame, now) else None

    # The stages of ``pull_frame``, which the batch runs for many legs at once (decoding and the in-band
    # DTMF search as whole-array operations in between).

    def next_payload(self, now: float) -> bytes | Lost | None:
        """Advance the playout clock by one frame: the G.711 payload to play, ``LOST`` (conceal it: call
        ``conceal``), or None when nothing is playing yet. A payload is to be decoded and handed to
        ``take_frame`` (and to the in-band search if ``wants_inband``)."""
        self._own()
        wall = int(now * SAMPLE_RATE)
        playout = self._playout
        playout = wall if playout is None or abs(wall - playout) > _RESYNC else playout + _F
        self._playout = playout
        self.dtmf_in.expire(self._last_rx_ts + int((now - self._last_rx) * SAMPLE_RATE), now)
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
        self._own()
        return self._concealer.next(None)

    def take_frame(self, frame: Frame, now: float) -> bool:
        """The decoded frame of this tick's payload (kept for concealing a loss that follows); returns
        ``audible``."""
        self._own()
        self._concealer.next(frame)
        return now - self._last_rx <= self._silence_timeout

    @property
    def wants_inband(self) -> bool:
        """Received audio is searched for DTMF tones: ``detect_inband``, and the peer has sent no RFC 4733
        event."""
        return self.dtmf_in.wants_inband

    @property
    def detect_inband(self) -> bool:
        return self.dtmf_in.detect_inband

    @detect_inband.setter
    def detect_inband(self, on: bool) -> None:
        self._own()
        self.dtmf_in.detect_inband = on

    def audible(self, now: float) -> bool:
        """False once the peer has sent nothing for ``silence_timeout``: the frame is not played then."""
        self._own()
        return now - self._last_rx <= self._silence_timeout

    # ---- send ------------------------------------------------------------------------------------
    def push_frame(self, frame: Frame) -> None:
        self._own()
        remote = self._remote
        data = self._tx.packet(frame, self._pt, self.encode_table, self._can_send and remote is not None
                               and not self._closed)
        if data is not None and remote is not None:
            self._rtp.sendto(data, remote)

    def send_encoded(self, buf: bytearray, view: memoryview, offset: int) -> bool:
        """``push_frame`` for a frame the batch has already encoded (with ``encode_table``) into
        ``buf[offset + 12 : offset + 172]``: writes the header in front and sends the packet. Returns False,
        sending nothing, when this tick needs ``push_frame`` itself (DTMF being sent, on hold, no peer)."""
        self._own()
        remote = self._remote
        if not self._can_send or remote is None or self.dtmf_out.busy or self._closed:
            return False
        self._tx.header_into(buf, offset, self._pt)
        try:
            self._sendto(view[offset : offset + PLAIN_PACKET], remote)
        except OSError:
            self._rtp.errors += 1
        return True

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue digits: RFC 4733 events when the peer negotiated telephone-event, else in-band tones.
        Either way they replace the outgoing audio on the 20 ms schedule of ``push_frame``."""
        self._own()
        self.dtmf_out.send(digits, duration_ms)

    # ---- RTCP ------------------------------------------------------------------------------------
    def _on_rtcp(self, data: bytes, addr: Addr) -> None:
        self._heard = self._loop.time()
        latch_to = self._remote if self.symmetric and self._latched else None
        if not self._rtcp.receive(data, addr, latch_to=latch_to):
            self._malformed += 1

    def _sent(self) -> tuple[int, int, int]:
        """What the sender report tells: packets, payload octets, the RTP timestamp of the latest packet."""
        if self._sync is not None:  # the lanes run the leg: its figures brought up to date
            self._sync()
        return self._tx.sent()

    def rtcp_report(self, bye: bool = False) -> bytes:
        """The compound RTCP packet this leg would send now (see ``RtcpSession.report``)."""
        return self._rtcp.report(bye)

    # ---- teardown --------------------------------------------------------------------------------
    def close(self) -> None:
        """Send an RTCP BYE, stop the report timer and close both sockets. Safe to call twice."""
        if self._closed:
            return
        self._own()
        self._closed = True
        try:
            self._rtcp.close()
        finally:
            if self._in_batch is not None:
                closing, self._in_batch = self._in_batch, None
                closing()
            self._rtp.close()
