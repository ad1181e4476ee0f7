"""RtpLeg on real loopback sockets, on the default asyncio loop and on uvloop.

Every scenario runs a 20 ms tick like the media engine's: push the frame each leg should send, pull the
frame each leg received.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pytest
import uvloop

from callroom.aio.rtp_leg import RtpLeg
from callroom.media.ports import DtmfDigit, Frame
from callroom.media.tones import ToneGenerator
from callroom.rtp import g711
from callroom.rtp.dtmf import Rfc4733Sender, TelephoneEvent, dtmf_tones
from callroom.rtp.packet import RtpPacket
from callroom.sip.sdp import Direction, make_offer, negotiate_answer
from tests.media.audio import tone_level

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
SILENCE = np.zeros(160, dtype=np.int16)
Run = Callable[[Callable[[], Awaitable[None]]], None]


def runner(loop_name: str) -> Run:
    """Run a scenario on a fresh loop; fail if anything raised inside a loop callback (a socket handler)."""

    def _run(scenario: Callable[[], Awaitable[None]]) -> None:
        errors: list[dict[str, object]] = []
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as r:
            r.get_loop().set_exception_handler(lambda _loop, context: errors.append(context))
            r.run(asyncio.wait_for(scenario(), 20))
        assert errors == []

    return _run


@pytest.fixture(params=sorted(LOOPS))
def run_both(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario on each loop (production uses uvloop; the default loop must work too)."""
    return runner(request.param)


@pytest.fixture
def run() -> Run:
    return runner("uvloop")


async def ticks(n: int, on_tick: Callable[[int], None]) -> None:
    """Call ``on_tick(i)`` every 20 ms on absolute deadlines, like the media engine."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    for i in range(n):
        on_tick(i)
        due += 0.02
        await asyncio.sleep(max(0.0, due - loop.time()))


@dataclass
class Pulled:
    frames: list[Frame | None] = field(default_factory=list)

    def __call__(self, leg: RtpLeg) -> None:
        self.frames.append(leg.pull_frame())

    def audio(self) -> Frame:
        return np.concatenate([f for f in self.frames if f is not None])

    def first(self) -> int:
        return next(i for i, f in enumerate(self.frames) if f is not None)


async def tones_both_ways(a: RtpLeg, b: RtpLeg, n: int) -> tuple[Pulled, Pulled]:
    """``a`` plays 500 Hz and ``b`` 700 Hz for ``n`` ticks, each pulling what it hears: (a's, b's)."""
    tone_a, tone_b = ToneGenerator([500.0]), ToneGenerator([700.0])
    heard_a, heard_b = Pulled(), Pulled()

    def tick(i: int) -> None:
        heard_a(a)
        heard_b(b)
        a.push_frame(tone_a.next_frame())
        b.push_frame(tone_b.next_frame())

    await ticks(n, tick)
    return heard_a, heard_b


async def pair(
    pt: int = g711.PT_PCMU, te: int | None = 101, *, rtcp_interval: float = 5.0, silence_timeout: float = 0.5
) -> tuple[RtpLeg, RtpLeg]:
    a = await RtpLeg.open("127.0.0.1", rtcp_interval=rtcp_interval, silence_timeout=silence_timeout)
    b = await RtpLeg.open("127.0.0.1", rtcp_interval=rtcp_interval, silence_timeout=silence_timeout)
    a.set_remote(("127.0.0.1", b.local_port), pt, te, "sendrecv")
    b.set_remote(("127.0.0.1", a.local_port), pt, te, "sendrecv")
    return a, b


def assert_tone(samples: Frame, freq: float, amplitude: float = 8000.0) -> None:
    level = tone_level(samples, freq)
    assert level > 0.8 * amplitude, f"{freq} Hz at {level:.0f}, expected about {amplitude:.0f}"
    for other in (freq / 2, freq * 1.7, 2600.0):
        assert tone_level(samples, other) < 0.05 * amplitude, f"{other} Hz leaks into {freq} Hz"


# -- audio ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("loop_name", "pt"), [("uvloop", g711.PT_PCMU), ("asyncio", g711.PT_PCMA)])
def test_tones_cross_in_both_directions(loop_name: str, pt: int) -> None:
    async def scenario() -> None:
        a, b = await pair(pt, rtcp_interval=0.25)
        heard_a, heard_b = await tones_both_ways(a, b, 60)
        for heard, freq in ((heard_b, 500.0), (heard_a, 700.0)):
            start = heard.first()
            assert start <= 5, "audio should be playing within 100 ms"
            assert all(f is not None and f.shape == (160,) for f in heard.frames[start:])
            assert_tone(heard.audio()[800:], freq)
        for leg in (a, b):
            s = leg.stats()
            assert s.packets_sent == 60 and s.packets_received >= 55
            assert s.bytes_sent == 60 * 172 and s.packets_lost == 0 and s.malformed == 0
            assert s.concealed_frames == 0
            # RTCP went both ways: the peer's report about our stream gives a round trip
            assert s.round_trip_ms is not None and 0 <= s.round_trip_ms < 100
            assert s.remote_packets_lost == 0
            q = s.call_quality_stats()
            assert float(q["inbound"]["mos"]) > 4.0 and q["outbound"]["packet_count"] == "60"
        a.close()
        b.close()
        a.close()  # twice is fine

    runner(loop_name)(scenario)


class LossyRelay(asyncio.DatagramProtocol):
    """Forwards datagrams between two addresses, dropping every ``drop_every``-th one from ``a`` to ``b``."""

    def __init__(self, a: tuple[str, int], b: tuple[str, int], drop_every: int) -> None:
        self.a, self.b, self.drop_every = a, b, drop_every
        self.count = 0
        self.dropped = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr[:2] == self.a:
            self.count += 1
            if self.count % self.drop_every == 0:
                self.dropped += 1
                return
            self.transport.sendto(data, self.b)
        elif addr[:2] == self.b:
            self.transport.sendto(data, self.a)


def test_loss_is_concealed_one_frame_per_pull(run: Run) -> None:
    async def scenario() -> None:
        a, b = await pair()
        loop = asyncio.get_running_loop()
        transport, relay = await loop.create_datagram_endpoint(
            lambda: LossyRelay(("127.0.0.1", a.local_port), ("127.0.0.1", b.local_port), 5), local_addr=("127.0.0.1", 0)
        )
        relay_addr = transport.get_extra_info("sockname")[:2]
        a.set_remote(relay_addr, g711.PT_PCMU, 101, "sendrecv")
        b.set_remote(relay_addr, g711.PT_PCMU, 101, "sendrecv")
        tone = ToneGenerator([500.0])
        heard = Pulled()

        def tick(i: int) -> None:
            heard(b)
            a.push_frame(tone.next_frame())
            b.push_frame(SILENCE)

        await ticks(75, tick)
        start = heard.first()
        assert all(f is not None and f.shape == (160,) for f in heard.frames[start:]), "a pull returned None"
        s = b.stats()
        assert relay.dropped == 15
        assert s.packets_lost in (14, 15)  # the last drop may be the newest packet, not yet known lost
        assert 10 <= s.concealed_frames <= 15
        assert tone_level(heard.audio()[800:], 500.0) > 4000
        assert b.remote_addr == relay_addr and a.remote_addr == relay_addr
        assert a.stats().packets_received > 60 and a.stats().packets_lost == 0
        transport.close()
        a.close()
        b.close()

    run(scenario)


def test_hold_stops_sending(run: Run) -> None:
    async def scenario() -> None:
        a, b = await pair(silence_timeout=0.2)
        tone = ToneGenerator([500.0])
        heard = Pulled()
        sent_by_a: list[int] = []

        def tick(i: int) -> None:
            if i == 20:  # b puts a on hold: b offers sendonly, a answers recvonly and stops sending
                offer = make_offer("127.0.0.1", b.local_port, direction=Direction.SENDONLY)
                neg = negotiate_answer(offer, "127.0.0.1", a.local_port)
                assert neg.direction == Direction.RECVONLY
                a.set_remote(neg.remote_rtp_addr, neg.codec.pt, neg.telephone_event_pt, neg.direction)
            if i == 40:
                a.set_remote(("127.0.0.1", b.local_port), 0, 101, "inactive")
            if i == 55:
                a.set_remote(("127.0.0.1", b.local_port), 0, 101, "sendrecv")
            heard(b)
            a.push_frame(tone.next_frame())
            sent_by_a.append(a.stats().packets_sent)
            b.push_frame(SILENCE)

        await ticks(70, tick)
        assert sent_by_a[19] == 20 and sent_by_a[54] == 20, "a kept sending on hold"
        assert sent_by_a[69] == 35, "a resumes after unhold"
        # b hears the tone, then nothing (None once the silence lasts), then the tone again
        assert heard.frames[15] is not None
        assert all(f is None for f in heard.frames[35:55])
        assert any(f is not None and tone_level(f, 500.0) > 4000 for f in heard.frames[60:])
        assert a.stats().packets_received >= 65  # a still receives while holding its sending
        a.close()
        b.close()

    run(scenario)


# -- DTMF ----------------------------------------------------------------------------------------------


def test_rfc4733_digits_arrive_once_each(run_both: Run) -> None:
    async def scenario() -> None:
        got: list[DtmfDigit] = []
        a, b = await pair()
        b.on_dtmf = got.append
        tone = ToneGenerator([500.0])

        def tick(i: int) -> None:
            if i == 5:
                a.send_dtmf("123#", 100)
            a.push_frame(tone.next_frame())
            b.pull_frame()

        await ticks(45, tick)
        assert [(d.digit, d.source) for d in got] == [(c, "rfc4733") for c in "123#"]
        assert all(d.duration_ms == 100 for d in got)
        # 5 + 4 digits x 8 ticks (100 ms + 60 ms gap) of events replaced the audio; 40 sent in all
        assert a.stats().packets_sent == 45
        a.close()
        b.close()

    run_both(scenario)


def test_inband_tones_detected(run: Run) -> None:
    async def scenario() -> None:
        got: list[DtmfDigit] = []
        a, b = await pair(te=None)
        b.on_dtmf = got.append
        samples = dtmf_tones("159*", on_ms=100, off_ms=100)
        frames = list(np.pad(samples, (0, -len(samples) % 160)).reshape(-1, 160))

        def tick(i: int) -> None:
            a.push_frame(frames[i] if i < len(frames) else SILENCE)
            b.push_frame(SILENCE)
            b.pull_frame()
            a.pull_frame()

        await ticks(len(frames) + 20, tick)
        assert [(d.digit, d.source) for d in got] == [(c, "inband") for c in "159*"]
        # without telephone-event, send_dtmf falls back to tones: b sends "42" and a hears it in-band
        heard: list[DtmfDigit] = []
        a.on_dtmf = heard.append
        b.send_dtmf("42", 80)

        def tick_back(i: int) -> None:
            a.push_frame(SILENCE)
            b.push_frame(SILENCE)
            a.pull_frame()

        await ticks(30, tick_back)
        assert [(d.digit, d.source) for d in heard] == [("4", "inband"), ("2", "inband")]
        a.close()
        b.close()

    run(scenario)


class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP socket, for sending hand-made datagrams and seeing what arrives."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))


async def raw_peer() -> RawPeer:
    _, peer = await asyncio.get_running_loop().create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    return peer


def test_digits_sent_both_in_band_and_rfc4733_are_reported_once(run: Run) -> None:
    async def scenario() -> None:
        got: list[DtmfDigit] = []
        leg = await RtpLeg.open("127.0.0.1", on_dtmf=got.append)
        peer = await raw_peer()
        leg.set_remote(("127.0.0.1", peer.port), g711.PT_PCMU, 101, "sendrecv")
        samples = dtmf_tones("73", on_ms=100, off_ms=100)
        frames = list(np.pad(samples, (0, -len(samples) % 160)).reshape(-1, 160))
        sender = Rfc4733Sender(ssrc=1234, payload_type=101)
        # both digits' events start with their tones: ticks 0 and 10 (100 ms on + 100 ms off)
        due: dict[int, list[RtpPacket]] = {}
        for start, digit in ((0, "7"), (10, "3")):
            for k, p in enumerate(sender.digit_packets(digit, 160 * start, 100)):
                due.setdefault(start + k, []).append(p)
        seq = 0

        def tick(i: int) -> None:
            nonlocal seq
            if i < len(frames):
                audio = RtpPacket(0, seq, 160 * i, 1234, g711.ulaw_encode(frames[i]), marker=i == 0)
                peer.send(bytes(audio), leg.local_port)
                seq += 1
                for p in due.get(i, []):
                    p.sequence_number = seq
                    peer.send(bytes(p), leg.local_port)
                    seq += 1
            leg.pull_frame()
            leg.push_frame(SILENCE)

        await ticks(len(frames) + 15, tick)
        assert [d.digit for d in got] == ["7", "3"]
        assert {d.source for d in got} == {"rfc4733"}
        leg.close()

    run(scenario)


# -- robustness ----------------------------------------------------------------------------------------


def garbage() -> Iterator[bytes]:
    rng = random.Random(7)
    yield b""
    yield b"\x80"
    yield b"hello, this is not RTP at all"
    yield bytes(11)
    yield bytes([0x40, 0]) + bytes(20)  # version 1
    yield bytes([0xA0, 0]) + bytes(10) + bytes([0])  # padding count 0
    yield bytes([0x8F, 0]) + bytes(14)  # 15 CSRCs in 16 bytes
    yield bytes([0x90, 0]) + bytes(10) + b"\x00\x00\x00\x09"  # extension overruns
    yield bytes(RtpPacket(101, 1, 1, 99, b"\x01\x02\x03"))  # telephone-event payload of 3 bytes
    yield bytes([0x80, 200, 0, 6]) + bytes(8)  # an SR whose length field lies
    yield bytes([0x81, 201, 0, 1]) + bytes(4)  # an RR announcing a report block it lacks
    for _ in range(300):
        yield rng.randbytes(rng.randrange(1, 200))
    for _ in range(300):
        yield bytes([0x80 | rng.randrange(0, 64), rng.choice([0, 8, 101, 200, 201, 202, 203])]) + rng.randbytes(
            rng.randrange(0, 60)
        )


def test_garbage_is_counted_and_dropped(run_both: Run) -> None:
    async def scenario() -> None:
        a, b = await pair()
        peer = await raw_peer()
        tone = ToneGenerator([500.0])
        heard = Pulled()
        junk = list(garbage())

        def tick(i: int) -> None:
            if i == 10:
                for data in junk:
                    peer.send(data, b.local_port)
                    peer.send(data, b.local_port + 1)
            heard(b)
            a.push_frame(tone.next_frame())
            b.push_frame(SILENCE)

        await ticks(40, tick)
        s = b.stats()
        assert s.malformed > 300
        assert s.dropped > 0  # valid-looking packets from a source other than the latched peer
        assert b.remote_addr == ("127.0.0.1", a.local_port)
        assert all(f is not None for f in heard.frames[heard.first() :])
        assert_tone(heard.audio()[800:], 500.0)
        assert peer.received == []  # b never latched on to the garbage sender
        a.close()
        b.close()

    run_both(scenario)


def test_symmetric_rtp_latches_on_to_the_real_source(run_both: Run) -> None:
    async def scenario() -> None:
        leg = await RtpLeg.open("127.0.0.1", port_range=(40000, 41000))
        assert leg.local_port % 2 == 0 and 40000 <= leg.local_port < 41000
        nat, sdp_said = await raw_peer(), await raw_peer()
        # the SDP names one address, but the phone behind NAT sends from another
        leg.set_remote(("127.0.0.1", sdp_said.port), g711.PT_PCMU, None, "sendrecv")
        leg.push_frame(SILENCE)
        nat.send(bytes(RtpPacket(0, 1, 160, 42, bytes(160))), leg.local_port)
        await asyncio.sleep(0.05)
        leg.push_frame(SILENCE)
        await asyncio.sleep(0.05)
        assert len(sdp_said.received) == 1 and len(nat.received) == 1
        first = RtpPacket.parse(nat.received[0])
        assert first.payload_type == 0 and len(first.payload) == 160 and first.ssrc == leg.ssrc
        assert not first.marker  # the marker went with the first packet, to the SDP address
        assert RtpPacket.parse(sdp_said.received[0]).marker
        # once latched, packets from anywhere else are dropped
        sdp_said.send(bytes(RtpPacket(0, 2, 320, 42, bytes(160))), leg.local_port)
        await asyncio.sleep(0.05)
        assert leg.stats().packets_received == 1 and leg.stats().dropped == 1
        assert leg.remote_addr == ("127.0.0.1", nat.port)
        assert first.sequence_number == (RtpPacket.parse(sdp_said.received[0]).sequence_number + 1) & 0xFFFF
        assert first.timestamp == (RtpPacket.parse(sdp_said.received[0]).timestamp + 160) & 0xFFFFFFFF
        leg.close()

        plain = await RtpLeg.open("127.0.0.1", symmetric=False)
        plain.set_remote(("127.0.0.1", sdp_said.port), g711.PT_PCMU, None, "sendrecv")
        nat.send(bytes(RtpPacket(0, 1, 160, 42, bytes(160))), plain.local_port)
        await asyncio.sleep(0.05)
        assert plain.stats().packets_received == 1 and plain.remote_addr == ("127.0.0.1", sdp_said.port)
        plain.close()

    run_both(scenario)


def test_pull_before_anything_arrived_is_none(run_both: Run) -> None:
    async def scenario() -> None:
        leg = await RtpLeg.open("127.0.0.1")
        assert leg.pull_frame() is None
        leg.push_frame(SILENCE)  # no remote yet: nothing to send, nothing raised
        assert leg.stats().packets_sent == 0
        with pytest.raises(ValueError):
            leg.set_remote(("127.0.0.1", 9), 18, None, "sendrecv")
        with pytest.raises(ValueError):
            leg.send_dtmf("12x", 100)
        leg.close()

    run_both(scenario)


@pytest.mark.slow  # a soak: run with `pytest -m slow`
def test_soak_ten_seconds(run: Run) -> None:  # pragma: no cover - manual
    async def scenario() -> None:
        a, b = await pair()
        tone = ToneGenerator([500.0])

        def tick(i: int) -> None:
            b.pull_frame()
            a.push_frame(tone.next_frame())

        await ticks(500, tick)
        assert b.stats().concealed_frames == 0
        a.close()
        b.close()

    run(scenario)


@pytest.mark.parametrize("ptime_ms", [10, 30])
def test_other_packet_sizes_are_reframed(run: Run, ptime_ms: int) -> None:
    async def scenario() -> None:
        leg = await RtpLeg.open("127.0.0.1")
        peer = await raw_peer()
        leg.set_remote(("127.0.0.1", peer.port), g711.PT_PCMA, None, "sendrecv")
        n = 8 * ptime_ms
        samples = np.concatenate([ToneGenerator([500.0]).next_frame() for _ in range(60)])
        heard = Pulled()
        sent = 0

        def tick(i: int) -> None:
            nonlocal sent
            while sent * n < (i + 1) * 160 and (sent + 1) * n <= len(samples):  # keep the peer's clock
                chunk = samples[sent * n : (sent + 1) * n]
                peer.send(bytes(RtpPacket(8, sent, 1000 + sent * n, 5, g711.alaw_encode(chunk))), leg.local_port)
                sent += 1
            heard(leg)

        await ticks(55, tick)
        start = heard.first()
        # A loaded machine may deliver a packet a tick late; a frame or two may then be missing or concealed.
        assert sum(f is None for f in heard.frames[start:]) <= 2
        assert leg.stats().concealed_frames <= 3
        assert_tone(heard.audio()[:1600], 500.0)
        leg.close()

    run(scenario)


def test_rfc4733_packets_on_the_wire(run: Run) -> None:
    async def scenario() -> None:
        leg = await RtpLeg.open("127.0.0.1")
        peer = await raw_peer()
        leg.set_remote(("127.0.0.1", peer.port), g711.PT_PCMU, 101, "sendrecv")
        tone = ToneGenerator([500.0])
        for i in range(20):
            if i == 2:
                leg.send_dtmf("1#", 100)
            leg.push_frame(tone.next_frame())
        await asyncio.sleep(0.1)
        packets = [RtpPacket.parse(d) for d in peer.received]
        assert len(packets) == 20
        assert all(p.sequence_number == (packets[0].sequence_number + k) & 0xFFFF for k, p in enumerate(packets))
        ts0 = packets[0].timestamp
        kinds = "".join("a" if p.payload_type == 0 else "e" for p in packets)
        # two ticks of audio; digit 1 takes 7 packets (4 updates, 3 ends), then audio until the digit slot of
        # 8 ticks (100 ms + 60 ms gap) is over; digit # likewise
        assert kinds == "aa" + "eeeeeee" + "a" + "eeeeeee" + "aaa"
        for k, p in enumerate(packets):
            if p.payload_type == 0:
                assert p.timestamp == (ts0 + 160 * k) & 0xFFFFFFFF  # audio timestamps keep the clock
        for start, digit in ((2, 1), (10, 11)):
            events = [TelephoneEvent.parse(p.payload) for p in packets[start : start + 7]]
            assert all(p.timestamp == (ts0 + 160 * start) & 0xFFFFFFFF for p in packets[start : start + 7])
            assert [p.marker for p in packets[start : start + 7]] == [True] + [False] * 6
            assert [e.event for e in events] == [digit] * 7
            assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
            assert [e.end for e in events] == [False] * 4 + [True] * 3
        leg.close()

    run(scenario)


def test_a_stalled_tick_catches_up(run: Run) -> None:
    """After the engine stalls (no pulls for 200 ms), playout skips ahead instead of staying late."""

    async def scenario() -> None:
        leg = await RtpLeg.open("127.0.0.1")
        peer = await raw_peer()
        leg.set_remote(("127.0.0.1", peer.port), g711.PT_PCMU, None, "sendrecv")
        played: list[tuple[int, int]] = []  # (tick, index of the packet whose frame was played)

        def tick(i: int) -> None:
            frame = np.full(160, 1000 + 300 * (i % 30), dtype=np.int16)
            peer.send(bytes(RtpPacket(0, i, 160 * i, 9, g711.ulaw_encode(frame))), leg.local_port)
            if 40 <= i < 50:
                return  # the tick stalls: packets keep coming, nobody pulls
            got = leg.pull_frame()
            if got is not None:
                played.append((i, round((float(got.mean()) - 1000) / 300)))

        await ticks(75, tick)
        lags = {i: (i - index) % 30 for i, index in played}
        assert max(lags[i] for i in range(30, 40)) <= 3
        assert max(lags[i] for i in range(60, 75)) <= 4, str(sorted(lags.items()))
        leg.close()

    run(scenario)
