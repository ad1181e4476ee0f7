"""Digest authentication, server side: challenges, valid and invalid answers, stale nonces, nonce counts
and replays, the digest uri against the Request-URI, nonces bound to the client's address, and the
bounded table of nonces used."""

from __future__ import annotations

import hashlib

from callroom.media_worker.invite_gates import DigestGate
from callroom.sip.call import IncomingCall
from callroom.sip.digest import (
    DigestAuth,
    answer_challenge_text,
    authorized_again,
    client_response,
    parse_authorization,
)
from callroom.sip.message import SipRequest, SipResponse

PHONE = "192.0.2.10"
OTHER = "198.51.100.7"
URI = "sip:app@127.0.0.1"


def _auth(**options: float) -> DigestAuth:
    return DigestAuth({"alice": "s3cret"}, "callroom", b"k" * 32, **options)  # type: ignore[arg-type]


def _nonce(challenge: str) -> str:
    params = parse_authorization(challenge)
    assert params is not None
    return params["nonce"]


def _answer(nonce: str, uri: str = URI, nc: str = "00000001", password: str = "s3cret", method: str = "INVITE",
            user: str = "alice") -> str:
    return client_response(user, password, "callroom", nonce, method, uri, nc=nc)


def _answer_without_qop(nonce: str, uri: str = URI) -> str:
    """RFC 2069 style, as old phones answer: no qop, nc or cnonce."""

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    response = md5(f"{md5('alice:callroom:s3cret')}:{nonce}:{md5(f'INVITE:{uri}')}")
    return f'Digest username="alice", realm="callroom", nonce="{nonce}", uri="{uri}", response="{response}"'


def test_valid_answer_to_a_challenge() -> None:
    auth = _auth()
    nonce = _nonce(auth.challenge(1000.0, PHONE))
    verdict = auth.verify("INVITE", _answer(nonce), 1010.0, request_uri=URI, source=PHONE)
    assert verdict.ok and verdict.username == "alice"


def test_wrong_password_unknown_user_forged_nonce_and_wrong_method_fail() -> None:
    auth = _auth()
    nonce = _nonce(auth.challenge(1000.0, PHONE))

    def check(header: str | None) -> bool:
        verdict = auth.verify("INVITE", header, 1001.0, request_uri=URI, source=PHONE)
        return verdict.ok or verdict.stale

    assert not check(_answer(nonce, password="nope"))
    assert not check(_answer(nonce, user="bob"))
    forged = DigestAuth({"alice": "s3cret"}, "callroom", b"x" * 32).nonce(1000.0, PHONE)
    assert not check(_answer(forged))
    assert not check(_answer(nonce, method="BYE"))
    assert not check(_answer(nonce, nc="1"))  # nc is eight hex digits
    assert not check(None)
    assert not check("Basic YWxpY2U6czNjcmV0")
    assert auth.verify("INVITE", _answer(nonce), 1001.0, request_uri=URI, source=PHONE).ok  # none used it up


def test_the_same_answer_again_is_challenged_afresh() -> None:
    """A captured Authorization sent again (with any Call-ID: the digest does not cover it) is refused;
    the phone's retry with the fresh nonce gets in."""
    auth = _auth()
    header = _answer(_nonce(auth.challenge(1000.0, PHONE)))
    assert auth.verify("INVITE", header, 1001.0, request_uri=URI, source=PHONE).ok
    again = auth.verify("INVITE", header, 1002.0, request_uri=URI, source=PHONE)
    assert not again.ok and again.stale  # right credentials, used nonce: stale=true, no prompt for a password


def test_the_nonce_count_must_grow() -> None:
    auth = _auth()
    nonce = _nonce(auth.challenge(1000.0, PHONE))
    assert auth.verify("INVITE", _answer(nonce, nc="00000001"), 1001.0, request_uri=URI, source=PHONE).ok
    assert auth.verify("INVITE", _answer(nonce, nc="00000002"), 1002.0, request_uri=URI, source=PHONE).ok
    assert auth.verify("INVITE", _answer(nonce, nc="0000000a"), 1003.0, request_uri=URI, source=PHONE).ok
    for repeated in ("0000000a", "00000002", "00000000"):
        verdict = auth.verify("INVITE", _answer(nonce, nc=repeated), 1004.0, request_uri=URI, source=PHONE)
        assert not verdict.ok and verdict.stale, repeated
    assert auth.verify("INVITE", _answer(nonce, nc="0000000B"), 1005.0, request_uri=URI, source=PHONE).ok


def test_without_qop_a_nonce_is_good_once() -> None:
    auth = _auth()
    nonce = _nonce(auth.challenge(1000.0, PHONE))
    assert auth.verify("INVITE", _answer_without_qop(nonce), 1001.0, request_uri=URI, source=PHONE).ok
    verdict = auth.verify("INVITE", _answer_without_qop(nonce), 1002.0, request_uri=URI, source=PHONE)
    assert not verdict.ok and verdict.stale
    verdict = auth.verify("INVITE", _answer(nonce, nc="00000009"), 1003.0, request_uri=URI, source=PHONE)
    assert not verdict.ok and verdict.stale  # used up, with qop too


def test_the_digest_uri_must_name_the_request_uri() -> None:
    auth = _auth()
    nonce = _nonce(auth.challenge(1000.0, PHONE))
    for other in ("sip:other-app@127.0.0.1", "sip:app@127.0.0.2", "sip:app@127.0.0.1:5070", "sips:app@127.0.0.1",
                  "not a uri"):
        verdict = auth.verify("INVITE", _answer(nonce, uri=other), 1001.0, request_uri=URI, source=PHONE)
        assert not verdict.ok and verdict.wrong_uri and not verdict.stale, other
    # The same URI written otherwise: parameters aside, the host's case aside.
    written_otherwise = _answer(nonce, uri="sip:app@127.0.0.1;transport=udp", nc="00000001")
    assert auth.verify("INVITE", written_otherwise, 1002.0, request_uri=URI, source=PHONE).ok
    named = _nonce(auth.challenge(1000.0, PHONE))
    header = _answer(named, uri="sip:app@Node.Example")
    assert auth.verify("INVITE", header, 1003.0, request_uri="sip:app@node.example", source=PHONE).ok


def test_a_nonce_is_good_only_from_the_address_it_was_issued_to() -> None:
    auth = _auth()
    header = _answer(_nonce(auth.challenge(1000.0, PHONE)))
    verdict = auth.verify("INVITE", header, 1001.0, request_uri=URI, source=OTHER)
    assert not verdict.ok and not verdict.stale  # as if forged: a fresh challenge to that address
    assert auth.verify("INVITE", header, 1002.0, request_uri=URI, source=PHONE).ok
    v6 = _auth()
    header = _answer(_nonce(v6.challenge(1000.0, "2001:db8::1")))
    assert v6.verify("INVITE", header, 1001.0, request_uri=URI, source="2001:0db8:0:0::1").ok  # one address


def test_old_nonce_is_stale_not_wrong() -> None:
    auth = _auth(nonce_ttl=300)
    nonce = _nonce(auth.challenge(1000.0, PHONE))
    verdict = auth.verify("INVITE", _answer(nonce), 1400.0, request_uri=URI, source=PHONE)
    assert not verdict.ok and verdict.stale
    assert "stale=true" in auth.challenge(1400.0, PHONE, stale=True)
    assert "stale" not in auth.challenge(1400.0, PHONE)


def test_the_table_of_used_nonces_is_bounded_and_an_evicted_nonce_stays_refused() -> None:
    auth = _auth(nonce_ttl=300, max_nonces=2)
    never_used = _nonce(auth.challenge(1000.0, PHONE))
    first, second, third = (_nonce(auth.challenge(1000.0, PHONE)) for _ in range(3))
    for i, nonce in enumerate((first, second, third)):
        assert auth.verify("INVITE", _answer(nonce), 1001.0 + i, request_uri=URI, source=PHONE).ok
    assert len(auth.counts) == 2  # ``first`` was evicted
    for nonce in (first, never_used):  # issued no later than an evicted nonce: refused, whatever the nc
        verdict = auth.verify("INVITE", _answer(nonce, nc="00000005"), 1010.0, request_uri=URI, source=PHONE)
        assert not verdict.ok and verdict.stale
    assert auth.verify("INVITE", _answer(third, nc="00000002"), 1011.0, request_uri=URI, source=PHONE).ok
    fresh = _nonce(auth.challenge(1012.0, PHONE))
    assert auth.verify("INVITE", _answer(fresh), 1013.0, request_uri=URI, source=PHONE).ok


def test_used_nonces_are_forgotten_once_stale() -> None:
    auth = _auth(nonce_ttl=300)
    for i in range(5):
        nonce = _nonce(auth.challenge(1000.0 + i, PHONE))
        assert auth.verify("INVITE", _answer(nonce), 1001.0 + i, request_uri=URI, source=PHONE).ok
    assert len(auth.counts) == 5
    late = _nonce(auth.challenge(2000.0, PHONE))
    assert auth.verify("INVITE", _answer(late), 2001.0, request_uri=URI, source=PHONE).ok
    assert len(auth.counts) == 1


def _invite(call_id: str, authorization: str | None) -> SipRequest:
    lines = [
        f"INVITE {URI} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK" + call_id,
        "From: <sip:alice@192.0.2.10>;tag=1",
        f"To: <{URI}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        "Contact: <sip:alice@192.0.2.10:5060>",
        "Content-Length: 0",
    ]
    if authorization:
        lines.insert(-1, f"Authorization: {authorization}")
    return SipRequest.parse(("\r\n".join(lines) + "\r\n\r\n").encode())


def test_the_gate_challenges_a_replayed_authorization_on_a_new_call() -> None:
    gate = DigestGate(_auth())

    def knock(call_id: str, authorization: str | None, source: str = PHONE) -> tuple[int, str]:
        invite = _invite(call_id, authorization)
        call = IncomingCall(call_id, invite.from_, invite.to, invite.uri, None, (source, 5060))
        rejection = gate(call, invite)
        if rejection is None:
            return 200, ""
        return rejection.status, dict(rejection.headers).get("WWW-Authenticate", "")

    status, challenge = knock("first", None)
    assert status == 401 and "stale" not in challenge
    header = _answer(_nonce(challenge))
    assert knock("second", header, source=OTHER)[0] == 401  # the nonce was issued to PHONE
    assert knock("second", header) == (200, "")
    status, challenge = knock("third", header)  # the captured header, on a new call
    assert status == 401 and "stale=true" in challenge
    assert knock("fourth", _answer(_nonce(challenge), uri="sip:another-app@127.0.0.1"))[0] == 400


def test_our_answer_to_a_challenge_passes_a_servers_check_with_and_without_qop() -> None:
    server = _auth()
    uri = "sip:bob@127.0.0.1:5070"
    with_qop = server.challenge(1000.0, PHONE)
    answer = answer_challenge_text(with_qop, "alice", "s3cret", "INVITE", uri, cnonce="c1")
    assert answer is not None and "qop=auth" in answer
    assert server.verify("INVITE", answer, 1001.0, request_uri=uri, source=PHONE).ok
    without_qop = with_qop.replace(', qop="auth"', "")
    plain = answer_challenge_text(without_qop, "alice", "s3cret", "INVITE", uri, cnonce="c2")
    assert plain is not None and "qop" not in plain
    fresh = _auth()  # (the first nonce was used above)
    plain_again = answer_challenge_text(fresh.challenge(1000.0, PHONE).replace(', qop="auth"', ""), "alice", "s3cret",
                                   "INVITE", uri, cnonce="c3")  # fmt: skip
    assert fresh.verify("INVITE", plain_again, 1001.0, request_uri=uri, source=PHONE).ok
    wrong = answer_challenge_text(with_qop, "alice", "guess", "INVITE", uri, cnonce="c4")
    assert not _auth().verify("INVITE", wrong, 1001.0, request_uri=uri, source=PHONE).ok
    assert answer_challenge_text('Digest realm="x", nonce="n", algorithm=SHA-256', "a", "b", "INVITE", uri, "c") is None
    assert answer_challenge_text('Digest realm="x", nonce="n", qop="auth-int"', "a", "b", "INVITE", uri, "c") is None


def test_a_challenged_request_goes_again_with_the_next_cseq_a_new_via_and_the_answer() -> None:
    server = _auth()
    invite = SipRequest.parse(
        b"INVITE sip:bob@192.0.2.10:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-one\r\n"
        b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@192.0.2.10:5070>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <sip:a@127.0.0.1:5060>\r\nX-Ticket: 4711\r\nContent-Length: 0\r\n\r\n")
    challenge = SipResponse.parse(
        ("SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-one\r\n"
         "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@192.0.2.10:5070>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
         f"Proxy-Authenticate: {server.challenge(1000.0, PHONE)}\r\nContent-Length: 0\r\n\r\n").encode())
    again = authorized_again(invite, challenge, ("alice", "s3cret"), "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-two",
                             cnonce="c")  # fmt: skip
    assert again is not None
    assert (again.cseq.seq, again.top_via.branch, again.headers.get("X-Ticket")) == (2, "z9hG4bK-two", "4711")
    answer = again.headers.get("Proxy-Authorization")
    assert server.verify("INVITE", answer, 1001.0, request_uri=again.uri, source=PHONE).ok
    assert authorized_again(invite, SipResponse.parse(challenge.__bytes__().replace(b"Proxy-Authenticate",
                                                                                     b"X-Nothing")),
                            ("alice", "s3cret"), "v", cnonce="c") is None  # fmt: skip
