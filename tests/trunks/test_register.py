"""Keeping a registration with a trunk's registrar, sans I/O: a registrar on an in-memory network that
challenges, grants, asks for a longer interval, refuses, or does not answer, and a clock the test moves."""

from __future__ import annotations

import random

from callroom.sip.call import CallEvent
from callroom.sip.digest import DigestAuth
from callroom.sip.fields import SipUri
from callroom.sip.message import SipResponse, response_to
from callroom.sip.register import RegistrationChanged, RegistrationState
from callroom.sip.transaction import Addr, RequestReceived, TransactionLayer
from callroom.sip.ua import SipEndpoint
from tests.sip.net import LayerPeer, Net

US = ("127.0.0.1", 5061)
REGISTRAR = ("127.0.0.2", 5062)


class Registrar(LayerPeer):
    """Answers REGISTERs: a digest challenge first, then ``grant`` seconds (or what ``answer`` says)."""

    def __init__(self, grant: int = 120, min_expires: int = 0, silent: bool = False) -> None:
        super().__init__(TransactionLayer())
        self.auth = DigestAuth({"acct7": "s3cret"}, "provider.test", b"k" * 32)
        self.grant, self.min_expires, self.silent = grant, min_expires, silent
        self.seen: list[tuple[float, str | None, str | None]] = []  # (time, Expires, Authorization)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        super().receive_datagram(data, addr, now)
        while (ev := self.layer.next_event()) is not None:
            if isinstance(ev, RequestReceived) and ev.transaction_id is not None:
                self.layer.send_response(ev.transaction_id, self._answer(ev, now), now)

    def _answer(self, ev: RequestReceived, now: float) -> SipResponse:
        req = ev.request
        self.seen.append((now, req.headers.get("Expires"), req.headers.get("Authorization")))
        if self.silent:
            return response_to(req, 100, "Trying")
        verdict = self.auth.verify("REGISTER", req.headers.get("Authorization"), now, request_uri=req.uri,
                                   source=ev.source[0])
        if not verdict.ok:
            return response_to(req, 401, "Unauthorized", "t1",
                               extra=[("WWW-Authenticate", self.auth.challenge(now, ev.source[0]))])
        if int(req.headers.get("Expires") or 0) < self.min_expires:
            return response_to(req, 423, "Interval Too Brief", "t1", extra=[("Min-Expires", str(self.min_expires))])
        return response_to(req, 200, "OK", "t1", extra=[("Expires", str(self.grant))])


def _setup(registrar: Registrar, password: str = "s3cret") -> tuple[SipEndpoint, Net]:
    us = SipEndpoint(US, rng=random.Random(1))
    net = Net({US: us, REGISTRAR: registrar})
    us.register("trunk-1", SipUri("127.0.0.2", port=5062), SipUri("127.0.0.2", user="acct7"), net.now,
                addr=REGISTRAR, credentials=("acct7", password), expires=300)
    return us, net


def _changes(ep: SipEndpoint) -> list[RegistrationChanged]:
    out: list[CallEvent] = []
    while (ev := ep.next_event()) is not None:
        out.append(ev)
    return [ev for ev in out if isinstance(ev, RegistrationChanged)]


def test_registered_after_the_challenge_and_refreshed_before_expiry() -> None:
    registrar = Registrar(grant=120)
    us, net = _setup(registrar)
    net.flush()
    (granted,) = _changes(us)
    assert granted.state is RegistrationState.REGISTERED and granted.expires_at == 120.0
    assert [s[2] is None for s in registrar.seen] == [True, False]  # challenged once, then answered
    net.run(until=200)
    refreshes = [t for t, _, _ in registrar.seen[2:]]
    assert refreshes and refreshes[0] == 60.0  # 120 s granted: refreshed 60 s before they run out
    assert all(auth is not None for _, _, auth in registrar.seen[2:])  # the nonce answered again, nc counted up
    assert all(c.state is RegistrationState.REGISTERED for c in _changes(us))
    us.unregister("trunk-1", net.now)
    net.flush()
    assert registrar.seen[-1][1] == "0"
    assert [c.state for c in _changes(us)] == [RegistrationState.UNREGISTERED]


def test_a_longer_interval_asked_for_is_given() -> None:
    registrar = Registrar(min_expires=900)
    us, net = _setup(registrar)
    net.flush()
    assert [s[1] for s in registrar.seen] == ["300", "300", "900"]
    assert _changes(us)[0].state is RegistrationState.REGISTERED


def test_wrong_credentials_fail_and_are_tried_again_later() -> None:
    registrar = Registrar()
    us, net = _setup(registrar, password="wrong")
    net.flush()
    (failed,) = _changes(us)
    assert (failed.state, failed.status) == (RegistrationState.FAILED, 401)
    assert len(registrar.seen) == 2  # not tried again and again
    net.run(until=31)
    assert len(registrar.seen) == 4 and registrar.seen[2][0] == 30.0


def test_a_registrar_that_does_not_answer() -> None:
    registrar = Registrar(silent=True)
    us, net = _setup(registrar)
    net.run(until=40)
    (failed,) = _changes(us)
    assert (failed.state, failed.status) == (RegistrationState.FAILED, 408)
