"""Our INVITE challenged by a trunk (sans-I/O: two endpoints on an in-memory network): sent again with the
answer to a 401 or a 407, checked by the server side of ``digest.py``; wrong credentials are not retried."""

from __future__ import annotations

import random

import pytest

from callroom.sip.call import CallAnswered, CallEvent, CallFailed, IncomingCall
from callroom.sip.digest import Challenge, DigestAuth, answer_challenge
from callroom.sip.sdp import make_offer, negotiate_answer
from callroom.sip.ua import SipEndpoint
from tests.sip.net import Net

US = ("127.0.0.1", 5061)
GATEWAY = ("127.0.0.2", 5062)


def _events(ep: SipEndpoint) -> list[CallEvent]:
    out = []
    while (ev := ep.next_event()) is not None:
        out.append(ev)
    return out


class Gateway:
    """A provider's gateway: challenges every INVITE without valid credentials, answers the others."""

    def __init__(self, ep: SipEndpoint, status: int) -> None:
        self.ep = ep
        self.status = status
        self.auth = DigestAuth({"acct7": "s3cret"}, "provider.test", b"k" * 32)
        self.header = "Authorization" if status == 401 else "Proxy-Authorization"
        self.invites: list[IncomingCall] = []

    def serve(self, now: float) -> None:
        for ev in _events(self.ep):
            if not isinstance(ev, IncomingCall):
                continue
            self.invites.append(ev)
            invite = self.ep.calls[ev.call_id].invite
            verdict = self.auth.verify("INVITE", invite.headers.get(self.header), now, request_uri=invite.uri,
                                       source=ev.source_addr[0])
            if verdict.ok:
                assert ev.sdp_offer is not None
                self.ep.answer(ev.call_id, negotiate_answer(ev.sdp_offer, GATEWAY[0], 30000).answer, now)
            else:
                asking = "WWW-Authenticate" if self.status == 401 else "Proxy-Authenticate"
                challenge = self.auth.challenge(now, ev.source_addr[0])
                self.ep.reject(ev.call_id, self.status, now, headers=[(asking, challenge)])


def _run(status: int, password: str) -> tuple[list[CallEvent], Gateway]:
    us = SipEndpoint(US, rng=random.Random(1))
    gw = Gateway(SipEndpoint(GATEWAY, user="gw", rng=random.Random(2)), status)
    net = Net({US: us, GATEWAY: gw.ep})
    us.invite("sip:+15557654321@127.0.0.2:5062", "sip:+15550001111@127.0.0.2", make_offer(US[0], 40000), net.now,
              credentials=("acct7", password), headers=[("P-Asserted-Identity", "<sip:+15550001111@127.0.0.2>")])
    seen: list[CallEvent] = []
    for _ in range(6):
        net.flush()
        gw.serve(net.now)
        net.flush()
        seen += _events(us)
    return seen, gw


@pytest.mark.parametrize("status", [401, 407])
def test_a_challenged_invite_is_sent_again_with_the_answer(status: int) -> None:
    seen, gw = _run(status, "s3cret")
    assert any(isinstance(ev, CallAnswered) for ev in seen), seen
    first, second = (gw.ep.calls.get(i.call_id) for i in gw.invites[:2])
    assert len(gw.invites) == 2 and gw.invites[0].call_id == gw.invites[1].call_id
    assert second is not None and first is second  # the same call: same Call-ID and From tag
    assert second.invite.cseq.seq == 2 and second.invite.headers.get("P-Asserted-Identity")


def test_wrong_credentials_are_not_tried_again_and_again() -> None:
    seen, gw = _run(407, "wrong")
    assert len(gw.invites) == 2
    failed = [ev for ev in seen if isinstance(ev, CallFailed)]
    assert [f.status for f in failed] == [407]


def test_answers_without_qop_and_with_opaque() -> None:
    challenge = Challenge.parse('Digest realm="r", nonce="n1", opaque="o9", algorithm=MD5')
    assert challenge is not None and not challenge.qop_auth
    answer = answer_challenge(challenge, "u", "p", "INVITE", "sip:1@h", cnonce="c")
    assert 'opaque="o9"' in answer and "qop" not in answer and "nc=" not in answer
    assert Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-256') is None
    assert Challenge.parse('Digest realm="r", nonce="n", qop="auth-int"') is None
    stale = Challenge.parse('Digest realm="r", nonce="n", qop="auth,auth-int", stale=TRUE')
    assert stale is not None and stale.stale and stale.qop_auth
