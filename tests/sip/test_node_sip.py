"""Real SIP peers against a whole node: SIPp calling in with audio and RFC 4733 DTMF, SIPp answering
and refusing our outgoing calls, and what people hear across SIP and virtual legs."""

from __future__ import annotations

import re
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import telnyx

from callroom.sip.message import SipResponse, parse_message
from tests.aio.test_sip_transport import pcap_scenario
from tests.media.audio import tone_level
from tests.sip.scenarios import AUTH_UAC, BUSY_UAS, DTMF_UAC, HOLD_UAC
from tests.support.node import NodeThread, free_port
from tests.support.receiver import WebhookReceiver
from tests.support.sipp import SippProcess
from tests.support.tenant import Tenant

pytestmark = pytest.mark.sip


def incoming_call(tenant: Tenant) -> str:
    """The call_control_id of the next SIP call that reached the tenant's application."""
    initiated = tenant.receiver.wait_for(
        lambda r: r.path == tenant.path and r.event_type == "call.initiated"
        and r.payload.get("direction") == "incoming", timeout=15)[0]
    cid: str = initiated.payload["call_control_id"]
    return cid


class Sipp(SippProcess):
    """SIPp in the background on loopback, with its output kept for assertions."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.port = free_port()
        super().__init__([*args, "-i", "127.0.0.1", "-p", str(self.port), "-nostdin", "-timeout", "30s",
                          "-timeout_error", "-trace_err"], cwd)

def test_sipp_calls_in_with_audio_and_dtmf(tenant: Tenant, tmp_path: Path) -> None:
    scenario = pcap_scenario(tmp_path)
    caller = Sipp(["-sf", str(scenario), "-s", tenant.connection_id, f"127.0.0.1:{tenant.node.sip_port}",
                   "-m", "1", "-mp", str(free_port() & ~1)], tmp_path)
    cid = incoming_call(tenant)
    initiated = tenant.event("call.initiated", cid)
    assert initiated.payload["from"].startswith("sip:")
    listener = tenant.dial("listener", "answer_after=0;tone=900")
    tenant.client.calls.actions.answer(cid)
    tenant.event("call.answered", cid)
    tenant.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=listener)
    tenant.event("call.bridged", cid)
    time.sleep(1.5)
    heard = tenant.heard(listener, 1.0)
    assert float(np.sqrt(np.mean(heard.astype(float) ** 2))) > 300, "the virtual phone should hear SIPp's audio"
    digit = tenant.event("call.dtmf.received", cid, timeout=15)
    assert digit.payload["digit"] == "1"
    code, output = caller.wait()
    assert code == 0, output
    hangup = tenant.event("call.hangup", cid)
    assert hangup.payload["hangup_source"] == "caller"
    quality = hangup.payload["call_quality_stats"]  # counted by the leg's RTP session
    assert int(quality["inbound"]["packet_count"]) > 80 and int(quality["outbound"]["packet_count"]) > 50
    assert 1.0 <= float(quality["inbound"]["mos"]) <= 4.5


def test_calls_to_unknown_users_are_refused(tenant: Tenant, tmp_path: Path) -> None:
    caller = Sipp(["-sn", "uac", "-s", "nobody-here", f"127.0.0.1:{tenant.node.sip_port}", "-m", "1"], tmp_path)
    code, output = caller.wait()
    assert code != 0 and "404" in output


def dial_answering_sipp(tenant: Tenant, tmp_path: Path, host: str, *options: str) -> tuple[Sipp, str]:
    """A SIPp UAS that answers one call, dialled at ``host``; returns it and the answered call's id."""
    callee = Sipp(["-sn", "uas", "-m", "1", *options, "-mp", str(free_port() & ~1)], tmp_path)
    time.sleep(0.3)
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111",
                                    to=f"sip:alice@{host}:{callee.port}")
    assert resp.data is not None
    cid = resp.data.call_control_id
    tenant.event("call.answered", cid, timeout=10)
    return callee, cid


def test_dial_out_to_sipp(tenant: Tenant, tmp_path: Path) -> None:
    callee, cid = dial_answering_sipp(tenant, tmp_path, "127.0.0.1", "-rtp_echo")
    talker = tenant.dial("talker", "answer_after=0;tone=700")
    tenant.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=talker)
    time.sleep(1.2)  # the talker's tone goes to SIPp, which echoes it back
    assert tone_level(tenant.heard(talker, 0.5), 700) > 1000, "the echo should come back through the bridge"
    tenant.client.calls.actions.hangup(cid)
    hangup = tenant.event("call.hangup", cid)
    assert hangup.payload["hangup_source"] == "caller"
    quality = hangup.payload["call_quality_stats"]  # asked of the media process before we released the leg
    assert int(quality["outbound"]["packet_count"]) > 40 and int(quality["inbound"]["packet_count"]) > 40
    code, output = callee.wait()
    assert code == 0, output


def test_dial_out_to_a_host_name(tenant: Tenant, tmp_path: Path) -> None:
    # The URI's host is looked up (here in /etc/hosts) without blocking the media loop.
    callee, cid = dial_answering_sipp(tenant, tmp_path, "localhost")
    tenant.client.calls.actions.hangup(cid)
    tenant.event("call.hangup", cid)
    code, output = callee.wait()
    assert code == 0, output


def test_dial_out_busy(tenant: Tenant, tmp_path: Path) -> None:
    scenario = tmp_path / "busy.xml"
    scenario.write_text(BUSY_UAS)
    callee = Sipp(["-sf", str(scenario), "-m", "1"], tmp_path)
    time.sleep(0.3)
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+1555",
                                    to=f"sip:bob@127.0.0.1:{callee.port}")
    assert resp.data is not None
    hangup = tenant.event("call.hangup", resp.data.call_control_id, timeout=10)
    assert (hangup.payload["hangup_cause"], hangup.payload["sip_hangup_cause"]) == ("user_busy", "486")
    code, output = callee.wait()
    assert code == 0, output


def test_sip_leg_in_a_conference_hears_and_is_heard(tenant: Tenant, tmp_path: Path) -> None:
    """A SIPp leg (audio from its pcap) and two virtual phones in one conference."""
    scenario = pcap_scenario(tmp_path)
    caller = Sipp(["-sf", str(scenario), "-s", tenant.connection_id, f"127.0.0.1:{tenant.node.sip_port}",
                   "-m", "1", "-mp", str(free_port() & ~1)], tmp_path)
    cid = incoming_call(tenant)
    tenant.client.calls.actions.answer(cid)
    tenant.event("call.answered", cid)
    a = tenant.dial("a", "answer_after=0;tone=500")
    b = tenant.dial("b", "answer_after=0;tone=1300")
    conf = tenant.client.conferences.create(call_control_id=cid, name="mixed", comfort_noise=False)
    assert conf.data is not None
    for leg in (a, b):
        tenant.client.conferences.actions.join(conf.data.id, call_control_id=leg)
    time.sleep(1.2)
    heard_a = tenant.heard(a, 0.8)
    assert tone_level(heard_a, 1300) > 1500  # hears the other virtual phone
    assert _residual(heard_a, 1300) > 300  # and the SIPp caller's audio on top
    tenant.client.conferences.actions.mute(conf.data.id, call_control_ids=[cid])
    time.sleep(0.6)
    muted = tenant.heard(a, 0.4)
    assert tone_level(muted, 1300) > 1500
    assert _residual(muted, 1300) < 100  # the muted SIP caller is gone from what a hears
    code, output = caller.wait()
    assert code == 0, output
    tenant.event("conference.participant.left", cid, conference_id=conf.data.id)


def _residual(samples: np.ndarray, tone_hz: float) -> float:
    """RMS of what is left once the ``tone_hz`` sine is accounted for."""
    total = float(np.mean(samples.astype(float) ** 2))
    tone = tone_level(samples, tone_hz) ** 2 / 2
    return float(np.sqrt(max(0.0, total - tone)))


def test_phone_puts_the_call_on_hold_with_a_reinvite(tenant: Tenant, tmp_path: Path) -> None:
    """A re-INVITE with a=sendonly is answered a=recvonly and the call goes on; BYE ends it."""
    scenario = tmp_path / "hold.xml"
    scenario.write_text(HOLD_UAC)
    caller = Sipp(["-sf", str(scenario), "-s", tenant.connection_id, f"127.0.0.1:{tenant.node.sip_port}",
                   "-m", "1", "-mp", str(free_port() & ~1)], tmp_path)
    cid = incoming_call(tenant)
    tenant.client.calls.actions.answer(cid)
    code, output = caller.wait()
    assert code == 0, output
    assert tenant.event("call.hangup", cid).payload["hangup_source"] == "caller"


def test_garbage_on_the_sip_port_does_not_hurt(tenant: Tenant, tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x00" * 100, b"INVITE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
                     b"INVITE sip:x@y SIP/2.0\r\nVia: nonsense\r\nContent-Length: 99999\r\n\r\nabc"):
            s.sendto(junk, ("127.0.0.1", tenant.node.sip_port))
    caller = Sipp(["-sn", "uac", "-s", tenant.connection_id, f"127.0.0.1:{tenant.node.sip_port}", "-m", "1",
                   "-d", "200"], tmp_path)
    initiated = tenant.receiver.wait_for(
        lambda r: r.path == tenant.path and r.event_type == "call.initiated", timeout=15)[0]
    tenant.client.calls.actions.answer(initiated.payload["call_control_id"])
    code, output = caller.wait()
    assert code == 0, output


def test_gather_collects_inband_digits_from_sipp(tenant: Tenant, tmp_path: Path) -> None:
    """SIPp streams a WAV carrying DTMF tones; the gather on its leg reports exactly those digits."""
    import soundfile

    from callroom.rtp.dtmf import dtmf_tones

    tones = np.concatenate([np.zeros(12000, dtype=np.int16), dtmf_tones("147#", on_ms=120, off_ms=120)])
    wav = tmp_path / "dtmf.wav"
    soundfile.write(wav, tones, 8000, subtype="ULAW")
    scenario = tmp_path / "dtmf.xml"
    scenario.write_text(DTMF_UAC.replace("WAVFILE", str(wav)))
    caller = Sipp(["-sf", str(scenario), "-s", tenant.connection_id, f"127.0.0.1:{tenant.node.sip_port}",
                   "-m", "1", "-mp", str(free_port() & ~1)], tmp_path)
    cid = incoming_call(tenant)
    tenant.client.calls.actions.answer(cid)
    tenant.client.calls.actions.gather_using_audio(cid, minimum_digits=1, maximum_digits=8, terminating_digit="#")
    ended = tenant.event("call.gather.ended", cid, timeout=15)
    assert (ended.payload["digits"], ended.payload["status"]) == ("147", "valid")
    received = [r.payload["digit"] for r in tenant.receiver.delivered(tenant.path)
                if r.body and r.event_type == "call.dtmf.received" and r.payload.get("call_control_id") == cid]
    assert received == ["1", "4", "7", "#"]
    code, output = caller.wait()
    assert code == 0, output


def test_digest_credentials_are_required_when_configured(tmp_path: Path, receiver: object) -> None:
    """With credentials set, a caller must answer the 401 challenge; a wrong password never gets in."""
    import telnyx

    from tests.support.node import NodeThread
    from tests.support.receiver import WebhookReceiver

    assert isinstance(receiver, WebhookReceiver)
    node = NodeThread(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, sip_credentials=(("alice", "s3cret"),))
    try:
        key = node.new_key("auth")
        client = telnyx.Telnyx(api_key=key, base_url=node.base_url, max_retries=0)
        app = client.call_control_applications.create(application_name="auth",
                                                      webhook_event_url=receiver.url("/auth"))
        assert app.data is not None and app.data.id
        tenant = Tenant(client, node, receiver, key, "/auth", app.data.id)
        scenario = tmp_path / "auth.xml"
        scenario.write_text(AUTH_UAC)
        # -auth_uri: the digest uri must be the Request-URI; SIPp's own would be sip:127.0.0.1:port.
        base = ["-sf", str(scenario), "-s", tenant.connection_id, f"127.0.0.1:{node.sip_port}", "-m", "1",
                "-auth_uri", f"{tenant.connection_id}@127.0.0.1:{node.sip_port}"]

        wrong = Sipp([*base, "-au", "alice", "-ap", "guess", "-recv_timeout", "3000"], tmp_path)
        code, _output = wrong.wait()
        assert code != 0  # challenged again: no 200 for a wrong password
        assert not [r for r in receiver.delivered("/auth") if r.body and r.event_type == "call.initiated"]

        right = Sipp([*base, "-au", "alice", "-ap", "s3cret", "-mp", str(free_port() & ~1)], tmp_path)
        initiated = receiver.wait_for(lambda r: r.path == "/auth" and r.event_type == "call.initiated", timeout=15)[0]
        client.calls.actions.answer(initiated.payload["call_control_id"])
        code, output = right.wait()
        assert code == 0, output
    finally:
        node.stop()



def _knock(sip_port: int, request_uri: str, authorization: str) -> tuple[int, str]:
    """Send an INVITE (a new Call-ID, our own socket) carrying ``authorization``: the status of the final
    response (ACKed) and its WWW-Authenticate, or the last provisional status if none came within 3 s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        port = sock.getsockname()[1]
        token = uuid.uuid4().hex[:16]
        sdp = ("v=0\r\no=replay 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {free_port() & ~1} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        head = (f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{token}\r\n"
                f"From: <sip:replay@127.0.0.1:{port}>;tag={token}\r\nCall-ID: {token}@127.0.0.1\r\n")
        invite = (f"INVITE {request_uri} SIP/2.0\r\n{head}To: <{request_uri}>\r\nCSeq: 1 INVITE\r\n"
                  f"Contact: <sip:replay@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\nAuthorization: {authorization}\r\n"
                  f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
        sock.sendto(invite.encode(), ("127.0.0.1", sip_port))
        status = 0
        while True:
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                return status, ""
            reply = parse_message(data)
            if not isinstance(reply, SipResponse):
                continue
            status = reply.status
            if status >= 200:
                to = re.search(r"^To:\s*(.+?)\r$", data.decode(), re.M | re.I)
                assert to is not None
                ack = (f"ACK {request_uri} SIP/2.0\r\n{head}To: {to.group(1)}\r\nCSeq: 1 ACK\r\n"
                       "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
                sock.sendto(ack.encode(), ("127.0.0.1", sip_port))
                return status, reply.headers.get("WWW-Authenticate") or ""


def test_a_replayed_authorization_is_challenged_again(tmp_path: Path, receiver: WebhookReceiver) -> None:
    """A phone's Authorization, captured from a call that got in and sent again on a new INVITE (a new
    Call-ID), is challenged again (401, stale=true); sent to another application's URI it is refused (400).
    Neither reaches an application."""
    node = NodeThread(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, sip_credentials=(("alice", "s3cret"),))
    try:
        client = telnyx.Telnyx(api_key=node.new_key("replay"), base_url=node.base_url, max_retries=0)
        paths = [f"/replay/{uuid.uuid4().hex}" for _ in range(2)]
        apps = []
        for path in paths:
            app = client.call_control_applications.create(application_name=path, webhook_event_url=receiver.url(path))
            assert app.data is not None and app.data.id
            apps.append(app.data.id)
        scenario = tmp_path / "auth.xml"
        scenario.write_text(AUTH_UAC)
        caller = Sipp(["-sf", str(scenario), "-s", apps[0], f"127.0.0.1:{node.sip_port}", "-m", "1",
                       "-au", "alice", "-ap", "s3cret", "-auth_uri", f"{apps[0]}@127.0.0.1:{node.sip_port}",
                       "-mp", str(free_port() & ~1), "-trace_msg"], tmp_path)
        initiated = receiver.wait_for(lambda r: r.path == paths[0] and r.event_type == "call.initiated",
                                      timeout=15)[0]
        client.calls.actions.answer(initiated.payload["call_control_id"])
        code, output = caller.wait()
        assert code == 0, output
        sent = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
        captured = re.findall(r"^Authorization:\s*(.+?)\s*$", sent, re.M)[-1]
        request_uri = re.findall(r"^INVITE (\S+) SIP/2\.0", sent, re.M)[-1]

        status, challenge = _knock(node.sip_port, request_uri, captured)
        assert status == 401 and "stale=true" in challenge
        assert _knock(node.sip_port, request_uri.replace(apps[0], apps[1]), captured)[0] == 400
        time.sleep(0.5)
        initiated_events = [r for r in receiver.delivered() if r.path in paths and r.body
                            and r.event_type == "call.initiated"]
        assert len(initiated_events) == 1  # SIPp's call only
    finally:
        node.stop()
