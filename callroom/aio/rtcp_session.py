"""The RTCP half of an RTP leg (RFC 3550 section 6): where reports go, the report timer, what we send and
what the peer's reports tell us (its view of our stream, the round-trip time).

The packet formats and the receive statistics are pure (``rtcp.py``); this holds one leg's RTCP state
around an asyncio datagram transport. The leg tells it what it has sent (packets, payload octets, RTP
timestamp) whenever a report is due.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Callable
from typing import Final

from callroom.errors import RtpParseError
from callroom.rtp.rtcp import (
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

Addr = tuple[str, int]
Sent = tuple[int, int, int]  # packets, payload octets, RTP timestamp of the latest packet

_RTCP_SDES: Final = 202
_RTCP_BYE: Final = 203


class RtcpSession:
    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.DatagramTransport, ssrc: int,
                 cname: str, rx_stats: RtpReceiveStats, interval: float, rng: random.Random) -> None:  # fmt: skip
        self._loop = loop
        self._transport = transport
        self.ssrc = ssrc
        self.cname = cname
        self._rx_stats = rx_stats
        self.interval = interval
        self._rng = rng
        self.remote: Addr | None = None  # where our reports go: RTP port + 1, or the latched source
        self.latched = False
        self.remote_block: RtcpReportBlock | None = None  # the peer's latest report about our stream
        self.rtt: float | None = None
        self._tx_at_last_report = 0
        self.send_errors = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sent: Callable[[], Sent] = lambda: (0, 0, 0)

    def start(self, sent: Callable[[], Sent]) -> None:
        """Send a report every ~``interval`` seconds (randomised 0.5-1.5x, as RFC 3550 asks)."""
        self._sent = sent
        self._schedule()

    def peer_moved(self, rtp_addr: Addr) -> None:
        """The SDP gave a new RTP address: reports go to its next port until the peer's RTCP is latched."""
        self.remote = (rtp_addr[0], rtp_addr[1] + 1)
        self.latched = False

    def receive(self, data: bytes, addr: Addr, *, latch_to: Addr | None) -> bool:
        """A datagram on the RTCP port; False if it is not RTCP. ``latch_to`` is the peer's latched RTP
        address when symmetric latching applies: its reports about the stream we receive from that host
        then set where ours go."""
        try:
            packets = parse_compound(data)
        except (RtpParseError, ValueError, struct.error, IndexError):
            return False
        if latch_to is not None and not self.latched:
            first = packets[0]
            sender = first.ssrc if isinstance(first, (RtcpSenderReport, RtcpReceiverReport)) else None
            if sender is not None and sender == self._rx_stats.ssrc and addr[0] == latch_to[0]:
                self.remote, self.latched = (addr[0], addr[1]), True
        self._read(packets, time.time())
        return True

    def _read(self, packets: list[RtcpPacket], now_unix: float) -> None:
        for p in packets:
            if isinstance(p, RtcpSenderReport):
                if p.ssrc == self._rx_stats.ssrc:
                    self._rx_stats.record_sender_report(p, now_unix)
            elif not isinstance(p, RtcpReceiverReport):
                continue
            for block in p.reports:
                if block.ssrc == self.ssrc:
                    self.remote_block = block
                    rtt = round_trip_seconds(block, now_unix)
                    if rtt is not None:
                        self.rtt = rtt

    def report(self, bye: bool = False) -> bytes:
        """The compound RTCP packet we would send now: SR (if we sent since the last report) or RR,
        SDES CNAME, and BYE when leaving."""
        packets, octets, ts = self._sent()
        now_unix = time.time()
        blocks = [self._rx_stats.report_block(now_unix)] if self._rx_stats.received else []
        first: RtcpPacket
        if packets != self._tx_at_last_report:
            first = RtcpSenderReport(
                self.ssrc, ntp_timestamp(now_unix), ts, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF, blocks
            )
        else:
            first = RtcpReceiverReport(self.ssrc, blocks)
        self._tx_at_last_report = packets
        cname = self.cname.encode()
        item = bytes([1, len(cname)]) + cname
        sdes = struct.pack("!I", self.ssrc) + item + bytes(4 - (4 + len(item)) % 4)
        parts: list[RtcpPacket] = [first, RtcpOther(_RTCP_SDES, 1, sdes)]
        if bye:
            parts.append(RtcpOther(_RTCP_BYE, 1, struct.pack("!I", self.ssrc)))
        return b"".join(bytes(p) for p in parts)

    def send(self, bye: bool = False) -> None:
        if self.remote is not None:
            try:
                self._transport.sendto(self.report(bye), self.remote)
            except (OSError, ValueError, TypeError, OverflowError):  # an address the socket cannot reach
                self.send_errors += 1

    def _schedule(self) -> None:
        self._timer = self._loop.call_later(self.interval * self._rng.uniform(0.5, 1.5), self._due)

    def _due(self) -> None:
        self._timer = None
        self.send()
        self._schedule()

    def close(self) -> None:
        """Send a BYE, stop the timer and close the socket (all three, whatever the first does)."""
        try:
            self.send(bye=True)
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._transport.close()
