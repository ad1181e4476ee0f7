"""SrtpLeg on real loopback sockets: audio and RTCP cross protected, and what is not protected with the
agreed key is never played."""

from __future__ import annotations

import asyncio
from typing import cast

import numpy as np
import pytest

from callroom.aio.rtp_batch import RtpBatch
from callroom.aio.rtp_leg import RtpLeg
from callroom.aio.srtp_leg import SrtpLeg
from callroom.media.ports import Frame
from callroom.media.tones import ToneGenerator
from callroom.rtp import g711
from callroom.rtp.packet import RtpPacket
from callroom.rtp.srtp import SrtpContext
from callroom.sip.sdes import SUITES, new_key
from tests.aio.test_rtp_batch import Peer
from tests.aio.test_rtp_leg import Pulled, Run, assert_tone, runner, ticks, tones_both_ways


def _connect(a: RtpLeg, b: RtpLeg) -> None:
    a.set_remote(("127.0.0.1", b.local_port), g711.PT_PCMU, 101, "sendrecv")
    b.set_remote(("127.0.0.1", a.local_port), g711.PT_PCMU, 101, "sendrecv")


@pytest.fixture
def run() -> Run:
    return runner("uvloop")


class Tap(asyncio.DatagramProtocol):
    """A UDP relay from one leg to another that keeps what it carried."""

    def __init__(self, to: tuple[str, int]) -> None:
        self.to = to
        self.seen: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen.append(data)
        assert self.transport is not None
        self.transport.sendto(data, self.to)


def test_tones_and_reports_cross_protected(run: Run) -> None:
    async def one(suite: str) -> None:
            a = await SrtpLeg.open("127.0.0.1", rtcp_interval=0.25)
            b = await SrtpLeg.open("127.0.0.1", rtcp_interval=0.25)
            _connect(a, b)
            ka, kb = new_key(), new_key()
            a.secure(suite, ka, kb)
            b.secure(suite, kb, ka)
            assert a.suite == suite and a.steady() is None
            heard_a, heard_b = await tones_both_ways(a, b, 50)
            assert_tone(heard_b.audio()[800:], 500.0)
            assert_tone(heard_a.audio()[800:], 700.0)
            for leg in (a, b):
                s = leg.stats()
                assert s.packets_received >= 45 and s.malformed == 0 and leg.auth_failures == 0
                assert s.round_trip_ms is not None  # SRTCP reports went both ways and were read
            a.close()
            b.close()

    async def scenario() -> None:
        for suite in SUITES:
            await one(suite)

    run(scenario)


def test_the_wire_carries_no_plain_pcmu(run: Run) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        a = await SrtpLeg.open("127.0.0.1")
        b = await SrtpLeg.open("127.0.0.1")
        tap_t, tap = await loop.create_datagram_endpoint(lambda: Tap(("127.0.0.1", b.local_port)),
                                                         local_addr=("127.0.0.1", 0))  # fmt: skip
        a.set_remote(tap_t.get_extra_info("sockname")[:2], g711.PT_PCMU, None, "sendrecv")
        b.set_remote(("127.0.0.1", a.local_port), g711.PT_PCMU, None, "sendrecv")
        b.symmetric = False
        ka, kb = new_key(), new_key()
        a.secure("AES_CM_128_HMAC_SHA1_80", ka, kb)
        b.secure("AES_CM_128_HMAC_SHA1_80", kb, ka)
        tone = ToneGenerator([600.0])
        frames = []
        heard = Pulled()

        def tick(i: int) -> None:
            frame = tone.next_frame()
            frames.append(g711.ULAW_ENCODE[frame.view("uint16")].tobytes())
            a.push_frame(frame)
            heard(b)

        await ticks(40, tick)
        assert_tone(heard.audio()[800:], 600.0)  # the far end decrypts it
        assert len(tap.seen) >= 35
        plain_payloads = set(frames)
        for packet in tap.seen:
            assert len(packet) == 12 + 160 + 10 and packet[1] & 0x7F == 0  # PCMU, with an 80-bit tag
            assert packet[12:172] not in plain_payloads  # the payload is not the G.711 of what was sent
        tap_t.close()
        a.close()
        b.close()

    run(scenario)


def test_plain_rtp_and_wrong_keys_are_never_played(run: Run) -> None:
    async def scenario() -> None:
        secure = await SrtpLeg.open("127.0.0.1")
        plain = await RtpLeg.open("127.0.0.1")
        _connect(secure, plain)
        tone = ToneGenerator([500.0])
        heard = Pulled()
        sent_before_keys = secure.stats().packets_sent

        def tick(i: int) -> None:
            heard(secure)
            plain.push_frame(tone.next_frame())
            secure.push_frame(tone.next_frame())

        await ticks(15, tick)  # no keys yet: nothing sent, nothing played
        assert secure.stats().packets_sent == sent_before_keys and plain.stats().packets_received == 0
        secure.secure("AES_CM_128_HMAC_SHA1_80", new_key(), new_key())  # a key the plain peer does not have
        await ticks(15, tick)
        assert all(f is None for f in heard.frames)
        assert secure.auth_failures >= 25 and secure.stats().packets_received == 0
        secure.plain()  # a negotiation that ended in plain RTP: packets pass
        await ticks(30, tick)
        assert any(f is not None for f in heard.frames) and plain.stats().packets_received > 0
        secure.close()
        plain.close()

    run(scenario)


def test_in_the_batch_a_secure_leg_takes_its_own_path_and_a_plain_one_the_lanes(run: Run) -> None:
    """Both kinds in one ``RtpBatch``: the secure leg plays what the peer protected and sends packets only its
    key opens; the leg whose negotiation ended plain is leased to the array lanes like any plain leg."""

    async def scenario() -> None:
        peer = Peer()
        secure, plain = await SrtpLeg.open("127.0.0.1"), await SrtpLeg.open("127.0.0.1")
        for leg in (secure, plain):
            leg.set_remote(("127.0.0.1", peer.port), g711.PT_PCMU, None, "sendrecv")
        k_ours, k_theirs = new_key(), new_key()
        secure.secure("AES_CM_128_HMAC_SHA1_80", k_ours, k_theirs)
        plain.plain()
        theirs = SrtpContext("AES_CM_128_HMAC_SHA1_80", k_theirs, k_ours)
        batch = RtpBatch()
        batch.add("secure", secure)
        batch.add("plain", plain)
        tone_in, tone_out = ToneGenerator([500.0]), ToneGenerator([700.0])
        heard: dict[str, list[Frame]] = {"secure": [], "plain": []}

        def send(i: int) -> None:
            packet = bytes(RtpPacket(0, 100 + i, 8000 + 160 * i, 77, g711.encode(0, tone_in.next_frame())))
            peer.send(theirs.protect(packet), secure.local_port)
            peer.send(packet, plain.local_port)

        def tick(i: int) -> None:
            asyncio.get_running_loop().call_later(0.01, send, i)
            batch.receive()
            at, got = batch.pull()
            for k, name in enumerate(("secure", "plain")):
                if k in at:
                    heard[name].append(got[at.index(k)])
            out = tone_out.next_frame()
            batch.push(np.stack([out, out]))

        await ticks(50, tick)
        now = asyncio.get_running_loop().time()
        assert plain.silent_for(now) == 0.0, "the plain leg should be in the lanes"
        assert secure.silent_for(now) > 0.0, "the secure leg never is"
        for name in heard:
            assert_tone(np.concatenate(heard[name][10:]), 500.0)
        sent = peer.received_raw()
        opened = [theirs.unprotect(p) for p in sent[secure.local_port]]
        assert len(opened) >= 45 and all(p is not None for p in opened)
        audio = np.concatenate([g711.decode(0, RtpPacket.parse(p).payload) for p in opened if p is not None])
        assert_tone(audio[1600:], 700.0)
        assert all(len(p) == 172 for p in sent[plain.local_port])  # plain RTP, as negotiated
        batch.close()
        for leg in (secure, plain):
            leg.close()
        peer.close()

    run(scenario)
