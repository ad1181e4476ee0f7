"""Digest authentication, server side: challenges, valid and invalid answers, stale nonces."""

from __future__ import annotations

from callroom.sip.digest import DigestAuth, client_response, parse_authorization

AUTH = DigestAuth({"alice": "s3cret"}, "callroom", b"k" * 32, nonce_ttl=300)


def _nonce(challenge: str) -> str:
    params = parse_authorization(challenge)
    assert params is not None
    return params["nonce"]


def test_valid_answer_to_a_challenge() -> None:
    nonce = _nonce(AUTH.challenge(1000.0))
    header = client_response("alice", "s3cret", "callroom", nonce, "INVITE", "sip:app@127.0.0.1")
    assert AUTH.verify("INVITE", header, 1010.0).ok


def test_wrong_password_unknown_user_forged_nonce_and_wrong_method_fail() -> None:
    nonce = _nonce(AUTH.challenge(1000.0))
    assert not AUTH.verify("INVITE", client_response("alice", "nope", "callroom", nonce, "INVITE", "sip:a@b"), 1001).ok
    assert not AUTH.verify("INVITE", client_response("bob", "s3cret", "callroom", nonce, "INVITE", "sip:a@b"), 1001).ok
    forged = DigestAuth({"alice": "s3cret"}, "callroom", b"x" * 32).nonce(1000.0)
    forged_header = client_response("alice", "s3cret", "callroom", forged, "INVITE", "sip:a@b")
    assert not AUTH.verify("INVITE", forged_header, 1001).ok
    assert not AUTH.verify("INVITE", client_response("alice", "s3cret", "callroom", nonce, "BYE", "sip:a@b"), 1001).ok
    assert not AUTH.verify("INVITE", None, 1001).ok
    assert not AUTH.verify("INVITE", "Basic YWxpY2U6czNjcmV0", 1001).ok


def test_old_nonce_is_stale_not_wrong() -> None:
    nonce = _nonce(AUTH.challenge(1000.0))
    verdict = AUTH.verify("INVITE", client_response("alice", "s3cret", "callroom", nonce, "INVITE", "sip:a@b"), 1400.0)
    assert not verdict.ok and verdict.stale
    assert "stale=true" in AUTH.challenge(1400.0, stale=True)
