"""Messages captured from SIPp 3.6 on loopback (see capture_sipp.py), and a live run when sipp is installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from callroom.sip.call import CallEnded, IncomingCall
from callroom.sip.message import SipRequest, SipResponse, parse_message
from callroom.sip.sdp import PCMU, SessionDescription, negotiate_answer
from callroom.sip.ua import SipEndpoint

DATA = Path(__file__).parent / "data"


def test_sipp_uac_invite() -> None:
    req = SipRequest.parse((DATA / "sipp_uac_invite.txt").read_bytes())
    assert req.method == "INVITE" and req.headers.get("Subject") == "Performance Test"
    assert req.from_.tag is not None and req.from_.tag.endswith("SIPpTag001")
    assert req.contacts[0].uri.user == "sipp"  # bare addr-spec Contact
    sdp = SessionDescription.parse(req.body)
    assert negotiate_answer(sdp, "127.0.0.1", 7000).codec == PCMU


@pytest.mark.parametrize("name", ["sipp_uac_ack.txt", "sipp_uac_bye.txt"])
def test_sipp_uac_in_dialog(name: str) -> None:
    req = SipRequest.parse((DATA / name).read_bytes())
    assert req.to.tag == "resp1" and req.cseq.method == req.method
    assert parse_message(bytes(req)) == req


@pytest.mark.parametrize("name", ["sipp_uas_180.txt", "sipp_uas_200.txt", "sipp_uas_200_bye.txt"])
def test_sipp_uas_responses(name: str) -> None:
    resp = SipResponse.parse((DATA / name).read_bytes())
    assert resp.to.tag is not None and resp.contacts[0].uri.params == {"transport": "UDP"}
    assert resp.contacts[0].uri.user is None
    assert parse_message(bytes(resp)) == resp


@pytest.mark.sip
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
def test_live_sipp_uac_against_endpoint() -> None:
    """SIPp's built-in uac scenario calls a SipEndpoint driven by a tiny blocking loop on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    addr = sock.getsockname()
    sock.settimeout(0.05)
    ep = SipEndpoint(addr)
    proc = subprocess.Popen(
        ["sipp", "-sn", "uac", f"127.0.0.1:{addr[1]}", "-i", "127.0.0.1", "-p", "0", "-m", "1", "-d", "100",
         "-nostdin", "-timeout", "10"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ended = False
    now = 0.0
    try:
        while not ended and now < 8.0:
            try:
                data, src = sock.recvfrom(65535)
                ep.receive_datagram(data, src, now)
            except TimeoutError:
                now += 0.05
                timer = ep.get_timer()
                if timer is not None and timer <= now:
                    ep.handle_timer(now)
            while (ev := ep.next_event()) is not None:
                if isinstance(ev, IncomingCall):
                    assert ev.sdp_offer is not None
                    ep.answer(ev.call_id, negotiate_answer(ev.sdp_offer, "127.0.0.1", 7000).answer, now)
                ended = ended or isinstance(ev, CallEnded)
            for out, dst in ep.datagrams_to_send(now):
                sock.sendto(out, dst)
        assert proc.wait(timeout=10) == 0  # SIPp exits 0 when its call succeeded
        assert ended
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
