"""Broken and hostile SIP peers against a whole node: each scripted peer sends exactly what a scanner, a
broken phone or an attacker would, and the node must end every such call cleanly (a final response or a
BYE, ``call.hangup`` for the application, its RTP ports back) and keep serving everyone else."""

from __future__ import annotations

import random
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import telnyx

from callroom.model.messages import SipConfig
from callroom.sip.message import SipRequest
from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver
from tests.support.sip_peer import SipPeer, audio_sdp, open_fds
from tests.support.tenant import Tenant

pytestmark = pytest.mark.sip

RTP_TIMEOUT = 2.0
RING_TIMEOUT = 3.0
RTP_PAIRS = 4  # the node's whole RTP port range: a few pairs, so a leak shows at once


@pytest.fixture(scope="module")
def hostile_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    data_dir: Path = tmp_path_factory.mktemp("hostile")
    low = 10000 + 2 * random.randrange(4000)  # below the ephemeral ports, apart from other nodes' 20000-30000
    sip = SipConfig(port=0, rtp_ports=(low, low + 2 * RTP_PAIRS + 1), rtp_timeout=RTP_TIMEOUT)
    node = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir, sip=sip, ring_timeout_secs=RING_TIMEOUT)
    yield node
    node.stop()


@pytest.fixture
def tenant(hostile_node: NodeThread, receiver: WebhookReceiver) -> Tenant:
    name = f"acct-{uuid.uuid4().hex[:10]}"
    key = hostile_node.new_key(name)
    client = telnyx.Telnyx(api_key=key, base_url=hostile_node.base_url, public_key=hostile_node.public_key,
                           max_retries=0)
    path = f"/hooks/{name}"
    app = client.call_control_applications.create(application_name=name, webhook_event_url=receiver.url(path))
    assert app.data is not None and app.data.id
    return Tenant(client=client, node=hostile_node, receiver=receiver, api_key=key, path=path,
                  connection_id=app.data.id)


@pytest.fixture
def peer(hostile_node: NodeThread) -> Iterator[SipPeer]:
    p = SipPeer(("127.0.0.1", hostile_node.sip_port))
    yield p
    p.close()


def initiated(tenant: Tenant) -> str:
    found = tenant.receiver.wait_for(lambda r: r.path == tenant.path and r.event_type == "call.initiated",
                                     timeout=10)[0]
    cid: str = found.payload["call_control_id"]
    return cid


def rtp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_a_poisoned_via_and_contact_cannot_freeze_the_timers(tenant: Tenant, peer: SipPeer) -> None:
    """Via ``received=evil.invalid`` and a Contact host name: the responses go to where the INVITE came from,
    and a 200 that is never acknowledged is given up after 64*T1 = 32 s with a BYE (timer H's twin for
    2xx, RFC 3261 13.3.1.4), whatever datagrams arrive or not meanwhile."""
    media = rtp_socket()  # on hold (a=sendonly): not hung up for its silence meanwhile
    dialog = peer.invite(tenant.connection_id, audio_sdp(media.getsockname()[1], direction="sendonly"),
                         via_params=";received=evil.invalid;rport=9", contact_host="evil.invalid")
    peer.response(dialog.call_id, 100, final=False)  # at our real address, not at evil.invalid:9
    cid = initiated(tenant)
    tenant.client.calls.actions.answer(cid)
    peer.answered(dialog)
    answered_at = time.monotonic()
    bye = peer.request(dialog.call_id, "BYE", timeout=40)  # to the INVITE's source: evil.invalid is no address
    assert 28 <= time.monotonic() - answered_at <= 38
    peer.reply(bye, 200)
    hangup = tenant.event("call.hangup", cid, timeout=10)
    assert hangup.payload["hangup_cause"] in ("normal_clearing", "timeout")
    media.close()


@pytest.mark.parametrize("c_line", ["IN IP4 evil.invalid", "IN IP6 ::1"])
def test_an_unreachable_media_address_is_refused_without_a_trace(tenant: Tenant, peer: SipPeer,
                                                                 c_line: str) -> None:  # fmt: skip
    before = open_fds(tenant.node.media_pid)
    sdp = audio_sdp(4000).replace(b"c=IN IP4 127.0.0.1", f"c={c_line}".encode())
    dialog = peer.invite(tenant.connection_id, sdp)
    assert peer.response(dialog.call_id).status == 488
    time.sleep(0.3)
    assert tenant.events() == []  # the application never saw a call it could not answer
    assert open_fds(tenant.node.media_pid) <= before


def test_a_media_host_name_is_looked_up_once_and_the_call_works(tenant: Tenant, peer: SipPeer) -> None:
    media = rtp_socket()
    sdp = audio_sdp(media.getsockname()[1]).replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 localhost")
    dialog = peer.invite(tenant.connection_id, sdp)
    cid = initiated(tenant)
    tenant.client.calls.actions.answer(cid)
    ok = peer.answered(dialog)
    peer.in_dialog(dialog, "ACK", cseq=1)
    media.settimeout(3)
    data, _ = media.recvfrom(2048)  # the node sends RTP to localhost's address
    assert len(data) == 172 and b"c=IN IP4" in ok.body
    peer.in_dialog(dialog, "BYE")
    assert peer.response(dialog.call_id, method="BYE").status == 200
    assert tenant.event("call.hangup", cid).payload["hangup_source"] == "caller"
    media.close()


def test_a_delayed_offer_gets_ours_in_the_200_and_its_answer_from_the_ack(tenant: Tenant, peer: SipPeer) -> None:
    media = rtp_socket()
    dialog = peer.invite(tenant.connection_id, None)
    cid = initiated(tenant)
    tenant.client.calls.actions.answer(cid)
    ok = peer.answered(dialog)
    assert b"m=audio" in ok.body and ok.content_type == "application/sdp"
    peer.in_dialog(dialog, "ACK", body=audio_sdp(media.getsockname()[1]), cseq=1)
    media.settimeout(3)
    data, source = media.recvfrom(2048)  # RTP to the address the ACK's answer gave
    assert len(data) == 172 and source[0] == "127.0.0.1"
    peer.in_dialog(dialog, "BYE")
    assert peer.response(dialog.call_id, method="BYE").status == 200
    tenant.event("call.hangup", cid)
    media.close()


def test_a_delayed_offer_whose_ack_has_no_answer_is_ended(tenant: Tenant, peer: SipPeer) -> None:
    dialog = peer.invite(tenant.connection_id, None)
    cid = initiated(tenant)
    tenant.client.calls.actions.answer(cid)
    peer.answered(dialog)
    peer.in_dialog(dialog, "ACK", cseq=1)
    bye = peer.request(dialog.call_id, "BYE", timeout=5)
    peer.reply(bye, 200)
    assert tenant.event("call.hangup", cid).payload["sip_hangup_cause"] == "488"


def test_refused_codecs_leak_no_port_and_a_normal_call_is_still_answered(tenant: Tenant, peer: SipPeer) -> None:
    before = open_fds(tenant.node.media_pid)
    dialogs = [peer.invite(tenant.connection_id, audio_sdp(4000, codecs="18")) for _ in range(60)]
    assert {peer.response(d.call_id).status for d in dialogs} == {488}
    assert open_fds(tenant.node.media_pid) <= before
    assert tenant.events() == []
    media = rtp_socket()
    dialog = peer.invite(tenant.connection_id, audio_sdp(media.getsockname()[1]))
    cid = initiated(tenant)
    tenant.client.calls.actions.answer(cid)
    peer.answered(dialog)
    peer.in_dialog(dialog, "ACK", cseq=1)
    peer.in_dialog(dialog, "BYE")
    assert peer.response(dialog.call_id, method="BYE").status == 200
    tenant.event("call.hangup", cid)
    media.close()


def test_no_free_rtp_port_answers_503_and_ends_the_call(tenant: Tenant, peer: SipPeer) -> None:
    # Calls on hold (a=sendonly) take a port pair each and never time out for silence.
    held = []
    for _ in range(RTP_PAIRS):
        d = peer.invite(tenant.connection_id, audio_sdp(4000, direction="sendonly"))
        held.append(d)
        cid = initiated_for(tenant, len(held))
        tenant.client.calls.actions.answer(cid)
        peer.answered(d)
        peer.in_dialog(d, "ACK", cseq=1)
    extra = peer.invite(tenant.connection_id, audio_sdp(4000))
    cid = initiated_for(tenant, RTP_PAIRS + 1)
    tenant.client.calls.actions.answer(cid)
    assert peer.response(extra.call_id).status == 503
    hangup = tenant.event("call.hangup", cid)
    assert hangup.payload["sip_hangup_cause"] == "503"
    for d in held:
        peer.in_dialog(d, "BYE")
        assert peer.response(d.call_id, method="BYE").status == 200


def initiated_for(tenant: Tenant, nth: int) -> str:
    found = tenant.receiver.wait_for(lambda r: r.path == tenant.path and r.event_type == "call.initiated",
                                     count=nth, timeout=10)
    cid: str = found[nth - 1].payload["call_control_id"]
    return cid


def test_a_silent_far_end_is_hung_up_but_a_held_one_is_not(tenant: Tenant, peer: SipPeer) -> None:
    silent = peer.invite(tenant.connection_id, audio_sdp(4000))
    first = initiated_for(tenant, 1)
    holding = peer.invite(tenant.connection_id, audio_sdp(4002, direction="sendonly"))
    second = initiated_for(tenant, 2)
    for cid, d in ((first, silent), (second, holding)):
        tenant.client.calls.actions.answer(cid)
        peer.answered(d)
        peer.in_dialog(d, "ACK", cseq=1)
    bye = peer.request(silent.call_id, "BYE", timeout=RTP_TIMEOUT + 4)
    peer.reply(bye, 200)
    hangup = tenant.event("call.hangup", first)
    assert (hangup.payload["hangup_cause"], hangup.payload["hangup_source"]) == ("timeout", "unknown")
    time.sleep(RTP_TIMEOUT)
    assert not [m for m in peer.log if isinstance(m, SipRequest) and m.call_id == holding.call_id]
    peer.in_dialog(holding, "BYE")
    assert peer.response(holding.call_id, method="BYE").status == 200
    tenant.event("call.hangup", second)


def test_a_call_nobody_answers_is_ended_with_480(tenant: Tenant, peer: SipPeer) -> None:
    dialog = peer.invite(tenant.connection_id, audio_sdp(4000))
    cid = initiated(tenant)
    started = time.monotonic()
    assert peer.response(dialog.call_id, timeout=RING_TIMEOUT + 5).status == 480
    assert time.monotonic() - started >= RING_TIMEOUT - 1.5  # timers are checked at least every second
    hangup = tenant.event("call.hangup", cid)
    assert (hangup.payload["hangup_cause"], hangup.payload["sip_hangup_cause"]) == ("timeout", "480")
