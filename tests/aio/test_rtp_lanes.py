"""RtpLanes against RtpLeg: a leg whose steady state runs in the lanes' arrays does what the same leg does on its
own, packet for packet: the same frames played, packets sent, digits reported, statistics, jitter figures and
RTCP report block, whatever the stream does (losses, reordering, duplicates, bursts, talkspurts, an SSRC change,
RFC 4733 events, in-band tones, silence, other packet sizes, sequence and timestamp wrap-around, late ticks).

Both legs are handed the same datagrams with the same arrival times (no socket timing involved); the lanes' leg
is run the way ``RtpBatch`` runs a leg, the other the way ``pull_frame``/``push_frame`` run one.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import numpy as np
import pytest
import uvloop

from callroom.aio.rtp_lanes import PACKET, RtpLanes
from callroom.aio.rtp_leg import RtpLeg
from callroom.aio.rtp_socket import bind_rtp_pair
from callroom.media.ports import DtmfDigit, Frame
from callroom.media.tones import ToneGenerator
from callroom.rtp import g711
from callroom.rtp.dtmf import DtmfDetector, Rfc4733Sender, dtmf_tones
from callroom.rtp.jitter import LOST
from callroom.rtp.packet import RtpPacket
from callroom.rtp.rtcp import RtcpSenderReport, parse_compound

Addr = tuple[str, int]
BASE = 5000.0  # loop time of tick 0, seconds
DETECTOR = DtmfDetector()


async def make_leg(got: list[DtmfDigit]) -> RtpLeg:
    rtp, rtcp, endpoint = await bind_rtp_pair("127.0.0.1", (30000, 60000), 100, random.Random())
    leg = RtpLeg(asyncio.get_running_loop(), rtp, rtcp, on_dtmf=got.append, rng=random.Random(7), rtcp_interval=600)
    endpoint.handler = leg._on_rtcp
    return leg


def stamp(t: float) -> tuple[bytes, float]:
    """A kernel receive time for ``t`` (seconds) and the arrival time a leg computes from it."""
    sec, nsec = int(t), round((t - int(t)) * 1e9)
    return struct.pack("@qq", sec, nsec), sec - 0.0 + nsec * 1e-9


def pull_alone(leg: RtpLeg, now: float) -> Frame | None:
    """``pull_frame`` at loop time ``now``."""
    got = leg.next_payload(now)
    if got is None:
        return None
    if got is LOST:
        frame = leg.conceal()
    else:
        assert isinstance(got, bytes)
        frame = leg.decode_table[np.frombuffer(got, dtype=np.uint8)]
        leg.take_frame(frame, now)
        if leg.wants_inband:
            leg.dtmf_in.search(frame, now)
    return frame if leg.audible(now) else None


class Laned:
    """One leg run as RtpBatch runs it: its usual packets through the lanes, the rest through the leg."""

    def __init__(self, leg: RtpLeg) -> None:
        self.leg = leg
        self.lanes = RtpLanes()
        sock = leg.join_batch(lambda: None)  # read here, not by the loop
        self.on_rtp = leg.receive
        self.lane = self.lanes.add(leg, sock)
        self.at = np.array([self.lane], dtype=np.intp)

    def receive(self, data: bytes, addr: Addr, t: float) -> None:
        lanes = self.lanes
        if len(data) <= PACKET:
            lanes.rx_buf[: len(data)] = data
        kernel, arrival = stamp(t)
        taken = lanes.receive(self.at, np.zeros(1, dtype=np.intp), np.array([len(data)], dtype=np.intp),
                              np.array([addr == lanes.src[self.lane]]), kernel, 0.0)
        if not taken[0]:
            self.on_rtp(data, addr, arrival)

    def pull(self, now: float) -> Frame | None:
        lanes, leg = self.lanes, self.leg
        played, frames = lanes.play(now)
        if not lanes.leased_mask()[self.lane]:  # not leased, or just released: leg by leg
            return pull_alone(leg, now)
        if not len(played):
            return None  # nothing due yet
        frame = frames[0]
        audible = bool(lanes.audible(played, now)[0])
        if lanes.wants_inband(played)[0]:  # as RtpBatch._search_inband
            x = frames.astype(np.float32)
            loud = np.einsum("ij,ij->i", x, x) * np.float32(4.0 / 160) >= np.float32(DETECTOR.min_power)
            digits = DETECTOR.find_digits(frames) if loud[0] else {}
            lanes.advance(lanes.inband(played, loud, digits), now)
        return frame if audible else None

    def push(self, frame: Frame) -> None:
        lanes, leg = self.lanes, self.leg
        lanes.tx["payload"][self.lane] = leg.encode_table[frame.view(np.uint16)]
        if lanes.leased_mask()[self.lane]:
            lanes.send()
            return
        view = memoryview(lanes.tx_buf)
        if not leg.send_encoded(lanes.tx_buf, view, self.lane * PACKET):
            leg.push_frame(frame)
        view.release()
        lanes.lease(self.lane)


def figures(leg: RtpLeg) -> tuple[object, ...]:
    """What the leg reports (its statistics; what its RTCP reports are made of)."""
    return leg.stats(), leg._rx_stats, leg._tx.seq, leg._tx.ts, leg._tx.marker, leg._tx.octets


def state(leg: RtpLeg) -> tuple[object, ...]:
    """All the state the lanes run (for a leg that is not in them)."""
    jb = leg._jitter
    return (*figures(leg), jb.stats, jb.jitter, list(jb._played), sorted(jb._frames.items()), leg._playout,
            leg._last_rx, leg._last_rx_ts, leg.dtmf_in.quiet_frames,
            None if leg._concealer._last is None else leg._concealer._last.tolist(), leg._concealer._repeats)


def report(leg: RtpLeg) -> tuple[object, ...]:
    """An RTCP report's contents but for the times in it."""
    first = parse_compound(leg.rtcp_report())[0]
    assert isinstance(first, RtcpSenderReport)
    return first.ssrc, first.rtp_timestamp, first.packet_count, first.octet_count, [
        (b.ssrc, b.fraction_lost, b.packets_lost, b.highest_sequence, b.jitter, b.lsr) for b in first.reports]


def schedule(rng: random.Random) -> dict[int, list[tuple[bytes, float, bool]]]:
    """The datagrams the peer's packets become, by the tick they arrive in: each with its arrival offset in
    the tick, and whether it comes from a stranger rather than the peer."""
    tones = ToneGenerator([500.0, 1100.0], 6000)
    keys = list(dtmf_tones("4", on_ms=100, off_ms=60).reshape(-1, 160))
    events = Rfc4733Sender(ssrc=0x5EED, payload_type=101)
    due: dict[int, list[tuple[bytes, float, bool]]] = {}
    seq, ts, ssrc = 65500, 0xFFFFFFFF - 160 * 30, 0x5EED

    def at(tick: int, data: bytes, spread: float = 0.004, stranger: bool = False) -> None:
        due.setdefault(tick, []).append((data, rng.uniform(0.0, spread), stranger))

    for k in range(420):
        # a tone with a little noise: no two frames alike
        noise = np.array([rng.randrange(-300, 300) for _ in range(160)], dtype=np.int16)
        frame = keys[k - 150] if 150 <= k < 150 + len(keys) else tones.next_frame() + noise
        if 260 <= k < 300:  # the phone goes quiet (no packets), then talks again
            ts = (ts + 160) & 0xFFFFFFFF
            continue
        if k == 330:  # a new source
            ssrc, seq, ts = 0xBEEF, 100, 9000
        marker = k in (0, 300, 330)
        if k == 200:  # the digit as telephone-events, between two audio packets
            for p in events.digit_packets("6", ts, 100):
                p.sequence_number, seq = seq, (seq + 1) & 0xFFFF
                p.ssrc = ssrc
                at(k, bytes(p))
        packet = bytes(RtpPacket(0, seq, ts, ssrc, g711.ulaw_encode(frame), marker=marker))
        seq, ts = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF
        roll = rng.random()
        if k in (40, 41, 120, 121, 122):
            continue  # lost
        if k == 70:
            packet = packet[:12] + packet[12:100]  # a short (10 ms) packet
        if roll < 0.05 and k > 5:
            at(k + 1, packet)  # late by a tick: arrives with the next one
        elif roll < 0.08:
            at(k + 3, packet, 0.0)  # a burst after a stall
        elif roll < 0.10:
            at(k, packet)
            at(k, packet)  # duplicated
        else:
            at(k, packet)
    at(90, bytes(RtpPacket(0, 7, 7, 7, bytes(160))), 0.0, stranger=True)
    return due


@pytest.mark.parametrize("seed", [3, 8, 21])
def test_a_leg_in_the_lanes_does_what_it_does_alone(seed: int) -> None:
    async def scenario() -> None:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        stranger: Addr = ("127.0.0.1", 9)
        got_alone: list[DtmfDigit] = []
        got_laned: list[DtmfDigit] = []
        alone = await make_leg(got_alone)
        laned = Laned(await make_leg(got_laned))
        for leg in (alone, laned.leg):
            leg.set_remote(("127.0.0.1", peer.getsockname()[1]), g711.PT_PCMU, 101, "sendrecv")
        addr: Addr = ("127.0.0.1", peer.getsockname()[1])
        due = schedule(random.Random(seed))
        out = ToneGenerator([700.0])
        leased_ticks = 0
        sent: dict[int, list[bytes]] = {}

        def drain() -> None:
            while True:
                try:
                    data, (_host, port) = peer.recvfrom(2048)
                except BlockingIOError:
                    return
                if not 192 <= data[1] <= 223:
                    sent.setdefault(port, []).append(data)

        for tick in range(460):
            t = BASE + 0.02 * tick
            for data, offset, foreign in due.get(tick, []):
                source = stranger if foreign else addr
                alone.receive(data, source, stamp(t - 0.01 + offset)[1])
                laned.receive(data, source, t - 0.01 + offset)
            now = t + (0.08 if tick >= 380 else 0.0)  # from tick 380 the ticks run 80 ms late: playout skips ahead
            heard_alone, heard_laned = pull_alone(alone, now), laned.pull(now)
            assert (heard_alone is None) == (heard_laned is None), tick
            if heard_alone is not None and heard_laned is not None:
                assert np.array_equal(heard_alone, heard_laned), tick
            if tick in (100, 101, 350):
                alone.send_dtmf("9", 60)
                laned.leg.send_dtmf("9", 60)
            frame = out.next_frame()
            alone.push_frame(frame)
            laned.push(frame)
            leased_ticks += bool(laned.lanes.leased_mask()[laned.lane])
            drain()
            if tick % 10 == 6:  # reading the statistics leaves the leg in the lanes
                assert figures(alone) == figures(laned.leg), tick
            if tick % 50 == 25:  # and so does an RTCP report
                assert report(alone) == report(laned.leg), tick
            if tick % 50 == 40:  # taken out of the lanes, it carries on where they left it
                laned.lanes.release(laned.lane)
                assert state(alone) == state(laned.leg), tick
        assert leased_ticks > 230  # the usual ticks did run in the lanes (not the quiet or unusual ones)
        laned.lanes.release(laned.lane)
        assert state(alone) == state(laned.leg)
        assert alone._rx_stats.report_block(0.0) == laned.leg._rx_stats.report_block(0.0)
        assert [(d.digit, d.source) for d in got_alone] == [(d.digit, d.source) for d in got_laned]
        assert {d.digit for d in got_alone} == {"4", "6"}
        drain()
        assert len(sent[alone.local_port]) == 460
        assert sent[alone.local_port] == sent[laned.leg.local_port]
        s = alone.stats()
        assert s.late_or_duplicate > 0 and s.concealed_frames > 0 and s.dropped > 0 and s.malformed == 0
        alone.close()
        laned.leg.close()
        peer.close()

    errors: list[dict[str, object]] = []
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.get_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        r.run(asyncio.wait_for(scenario(), 30))
    assert errors == []


def test_release_gives_the_leg_back_its_state() -> None:
    """A leg taken out of the lanes (here by ``set_remote``) carries on from exactly where the lanes left it."""

    async def scenario() -> None:
        got: list[DtmfDigit] = []
        laned = Laned(await make_leg(got))
        leg = laned.leg
        leg.set_remote(("127.0.0.1", 9), g711.PT_PCMU, None, "sendrecv")
        tone = ToneGenerator([600.0])
        for tick in range(30):
            t = BASE + 0.02 * tick
            laned.receive(bytes(RtpPacket(0, tick, 160 * tick, 1, g711.ulaw_encode(tone.next_frame()))),
                          ("127.0.0.1", 9), t - 0.01)
            laned.pull(t)
            laned.push(np.zeros(160, dtype=np.int16))
        assert laned.lanes.leased_mask()[laned.lane]
        before = leg.stats()
        leg.set_remote(("127.0.0.1", 9), g711.PT_PCMA, None, "sendrecv")  # takes the state back
        assert not laned.lanes.leased_mask()[laned.lane]
        assert leg.stats() == before and before.packets_received == 30 and before.packets_sent == 30
        seq_before = leg._tx.seq
        leg.push_frame(np.zeros(160, dtype=np.int16))
        assert leg._tx.seq == (seq_before + 1) & 0xFFFF
        leg.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(asyncio.wait_for(scenario(), 10))
