"""SipTransport on real loopback sockets: against another SipTransport (with RTP between two RtpLegs set up
from the negotiated SDP), against a bare socket (timers), and against SIPp."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import uvloop

from callroom.aio.rtp_leg import RtpLeg
from callroom.aio.sip_transport import SipTransport
from callroom.media.ports import DtmfDigit, Frame
from callroom.media.tones import ToneGenerator
from callroom.sip.call import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallEvent,
    CallFailed,
    CallRinging,
    IncomingCall,
)  # fmt: skip
from callroom.sip.message import parse_message
from callroom.sip.sdp import SessionDescription, accept_answer, make_offer, negotiate_answer
from tests.media.audio import rms, tone_level

SIPP = shutil.which("sipp")
PCAP_DIR = Path(os.environ.get("SIPP_PCAP_DIR", "/usr/share/sip-tester"))
SILENCE = np.zeros(160, dtype=np.int16)


class Events:
    """Collects a transport's events; ``wait_for`` a type with a deadline."""

    def __init__(self) -> None:
        self.items: list[CallEvent] = []
        self._changed = asyncio.Event()
        self.handlers: list[Callable[[CallEvent], None]] = []

    def __call__(self, event: CallEvent) -> None:
        self.items.append(event)
        for handler in self.handlers:
            handler(event)
        self._changed.set()

    async def wait_for(self, kind: type, timeout: float = 5.0) -> CallEvent:
        async with asyncio.timeout(timeout):
            while True:
                found = next((e for e in self.items if isinstance(e, kind)), None)
                if found is not None:
                    return found
                self._changed.clear()
                await self._changed.wait()

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.items]


async def run_ticks(seconds: float, on_tick: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time()
    end = due + seconds
    while due < end:
        on_tick()
        due += 0.02
        await asyncio.sleep(max(0.0, due - loop.time()))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answer_with(transport: SipTransport, leg: RtpLeg | None, ring: bool = True) -> Callable[[CallEvent], None]:
    """A callee: ring, then answer each incoming call with the SDP negotiate_answer gives (and aim ``leg``)."""

    def handle(event: CallEvent) -> None:
        if not isinstance(event, IncomingCall):
            return
        assert event.sdp_offer is not None
        neg = negotiate_answer(event.sdp_offer, "127.0.0.1", leg.local_port if leg else 40000)
        if leg is not None:
            leg.set_remote(neg.remote_rtp_addr, neg.codec.pt, neg.telephone_event_pt, neg.direction)
        if ring:
            transport.ring(event.call_id)
        transport.answer(event.call_id, neg.answer)

    return handle


# -- SipTransport to SipTransport ---------------------------------------------------------------------


async def test_call_with_rtp_between_two_transports() -> None:
    await call_with_rtp()


def test_call_with_rtp_on_uvloop() -> None:
    errors: list[dict[str, object]] = []
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.get_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        runner.run(asyncio.wait_for(call_with_rtp(), 20))
    assert errors == []


async def call_with_rtp() -> None:
    alice_events, bob_events = Events(), Events()
    alice = await SipTransport.open("127.0.0.1", 0, on_event=alice_events)
    bob = await SipTransport.open("127.0.0.1", 0, on_event=bob_events)
    leg_a, leg_b = await RtpLeg.open("127.0.0.1"), await RtpLeg.open("127.0.0.1")
    loop = asyncio.get_running_loop()

    def bob_answers(event: CallEvent) -> None:  # ring now, answer 100 ms later (outside any callback)
        if isinstance(event, IncomingCall):
            assert event.sdp_offer is not None
            bob.ring(event.call_id)
            neg = negotiate_answer(event.sdp_offer, "127.0.0.1", leg_b.local_port)
            leg_b.set_remote(neg.remote_rtp_addr, neg.codec.pt, neg.telephone_event_pt, neg.direction)
            loop.call_later(0.1, bob.answer, event.call_id, neg.answer)

    bob_events.handlers.append(bob_answers)
    offer = make_offer("127.0.0.1", leg_a.local_port)
    call_id = alice.invite(f"sip:room@127.0.0.1:{bob.local_addr[1]}", "sip:alice@127.0.0.1", offer)

    ringing = cast(CallRinging, await alice_events.wait_for(CallRinging))
    assert ringing.status == 180
    answered = cast(CallAnswered, await alice_events.wait_for(CallAnswered))
    assert answered.call_id == call_id and answered.sdp_answer is not None
    neg = accept_answer(offer, answered.sdp_answer)
    assert neg.remote_rtp_addr == ("127.0.0.1", leg_b.local_port) and neg.codec.name == "PCMU"
    leg_a.set_remote(neg.remote_rtp_addr, neg.codec.pt, neg.telephone_event_pt, neg.direction)
    await bob_events.wait_for(CallConfirmed)

    tone_a, tone_b = ToneGenerator([500.0]), ToneGenerator([1000.0])
    heard_a: list[Frame] = []
    heard_b: list[Frame] = []
    digits: list[DtmfDigit] = []
    leg_b.on_dtmf = digits.append

    def tick() -> None:
        for leg, out in ((leg_a, heard_a), (leg_b, heard_b)):
            frame = leg.pull_frame()
            if frame is not None:
                out.append(frame)
        leg_a.push_frame(tone_a.next_frame())
        leg_b.push_frame(tone_b.next_frame())

    leg_a.send_dtmf("9", 100)
    await run_ticks(1.0, tick)
    assert tone_level(np.concatenate(heard_b)[1600:], 500.0) > 6000
    assert tone_level(np.concatenate(heard_a)[1600:], 1000.0) > 6000
    assert [d.digit for d in digits] == ["9"]

    alice.hangup(call_id)
    ended = cast(CallEnded, await bob_events.wait_for(CallEnded))
    assert ended.by == "remote"
    await asyncio.sleep(0.05)  # let the 200 to the BYE arrive
    assert alice_events.kinds() == ["CallRinging", "CallAnswered", "CallEnded"]
    assert bob_events.kinds() == ["IncomingCall", "CallConfirmed", "CallEnded"]
    assert not alice.endpoint.calls and not bob.endpoint.calls
    for closeable in (leg_a, leg_b, alice, bob):
        closeable.close()


async def test_invites_from_outside_the_allowed_networks_get_403() -> None:
    alice_events, bob_events = Events(), Events()
    alice = await SipTransport.open("127.0.0.1", 0, on_event=alice_events)
    bob = await SipTransport.open("127.0.0.1", 0, on_event=bob_events, allow=["10.0.0.0/8"])
    bob_events.handlers.append(answer_with(bob, None))
    alice.invite(f"sip:room@127.0.0.1:{bob.local_addr[1]}", "sip:alice@127.0.0.1", make_offer("127.0.0.1", 4000))
    failed = cast(CallFailed, await alice_events.wait_for(CallFailed))
    assert failed.status == 403
    assert bob_events.items == [] and bob.rejected == 1

    # the default policy admits loopback
    carol_events = Events()
    carol = await SipTransport.open("127.0.0.1", 0, on_event=carol_events)
    carol_events.handlers.append(answer_with(carol, None, ring=False))
    call_id = alice.invite(
        f"sip:room@127.0.0.1:{carol.local_addr[1]}", "sip:alice@127.0.0.1", make_offer("127.0.0.1", 4000)
    )
    await alice_events.wait_for(CallAnswered)
    alice.hangup(call_id)
    await carol_events.wait_for(CallEnded)
    for t in (alice, bob, carol):
        t.close()


class Listener(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.data: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.times.append(asyncio.get_running_loop().time())
        self.data.append(data)


async def test_timer_retransmits_the_invite_until_closed() -> None:
    loop = asyncio.get_running_loop()
    transport, silent = await loop.create_datagram_endpoint(Listener, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    events = Events()
    alice = await SipTransport.open("127.0.0.1", 0, on_event=events)
    call_id = alice.invite(f"sip:room@127.0.0.1:{port}", "sip:alice@127.0.0.1", None)
    await asyncio.sleep(1.65)
    # Timer A: the INVITE goes out at 0, 0.5 and 1.5 s
    assert len(silent.times) == 3
    gaps = np.diff(silent.times)
    assert abs(gaps[0] - 0.5) < 0.05 and abs(gaps[1] - 1.0) < 0.05
    assert all(parse_message(d).call_id == call_id for d in silent.data)
    assert alice.timer_at == alice.endpoint.get_timer() is not None  # the one timer follows the endpoint's
    alice.close()
    assert alice.timer_at is None
    transport.close()


# -- SIPp ----------------------------------------------------------------------------------------------


def require_sipp() -> str:
    if SIPP is None:
        if os.environ.get("CI"):
            pytest.fail("sipp is not installed (apt-get install sip-tester)")
        pytest.skip("sipp is not installed")
    return SIPP


async def run_sipp(args: list[str], cwd: Path, timeout: float = 25.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        require_sipp(), *args, "-i", "127.0.0.1", "-p", str(free_udp_port()), "-nostdin",
        "-timeout", "20s", "-timeout_error", "-trace_err", cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    errors = "".join(p.read_text(errors="replace") for p in cwd.glob("*_errors.log"))
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")[-3000:] + errors


@pytest.mark.sip
async def test_sipp_uac_calls_complete(tmp_path: Path) -> None:
    require_sipp()
    events = Events()
    server = await SipTransport.open("127.0.0.1", 0, on_event=events)
    events.handlers.append(answer_with(server, None))
    port = server.local_addr[1]
    code, output = await run_sipp(["-sn", "uac", f"127.0.0.1:{port}", "-m", "3", "-r", "10", "-d", "100"], tmp_path)
    assert code == 0, output
    assert events.kinds().count("IncomingCall") == 3
    assert events.kinds().count("CallConfirmed") == 3
    assert [e.by for e in events.items if isinstance(e, CallEnded)] == ["remote"] * 3
    assert not server.endpoint.calls
    server.close()


def pcap_scenario(directory: Path) -> Path:
    """SIPp's built-in ``uac_pcap`` with absolute pcap paths and a shorter audio pause."""
    # (sipp -sd prints the scenario and exits with 99)
    text = subprocess.run([require_sipp(), "-sd", "uac_pcap"], capture_output=True, check=False, text=True).stdout
    for name in ("g711a.pcap", "dtmf_2833_1.pcap"):
        path = PCAP_DIR / name
        if not path.exists():
            pytest.fail(f"{path} missing (set SIPP_PCAP_DIR)")
        text = text.replace(f'"pcap/{name}"', f'"{path}"')
    assert str(PCAP_DIR / "g711a.pcap") in text, "the uac_pcap scenario changed shape"
    text = text.replace('<pause milliseconds="8000"/>', '<pause milliseconds="2500"/>')
    scenario = directory / "uac_pcap.xml"
    scenario.write_text(text)
    return scenario


@pytest.mark.sip
async def test_sipp_call_with_audio_reaches_an_rtp_leg(tmp_path: Path) -> None:
    require_sipp()
    scenario = pcap_scenario(tmp_path)
    events = Events()
    server = await SipTransport.open("127.0.0.1", 0, on_event=events)
    digits: list[DtmfDigit] = []
    leg = await RtpLeg.open("127.0.0.1", on_dtmf=digits.append)
    events.handlers.append(answer_with(server, leg))
    heard: list[Frame] = []

    def tick() -> None:
        frame = leg.pull_frame()
        if frame is not None:
            heard.append(frame)
        leg.push_frame(SILENCE)

    ticker = asyncio.create_task(run_ticks(30.0, tick))
    try:
        code, output = await run_sipp(
            ["-sf", str(scenario), f"127.0.0.1:{server.local_addr[1]}", "-m", "1", "-mp", str(free_udp_port() & ~1)],
            tmp_path,
        )
    finally:
        ticker.cancel()
    assert code == 0, output
    assert isinstance(events.items[-1], CallEnded)
    loud = [f for f in heard if rms(f) > 300]
    assert len(loud) > 50, f"{len(loud)} non-silent frames of {len(heard)}"
    s = leg.stats()
    assert s.packets_received > 80 and s.malformed == 0
    assert leg.payload_type == 8  # the offer had PCMA only
    assert [(d.digit, d.source) for d in digits] == [("1", "rfc4733")]  # and no in-band false alarm
    leg.close()
    server.close()


def test_sdp_offer_parses() -> None:  # sanity for the helpers above: the SDP we offer parses back
    assert SessionDescription.parse(bytes(make_offer("127.0.0.1", 4000))).first_audio() is not None


def test_an_address_the_socket_refuses_fails_one_datagram_and_nothing_else() -> None:
    """uvloop's ``sendto`` raises for a host name or another family; the datagram is counted as failed and
    the transport's one timer stays armed, so every other transaction keeps its retransmissions."""
    import uvloop

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        transport, silent = await loop.create_datagram_endpoint(Listener, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        alice = await SipTransport.open("127.0.0.1", 0)
        alice.invite("sip:room@evil.invalid", "sip:alice@127.0.0.1", None, addr=("evil.invalid", 5060))
        alice.invite("sip:room@[::1]", "sip:alice@127.0.0.1", None, addr=("::1", 5060))
        good = alice.invite(f"sip:room@127.0.0.1:{port}", "sip:alice@127.0.0.1", None)
        assert alice.send_errors == 2 and alice.timer_at is not None
        await asyncio.sleep(0.65)  # timer A retransmits the good INVITE at 0.5 s (and fails the others again)
        assert [parse_message(d).call_id for d in silent.data] == [good, good]
        assert alice.send_errors == 4 and alice.timer_at is not None
        alice.close()
        transport.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
