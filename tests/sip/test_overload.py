"""A node past its admission limits, with real SIP peers and the official SDK: a new INVITE gets 503 with
Retry-After at once while the calls already up keep their audio, a burst past the per-second budget is refused
and calls are admitted again once it refills, ``POST /calls`` gets 503 / 90115 while the rest of the API
answers, and the node recovers by itself."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import telnyx

from callroom.admission import Limits
from tests.aio.test_sip_transport import pcap_scenario
from tests.sip.test_node_sip import Sipp
from tests.support.node import NodeThread, free_port
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import Tenant

pytestmark = pytest.mark.sip

INVITE = """INVITE sip:{user}@127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{tag}
From: <sip:probe@127.0.0.1:{lport}>;tag={tag}
To: <sip:{user}@127.0.0.1:{port}>
Call-ID: {tag}@overload
CSeq: 1 INVITE
Contact: <sip:probe@127.0.0.1:{lport}>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: {length}

{sdp}"""

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp} RTP/AVP 0\r\n" \
      "a=rtpmap:0 PCMU/8000\r\n"  # fmt: skip


def tenant_on(node: NodeThread, receiver: WebhookReceiver) -> Tenant:
    name = f"acct-{uuid.uuid4().hex[:10]}"
    key = node.new_key(name)
    client = telnyx.Telnyx(api_key=key, base_url=node.base_url, public_key=node.public_key, max_retries=0)
    path = f"/hooks/{name}"
    app = client.call_control_applications.create(application_name=name, webhook_event_url=receiver.url(path))
    assert app.data is not None and app.data.id
    return Tenant(client=client, node=node, receiver=receiver, api_key=key, path=path, connection_id=app.data.id)


def invite(sock: socket.socket, node: NodeThread, user: str) -> str:
    """Send a new INVITE from ``sock``; its first response that is not 100 Trying (a 180 once the node took
    the call, or a final response)."""
    tag = uuid.uuid4().hex[:12]
    sdp = SDP.format(rtp=free_port() & ~1)
    text = INVITE.format(user=user, port=node.sip_port, lport=sock.getsockname()[1], tag=tag, length=len(sdp),
                         sdp=sdp).replace("\n", "\r\n").replace("\r\r\n", "\r\n")  # fmt: skip
    sock.sendto(text.encode(), ("127.0.0.1", node.sip_port))
    while True:
        reply = sock.recv(65535).decode(errors="replace")
        if f"Call-ID: {tag}@overload" in reply and not reply.startswith("SIP/2.0 100"):
            return reply


def retry_after(reply: str) -> int | None:
    found = re.search(r"^Retry-After:\s*(\d+)", reply, flags=re.MULTILINE | re.IGNORECASE)
    return int(found.group(1)) if found else None


@pytest.fixture
def probe() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(10)
        yield s


@pytest.fixture(scope="module")
def two_calls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    data = tmp_path_factory.mktemp("two-calls")
    node = NodeThread(f"sqlite:///{data / 'db.sqlite'}", data, admission=Limits(max_calls=2))
    yield node
    node.stop()


def test_the_third_invite_gets_503_while_the_first_two_keep_their_audio(
        two_calls_node: NodeThread, receiver: WebhookReceiver, probe: socket.socket,
        tmp_path: Path) -> None:  # fmt: skip
    tenant = tenant_on(two_calls_node, receiver)
    scenario = pcap_scenario(tmp_path)
    callers, cids = [], []
    for i in range(2):
        cwd = tmp_path / f"caller{i}"
        cwd.mkdir()
        callers.append(Sipp(["-sf", str(scenario), "-s", tenant.connection_id, f"127.0.0.1:{two_calls_node.sip_port}",
                             "-m", "1", "-mp", str(free_port() & ~1)], cwd))  # fmt: skip
        initiated = receiver.wait_for(lambda r: r.path == tenant.path and r.event_type == "call.initiated"
                                      and r.payload["call_control_id"] not in cids, timeout=15)[0]  # fmt: skip
        cids.append(initiated.payload["call_control_id"])
        tenant.client.calls.actions.answer(cids[-1])
        tenant.event("call.answered", cids[-1])

    refused = invite(probe, two_calls_node, tenant.connection_id)
    assert refused.startswith("SIP/2.0 503 "), refused
    assert retry_after(refused) == 5
    stats = two_calls_node.media_stats()["sip"]
    assert stats["refused_calls"] == 1 and stats["admitted"] == 2

    for caller, cid in zip(callers, cids, strict=True):
        code, output = caller.wait()
        assert code == 0, output  # the call went on to its end: the audio, the DTMF, the caller's BYE
        inbound = tenant.event("call.hangup", cid).payload["call_quality_stats"]["inbound"]
        assert int(inbound["packet_count"]) > 50 and inbound["skip_packet_count"] == "0", inbound  # the whole pcap
    assert not any(r.payload.get("call_control_id") not in cids for r in receiver.delivered(tenant.path) if r.body)

    # Both ended: the node takes a call again, by itself.
    admitted = invite(probe, two_calls_node, tenant.connection_id)
    assert admitted.startswith("SIP/2.0 180 "), admitted


def test_a_burst_past_the_per_second_budget_is_refused_and_admitted_again_once_it_refills(
        tmp_path: Path, receiver: WebhookReceiver, probe: socket.socket) -> None:  # fmt: skip
    node = NodeThread(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, admission=Limits(max_calls_per_second=2))
    try:
        tenant = tenant_on(node, receiver)
        replies = [invite(probe, node, tenant.connection_id) for _ in range(8)]
        admitted = [r for r in replies if r.startswith("SIP/2.0 180 ")]
        refused = [r for r in replies if r.startswith("SIP/2.0 503 ")]
        assert len(admitted) + len(refused) == 8, replies
        assert len(admitted) >= 2 and len(refused) >= 1  # the budget's burst is 2: a burst of 8 overruns it
        assert all(retry_after(r) == 1 for r in refused)
        assert node.media_stats()["sip"]["refused_rate"] == len(refused)
        # The rate falls (nothing for a while): the budget refills and calls are admitted again.
        time.sleep(1.5)
        assert invite(probe, node, tenant.connection_id).startswith("SIP/2.0 180 ")
    finally:
        node.stop()


def test_post_calls_past_the_limit_is_503_90115_and_the_api_keeps_answering(
        tmp_path: Path, receiver: WebhookReceiver) -> None:  # fmt: skip
    node = NodeThread(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, admission=Limits(max_calls=1))
    try:
        tenant = tenant_on(node, receiver)
        first = tenant.dial("first")
        # (A virtual phone's call counts once answered: wait for the media process's report of it.)
        deadline = time.monotonic() + 10
        while node.node.admission.load.calls < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(telnyx.APIStatusError) as refused:
            tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111", to="virtual:second")
        assert refused.value.status_code == 503
        assert refused.value.response.headers["retry-after"] == "5"
        [error] = refused.value.response.json()["errors"]
        assert error["code"] == "90115" and error["title"] == "Node overloaded"
        assert "1 calls up" in error["detail"] and "max calls 1" in error["detail"]
        # Everything else still answers while the node refuses calls.
        status = tenant.client.calls.retrieve_status(first)
        assert status.data is not None and status.data.is_alive is True
        tenant.client.call_control_applications.list()
        metrics = httpx.get(node.root_url + "/metrics", timeout=5).text
        assert 'callroom_calls_refused_total{via="api",reason="calls"} 1' in metrics
        assert 'callroom_calls_admitted_total{via="api"} 1' in metrics

        tenant.client.calls.actions.hangup(first)
        tenant.event("call.hangup", first)
        # The node recovers by itself once the media process reports the call gone (within a few ticks).
        deadline = time.monotonic() + 10
        while True:
            try:
                second = tenant.dial("second")
                break
            except telnyx.APIStatusError as exc:
                assert exc.status_code == 503 and time.monotonic() < deadline
                time.sleep(0.05)
        tenant.client.calls.actions.hangup(second)
    finally:
        node.stop()
