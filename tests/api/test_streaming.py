"""Media streaming as a voice bot uses it, through the official SDK against a node with virtual phones and a
real WebSocket server (``tests/support/stream_server.py``): the phone's tone arrives at the server decoded
at its frequency, audio the server sends back is heard by the phone, marks come back when played, clear
cuts the audio off, and a server that stops reading or goes away disturbs nothing else in the call; and forks,
the call's RTP to UDP targets."""

from __future__ import annotations

import base64
import itertools
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import telnyx

from callroom.audio.encode import encode_mp3
from callroom.media.tones import sine
from callroom.rtp.g711 import ulaw_decode
from callroom.rtp.packet import RtpPacket
from tests.aio.test_sip_transport import pcap_scenario
from tests.media.audio import rms, tone_level
from tests.sip.test_node_sip import Sipp, incoming_call
from tests.support.node import free_port
from tests.support.stream_server import StreamServer
from tests.support.tenant import Tenant

HEARD = 1500.0
SILENT = 150.0


@pytest.fixture
def server() -> Iterator[StreamServer]:
    s = StreamServer()
    yield s
    s.close()


def _bridged(tenant: Tenant, a_tone: int, b_tone: int) -> tuple[str, str]:
    a = tenant.dial("a", f"answer_after=0;tone={a_tone}")
    b = tenant.dial("b", f"answer_after=0;tone={b_tone}")
    tenant.client.calls.actions.bridge(a, call_control_id_to_bridge_with=b)
    tenant.event("call.bridged", a)
    return a, b


def test_a_dialled_call_streams_both_tracks_to_the_server(tenant: Tenant, server: StreamServer) -> None:
    state = base64.b64encode(b"bot").decode()
    cid = tenant.dial("caller", "answer_after=0;tone=500", stream_url=server.url, stream_track="both_tracks",
                      client_state=state)
    started = tenant.event("streaming.started", cid)
    assert started.payload["stream_url"] == server.url
    conn = server.connection()
    server.wait(lambda: len(conn.media("inbound")) >= 50 and len(conn.media("outbound")) >= 50)
    assert conn.events()[:2] == ["connected", "start"]
    start = conn.messages[1]
    assert start["start"]["call_control_id"] == cid and start["start"]["client_state"] == state
    assert start["start"]["media_format"] == {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}
    inbound = conn.audio("inbound")[-4000:]
    assert tone_level(inbound, 500) > HEARD  # what the phone says, decoded at its frequency
    assert tone_level(inbound, 900) < SILENT
    tenant.press(cid, "7")
    server.wait(lambda: any(m["event"] == "dtmf" and m["dtmf"]["digit"] == "7" for m in list(conn.messages)))
    tenant.client.calls.actions.stop_streaming(cid)
    tenant.event("streaming.stopped", cid)
    server.wait(lambda: "stop" in conn.events())
    assert conn.messages[-1]["stop"]["call_control_id"] == cid
    seqs = [int(m["sequence_number"]) for m in conn.messages if "sequence_number" in m]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_streaming_start_in_l16_and_on_answer(tenant: Tenant, server: StreamServer) -> None:
    cid = tenant.call_in(from_="virtual:caller;tone=700")
    tenant.client.calls.actions.start_streaming(cid, stream_url=server.url, stream_codec="L16",
                                                custom_parameters=[{"name": "customer", "value": "42"}],
                                                stream_auth_token="s3cret")
    tenant.event("streaming.started", cid)
    conn = server.connection()
    server.wait(lambda: len(conn.media("inbound")) >= 50)
    assert conn.messages[1]["start"]["media_format"] == {"encoding": "L16", "sample_rate": 16000, "channels": 1}
    assert conn.messages[1]["start"]["custom_parameters"] == {"customer": "42"}
    assert conn.headers["x-telnyx-streaming-auth-token"] == "s3cret"
    assert conn.messages[0] == {"event": "connected", "version": "1.0.0", "x-telnyx-streaming-auth-token": "s3cret"}
    pcm = np.frombuffer(b"".join(conn.media("inbound")[-25:]), dtype=">i2").astype(np.int16)
    assert len(pcm) == 25 * 320
    assert tone_level(pcm, 700, rate=16000) > HEARD
    tenant.client.calls.actions.hangup(cid)
    tenant.event("streaming.stopped", cid)

    other = StreamServer()
    try:
        answered = tenant.call_in(from_="virtual:second;tone=600", answer=False)
        tenant.client.calls.actions.answer(answered, stream_url=other.url, stream_track="inbound_track")
        tenant.event("streaming.started", answered)
        conn2 = other.connection()
        other.wait(lambda: len(conn2.media("inbound")) >= 50)
        assert conn2.media("outbound") == []
        assert tone_level(conn2.audio("inbound")[-4000:], 600) > HEARD
    finally:
        other.close()


def test_bidirectional_audio_is_heard_marks_are_played_and_clear_cuts_it_off(tenant: Tenant,
                                                                            server: StreamServer) -> None:
    cid = tenant.call_in(from_="virtual:caller;tone=500")
    tenant.client.calls.actions.start_streaming(cid, stream_url=server.url, stream_bidirectional_mode="rtp",
                                                stream_bidirectional_codec="PCMU")
    tenant.event("streaming.started", cid)
    conn = server.connection()
    server.wait(lambda: "start" in conn.events())
    server.send(conn, {"event": "mark", "mark": {"name": "nothing-queued"}})  # returned at once
    server.wait(lambda: conn.marks() == ["nothing-queued"])
    server.send_audio(conn, sine(900, 1500, amplitude=8000), chunk_ms=100)
    server.send(conn, {"event": "mark", "mark": {"name": "greeting"}})
    server.wait(lambda: conn.marks() == ["nothing-queued", "greeting"])  # once the audio before it was played
    heard = tenant.heard(cid, seconds=1.5)
    assert tone_level(heard, 900) > HEARD  # the phone heard what the server sent

    server.send_audio(conn, sine(1200, 20000, amplitude=8000), chunk_ms=1000)
    server.send(conn, {"event": "mark", "mark": {"name": "long"}})
    server.wait(lambda: tone_level(tenant.heard(cid, seconds=0.3), 1200) > HEARD)
    server.send(conn, {"event": "clear"})
    server.wait(lambda: conn.marks()[-1:] == ["long"])  # clear returns the queued marks
    server.wait(lambda: tone_level(tenant.heard(cid, seconds=0.5), 1200) < SILENT)


def test_a_server_that_stops_reading_or_goes_away_disturbs_nothing_else(tenant: Tenant) -> None:
    server = StreamServer(small_buffer=True)
    try:
        a, b = _bridged(tenant, 500, 900)
        tenant.client.calls.actions.start_streaming(a, stream_url=server.url, stream_track="both_tracks")
        tenant.event("streaming.started", a)
        conn = server.connection()
        server.wait(lambda: len(conn.media("inbound")) >= 10)
        dropped_before = _metric(tenant, "callroom_media_stream_frames_dropped_total")
        server.reading.clear()  # a slow bot: it reads nothing for a while
        while _metric(tenant, "callroom_media_stream_frames_dropped_total") == dropped_before:
            # meanwhile the call goes on as before
            assert tone_level(tenant.heard(b, seconds=1.0), 500) > HEARD
            assert tone_level(tenant.heard(a, seconds=1.0), 900) > HEARD
        server.reading.set()

        def chunks() -> list[int]:
            return [int(m["media"]["chunk"]) for m in list(conn.messages)
                    if m["event"] == "media" and m["media"]["track"] == "inbound"]  # fmt: skip

        # the oldest audio was dropped: the server sees a jump in the chunks, and then the newest audio
        server.wait(lambda: any(later - earlier > 1 for earlier, later in itertools.pairwise(chunks())), timeout=20)
        assert chunks() == sorted(chunks())
        server.drop(conn)  # and then it vanishes
        failed = tenant.event("streaming.failed", a)
        assert failed.payload["stream_params"] == {"stream_url": server.url, "track": "both_tracks"}
        assert failed.payload["stream_type"] == "websocket" and failed.payload["failure_reason"]
        assert tone_level(tenant.heard(b, seconds=1.0), 500) > HEARD
        assert tone_level(tenant.heard(a, seconds=1.0), 900) > HEARD
        assert "call.hangup" not in tenant.events(a)
    finally:
        server.close()


def _metric(tenant: Tenant, name: str) -> float:
    text = httpx.get(f"{tenant.node.root_url}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_a_stream_no_server_takes_fails_and_bad_options_are_refused(tenant: Tenant, server: StreamServer) -> None:
    cid = tenant.call_in()
    url = server.url.replace(str(server.port), "1")  # nobody listens on port 1
    tenant.client.calls.actions.start_streaming(cid, stream_url=url)
    failed = tenant.event("streaming.failed", cid)
    assert failed.payload["failure_reason"] == "could not connect to the stream_url"
    with pytest.raises(telnyx.UnprocessableEntityError) as not_ws:
        tenant.client.calls.actions.start_streaming(cid, stream_url="http://example.com/")
    assert not_ws.value.body["errors"][0]["source"]["pointer"] == "/stream_url"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError):
        tenant.client.calls.actions.start_streaming(cid, stream_url=server.url, stream_bidirectional_mode="rtp",
                                                    stream_bidirectional_codec="OPUS")
    with pytest.raises(telnyx.UnprocessableEntityError) as none:
        tenant.client.calls.actions.stop_streaming(cid)
    assert none.value.body["errors"][0]["code"] == "90107"  # type: ignore[index]


def test_a_stream_to_a_refused_address_is_refused(strict_tenant: Tenant, server: StreamServer) -> None:
    """A node that may not reach loopback refuses a stream URL naming it at once, and one whose name resolves
    to it when it connects (as it does webhooks and media URLs): the server is never reached."""
    cid = strict_tenant.call_in()
    with pytest.raises(telnyx.UnprocessableEntityError) as refused:
        strict_tenant.client.calls.actions.start_streaming(cid, stream_url="ws://127.0.0.1:9/stream")
    assert refused.value.body["errors"][0]["source"]["pointer"] == "/stream_url"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError):
        strict_tenant.client.calls.actions.start_forking(cid, rx="udp:[::1]:9")
    strict_tenant.client.calls.actions.start_streaming(cid, stream_url=f"ws://localhost:{server.port}/stream")
    failed = strict_tenant.event("streaming.failed", cid)
    assert failed.payload["failure_reason"] == "could not connect to the stream_url"
    assert server.connections == []


def test_fork_sends_the_call_rtp_to_udp_targets(tenant: Tenant) -> None:
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (rx_sock, tx_sock):
            s.bind(("127.0.0.1", 0))
            s.settimeout(10)
        a, b = _bridged(tenant, 500, 900)
        tenant.client.calls.actions.start_forking(a, rx=f"udp:127.0.0.1:{rx_sock.getsockname()[1]}",
                                                  tx=f"udp:127.0.0.1:{tx_sock.getsockname()[1]}")
        assert tenant.event("call.fork.started", a).payload["stream_type"] == "decrypted"
        for sock, said, not_said in ((rx_sock, 500, 900), (tx_sock, 900, 500)):
            packets = [RtpPacket.parse(sock.recv(2048)) for _ in range(60)]
            assert {p.payload_type for p in packets} == {0} and len({p.ssrc for p in packets}) == 1
            seqs = [p.sequence_number for p in packets]
            assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
            audio = ulaw_decode(b"".join(p.payload for p in packets[-40:]))
            assert tone_level(audio, said) > HEARD and tone_level(audio, not_said) < SILENT
        tenant.client.calls.actions.stop_forking(a)
        tenant.event("call.fork.stopped", a)
        with pytest.raises(telnyx.UnprocessableEntityError) as twice:
            tenant.client.calls.actions.stop_forking(a)
        assert twice.value.body["errors"][0]["code"] == "90107"  # type: ignore[index]
        with pytest.raises(telnyx.UnprocessableEntityError):
            tenant.client.calls.actions.start_forking(b, rx="tcp:127.0.0.1:9")
    finally:
        rx_sock.close()
        tx_sock.close()


def test_bidirectional_audio_to_the_opposite_leg_of_a_bridge(tenant: Tenant, server: StreamServer) -> None:
    a, b = _bridged(tenant, 500, 900)
    tenant.client.calls.actions.start_streaming(a, stream_url=server.url, stream_bidirectional_mode="rtp",
                                                stream_bidirectional_target_legs="opposite")
    tenant.event("streaming.started", a)
    conn = server.connection()
    server.wait(lambda: "start" in conn.events())
    server.send_audio(conn, sine(1200, 3000, amplitude=8000), chunk_ms=500)
    server.wait(lambda: tone_level(tenant.heard(b, seconds=0.3), 1200) > HEARD)  # the bridged party hears the bot
    assert tone_level(tenant.heard(a, seconds=0.3), 1200) < SILENT
    assert tone_level(tenant.heard(b, seconds=0.3), 500) > HEARD  # and still the caller


def test_mp3_files_a_server_sends_are_played_in_order(tenant: Tenant, server: StreamServer) -> None:
    """Telnyx's default bidirectional mode: the server's media frames carry MP3 files."""
    cid = tenant.call_in(from_="virtual:caller;tone=500")
    tenant.client.calls.actions.start_streaming(cid, stream_url=server.url)
    tenant.event("streaming.started", cid)
    conn = server.connection()
    server.wait(lambda: "start" in conn.events())
    for hz in (700, 1300):
        mp3 = encode_mp3([sine(hz, 1500, amplitude=8000)])
        server.send(conn, {"event": "media", "media": {"payload": base64.b64encode(mp3).decode()}})
    server.send(conn, {"event": "mark", "mark": {"name": "both-played"}})
    server.wait(lambda: tone_level(tenant.heard(cid, seconds=0.3), 700) > HEARD)
    server.wait(lambda: tone_level(tenant.heard(cid, seconds=0.3), 1300) > HEARD)  # the second after the first
    server.wait(lambda: conn.marks() == ["both-played"])
    server.wait(lambda: tone_level(tenant.heard(cid, seconds=0.3), 1300) < SILENT)  # all played, then quiet


@pytest.mark.sip
def test_a_sip_call_streams_what_its_caller_says_and_hears(tenant: Tenant, server: StreamServer,
                                                           tmp_path: Path) -> None:
    """An RTP leg (run with the others in the media process's batch) streams as a virtual phone does."""
    caller = Sipp(["-sf", str(pcap_scenario(tmp_path)), "-s", tenant.connection_id,
                   f"127.0.0.1:{tenant.node.sip_port}", "-m", "1", "-mp", str(free_port() & ~1)], tmp_path)
    cid = incoming_call(tenant)
    tenant.client.calls.actions.answer(cid, stream_url=server.url, stream_track="both_tracks")
    listener = tenant.dial("listener", "answer_after=0;tone=900")
    tenant.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=listener)
    tenant.event("streaming.started", cid)
    conn = server.connection()
    server.wait(lambda: tone_level(conn.audio("outbound")[-4000:], 900) > HEARD)  # what the caller hears
    server.wait(lambda: rms(conn.audio("inbound")[-8000:]) > 300)  # and what it says (SIPp's recorded audio)
    code, output = caller.wait()
    assert code == 0, output
    tenant.event("streaming.stopped", cid)
