"""RtpBatch on real loopback sockets: the per-tick batch does for many legs what ``pull_frame``/``push_frame`` do
for one, with the same result.

Each scenario runs a 20 ms tick; a bare UDP peer plays the phones.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import numpy as np
import uvloop

from callroom.aio.rtp_batch import RtpBatch
from callroom.aio.rtp_leg import RtpLeg
from callroom.media.ports import DtmfDigit, Frame
from callroom.media.tones import ToneGenerator
from callroom.rtp import g711
from callroom.rtp.dtmf import DtmfDetector, dtmf_tones
from callroom.rtp.packet import RtpPacket

SILENCE = np.zeros(160, dtype=np.int16)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    errors: list[dict[str, object]] = []
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.get_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        r.run(asyncio.wait_for(scenario(), 20))
    assert errors == []


async def ticks(n: int, on_tick: Callable[[int], None]) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time()
    for i in range(n):
        on_tick(i)
        due += 0.02
        await asyncio.sleep(max(0.0, due - loop.time()))


class Peer:
    """A bare UDP socket: sends hand-made packets, keeps what arrives (by source port)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    def received(self) -> dict[int, list[RtpPacket]]:
        return {port: [RtpPacket.parse(p) for p in got] for port, got in self.received_raw().items()}

    def received_raw(self) -> dict[int, list[bytes]]:
        """The RTP datagrams that arrived, as they are, by source port (RTCP left out)."""
        out: dict[int, list[bytes]] = {}
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except BlockingIOError:
                return out
            if 192 <= data[1] <= 223:
                continue  # RTCP
            out.setdefault(addr[1], []).append(data)

    def close(self) -> None:
        self.sock.close()


def frames_of(samples: Frame) -> list[Frame]:
    samples = np.pad(samples, (0, -len(samples) % 160))
    return list(samples.reshape(-1, 160))


def test_batch_plays_and_sends_what_single_legs_do() -> None:
    """Leg ``alone`` is run with pull_frame/push_frame, legs in the batch by the batch; all hear the same
    packets and are given the same frames. They must play the same audio and send the same packets."""

    async def scenario() -> None:
        peer = Peer()
        alone = await RtpLeg.open("127.0.0.1")
        batched = [await RtpLeg.open("127.0.0.1") for _ in range(3)]
        pcma = batched[2]
        for leg in (alone, *batched[:2]):
            leg.set_remote(("127.0.0.1", peer.port), g711.PT_PCMU, 101, "sendrecv")
        pcma.set_remote(("127.0.0.1", peer.port), g711.PT_PCMA, 101, "sendrecv")
        batch = RtpBatch()
        for i, leg in enumerate(batched):
            batch.add(f"leg{i}", leg)
        assert len(batch) == 3 and batch.keys == ["leg0", "leg1", "leg2"]
        tone_in = frames_of(np.concatenate([ToneGenerator([500.0, 1100.0]).next_frame() for _ in range(60)]))
        tone_out = ToneGenerator([700.0])
        heard_alone: list[Frame | None] = []
        heard_batch: list[list[Frame | None]] = [[], [], []]

        def send(i: int) -> None:
            for leg in (alone, *batched):
                payload = g711.encode(leg.payload_type, tone_in[i])
                peer.send(bytes(RtpPacket(leg.payload_type, 100 + i, 8000 + 160 * i, 77, payload, marker=i == 0)),
                          leg.local_port)

        def tick(i: int) -> None:
            if i < 50:  # half-way between two ticks, so that no leg's playout decision is a close call
                asyncio.get_running_loop().call_later(0.01, send, i)
            heard_alone.append(alone.pull_frame())
            batch.receive()
            at, got = batch.pull()
            for k in range(3):
                heard_batch[k].append(got[at.index(k)] if k in at else None)
            out = tone_out.next_frame()
            alone.push_frame(out)
            batch.push(np.stack([out, out, out]))

        await ticks(60, tick)
        start = next(i for i, f in enumerate(heard_alone) if f is not None)
        assert start <= 5
        for k, heard in enumerate(heard_batch):
            assert [f is None for f in heard] == [f is None for f in heard_alone], f"leg{k} played at other times"
            for a, b in zip(heard_alone, heard, strict=True):
                if a is not None and b is not None:
                    assert np.array_equal(a, b) if k < 2 else np.abs(a.astype(int) - b).max() < 1200
        sent = peer.received()
        mine = sent[alone.local_port]
        assert len(mine) == 60
        for leg in batched:
            theirs = sent[leg.local_port]
            assert len(theirs) == 60
            assert [p.payload for p in theirs] == [g711.encode(leg.payload_type, g711.decode(0, p.payload))
                                                   for p in mine] or leg is pcma
            assert all(p.sequence_number == (theirs[0].sequence_number + n) & 0xFFFF for n, p in enumerate(theirs))
            assert all(p.timestamp == (theirs[0].timestamp + 160 * n) & 0xFFFFFFFF for n, p in enumerate(theirs))
            assert [p.marker for p in theirs] == [True] + [False] * 59
            assert {p.payload_type for p in theirs} == {leg.payload_type}
            s, single = leg.stats(), alone.stats()
            assert (s.packets_received, s.packets_sent, s.bytes_sent) == (
                single.packets_received, single.packets_sent, single.bytes_sent)
            assert s.concealed_frames == single.concealed_frames  # the frames after the stream stopped
        assert pcma.stats().packets_received == 50
        batch.close()
        for leg in (alone, *batched):
            leg.close()
        peer.close()

    run(scenario)


def test_dtmf_both_ways_through_the_batch() -> None:
    async def scenario() -> None:
        peer = Peer()
        got: list[DtmfDigit] = []
        leg = await RtpLeg.open("127.0.0.1", on_dtmf=got.append)
        other = await RtpLeg.open("127.0.0.1")
        leg.set_remote(("127.0.0.1", peer.port), g711.PT_PCMU, 101, "sendrecv")
        other.set_remote(("127.0.0.1", peer.port), g711.PT_PCMU, None, "sendrecv")
        batch = RtpBatch()
        batch.add("leg", leg)
        batch.add("other", other)
        keys = frames_of(dtmf_tones("59", on_ms=100, off_ms=100))

        def tick(i: int) -> None:
            frame = keys[i] if i < len(keys) else SILENCE
            peer.send(bytes(RtpPacket(0, i, 160 * i, 5, g711.ulaw_encode(frame))), leg.local_port)
            if i == 3:
                leg.send_dtmf("7", 100)  # RFC 4733 events replace the audio for a while
                other.send_dtmf("8", 100)  # no telephone-event: in-band tones instead
            batch.receive()
            batch.pull()
            batch.push(np.zeros((2, 160), dtype=np.int16))

        await ticks(len(keys) + 15, tick)
        assert [(d.digit, d.source) for d in got] == [("5", "inband"), ("9", "inband")]
        sent = peer.received()
        events = [p for p in sent[leg.local_port] if p.payload_type == 101]
        assert len(events) == 7 and events[0].marker
        assert len(sent[leg.local_port]) == len(keys) + 15  # the events took the place of audio packets
        tones = np.concatenate([g711.ulaw_decode(p.payload) for p in sent[other.local_port]])
        assert DtmfDetector().process_samples(tones) == "8"
        batch.close()
        leg.close()
        other.close()
        peer.close()

    run(scenario)


def test_legs_leave_the_batch_by_discard_or_close() -> None:
    async def scenario() -> None:
        peer = Peer()
        legs = [await RtpLeg.open("127.0.0.1") for _ in range(3)]
        for leg in legs:
            leg.set_remote(("127.0.0.1", peer.port), g711.PT_PCMU, None, "sendrecv")
        batch = RtpBatch()
        for i, leg in enumerate(legs):
            batch.add(f"leg{i}", leg)
        generation = batch.generation
        legs[0].close()  # closing forgets it (before its socket is gone)
        batch.discard("leg1")  # discarding hands it back to the event loop's reader
        assert batch.keys == ["leg2"] and batch.generation != generation
        for i in range(3):
            peer.send(bytes(RtpPacket(0, i, 160 * i, 9, bytes(160))), legs[1].local_port)
            peer.send(bytes(RtpPacket(0, i, 160 * i, 9, bytes(160))), legs[2].local_port)
        await asyncio.sleep(0.05)
        assert legs[1].stats().packets_received == 3  # read by the loop, without any tick
        assert legs[2].stats().packets_received == 0  # waits for the batch's next tick
        assert batch.receive() == 3
        assert legs[2].stats().packets_received == 3
        batch.close()
        for leg in legs:
            leg.close()
        peer.close()

    run(scenario)


def test_many_legs_joining_and_leaving_keep_their_streams() -> None:
    """More legs than the batch first has room for, some leaving and others joining while the rest run: every
    leg plays what it is sent and sends one packet a tick, in sequence, whether its lane is reused or not."""

    async def scenario() -> None:
        peer = Peer()
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        batch = RtpBatch()
        legs: dict[str, RtpLeg] = {}
        pushed: dict[str, int] = {}

        async def join(name: str) -> None:
            leg = await RtpLeg.open("127.0.0.1")
            leg.set_remote(("127.0.0.1", peer.port), g711.PT_PCMU if len(legs) % 3 else g711.PT_PCMA, None,
                           "sendrecv")
            legs[name] = leg
            pushed[name] = 0
            batch.add(name, leg)

        for i in range(20):
            await join(f"a{i}")
        tone = ToneGenerator([500.0, 1100.0])
        heard: dict[str, int] = {}
        sent: dict[int, list[RtpPacket]] = {}
        pending: list[str] = []

        def tick(i: int) -> None:
            frame = tone.next_frame()
            for leg in legs.values():
                peer.send(bytes(RtpPacket(leg.payload_type, i, 160 * i, 77, g711.encode(leg.payload_type, frame))),
                          leg.local_port)
            if i == 15:
                for name in [f"a{k}" for k in range(0, 20, 4)]:
                    batch.discard(name)
                    legs.pop(name).close()
            if i == 16:
                pending.extend(f"b{k}" for k in range(8))
            batch.receive()
            at, _frames = batch.pull()
            keys = batch.keys
            for k in at:
                heard[keys[k]] = heard.get(keys[k], 0) + 1
            batch.push(np.zeros((len(batch), 160), dtype=np.int16))
            for name in keys:
                pushed[name] += 1
            for port, packets in peer.received().items():
                sent.setdefault(port, []).extend(packets)

        loop = asyncio.get_running_loop()
        due = loop.time()
        for i in range(50):
            tick(i)
            while pending:
                await join(pending.pop())
            due += 0.02
            await asyncio.sleep(max(0.0, due - loop.time()))
        assert len(batch) == 23
        for name, leg in legs.items():
            packets = sent[leg.local_port]
            assert len(packets) == pushed[name] == leg.stats().packets_sent
            assert all(p.sequence_number == (packets[0].sequence_number + n) & 0xFFFF for n, p in enumerate(packets))
            assert all(p.timestamp == (packets[0].timestamp + 160 * n) & 0xFFFFFFFF for n, p in enumerate(packets))
            assert heard[name] >= pushed[name] - 6, name  # playing after the jitter buffer's delay
            assert leg.stats().concealed_frames == 0
        batch.close()
        for leg in legs.values():
            leg.close()
        peer.close()

    run(scenario)
