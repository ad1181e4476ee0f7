"""Keeping our contact registered with a trunk's registrar (RFC 3261 §10), sans I/O.

One ``Registration`` per trunk that asks for it: it builds each REGISTER (one Call-ID, CSeq growing, the
answer to the registrar's digest challenge when there is one) and reads the answers. The endpoint
(``ua.SipEndpoint``) sends what it builds and tells it of answers, timeouts and the time; it says when to
send again: before the registration expires (``REFRESH_MARGIN``), after a failure (``RETRY_SECS`` or the
registrar's Retry-After), at once after a challenge or a 423 (with the Min-Expires asked for).

The states, and what moves them, are the table below.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum, auto

from callroom.errors import IllegalTransition
from callroom.sip.digest import Challenge, answer_challenge
from callroom.sip.fields import NameAddr, SipUri, Via
from callroom.sip.message import Headers, SipRequest, SipResponse
from callroom.sip.transaction import Addr

log = logging.getLogger(__name__)

RETRY_SECS = 30.0  # after a refusal or a timeout, unless the registrar says Retry-After
REFRESH_MARGIN = 0.5  # refresh when this share of the granted time is left (at most 60 s before expiry)
MAX_CHALLENGES = 2  # REGISTERs sent again with an answer in a row (a stale nonce may need a second)


class RegistrationState(Enum):
    REGISTERING = auto()  # a REGISTER is out and nothing granted yet (or the last grant ran out)
    REGISTERED = auto()  # granted, until ``expires_at``; refreshes go out meanwhile
    FAILED = auto()  # refused or unanswered: tried again after a while
    UNREGISTERED = auto()  # stopped (the trunk was removed or changed)


class RegistrationInput(Enum):
    SEND = auto()
    GRANTED = auto()  # 2xx
    REFUSED = auto()  # 3xx-6xx (not a challenge we answer), or a timeout
    STOP = auto()


_S, _I = RegistrationState, RegistrationInput
REGISTRATION_TRANSITIONS: dict[RegistrationState, dict[RegistrationInput, RegistrationState]] = {
    _S.REGISTERING: {_I.SEND: _S.REGISTERING, _I.GRANTED: _S.REGISTERED, _I.REFUSED: _S.FAILED,
                     _I.STOP: _S.UNREGISTERED},
    _S.REGISTERED: {_I.SEND: _S.REGISTERED, _I.GRANTED: _S.REGISTERED, _I.REFUSED: _S.FAILED,
                    _I.STOP: _S.UNREGISTERED},
    _S.FAILED: {_I.SEND: _S.REGISTERING, _I.STOP: _S.UNREGISTERED, _I.REFUSED: _S.FAILED},
    _S.UNREGISTERED: {_I.STOP: _S.UNREGISTERED},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """A registration's state or grant changed; ``expires_at`` in the endpoint's clock."""

    key: str
    state: RegistrationState
    status: int | None
    expires_at: float | None
    reason: str = ""


@dataclass(slots=True)
class Registration:
    key: str  # whose (a trunk's id)
    registrar: SipUri  # the Request-URI: sip:host:port
    aor: SipUri  # the address of record: sip:user@host
    contact: SipUri
    addr: Addr  # where REGISTERs go
    call_id: str
    tag: str
    credentials: tuple[str, str] | None = None
    expires: int = 600  # asked for
    state: RegistrationState = RegistrationState.REGISTERING
    cseq: int = 0
    tx: str | None = None  # the REGISTER out now
    next_at: float | None = None  # when to send the next one (None: one is out, or stopped)
    expires_at: float | None = None  # when the grant runs out
    status: int | None = None  # of the last final answer
    challenge: tuple[str, Challenge] | None = None  # (header, challenge) answered in each REGISTER (nc growing)
    count: int = 0  # the nc of the last answer to ``challenge``
    challenges: int = 0
    notes: list[str] = field(default_factory=list)

    def fire(self, event: RegistrationInput) -> RegistrationState:
        new = REGISTRATION_TRANSITIONS[self.state].get(event)
        if new is None:
            raise IllegalTransition("registration", self.state, event)
        if new is not self.state:
            log.debug("registration %s: %s -> %s on %s", self.key, self.state.name, new.name, event.name)
        self.state = new
        return new

    def request(self, via: Via, user_agent: str, cnonce: str, *, expires: int | None = None) -> SipRequest:
        """The next REGISTER (``expires=0``: remove our contact), with the answer to the registrar's last
        challenge (its nonce counted up) when we have one."""
        self.cseq += 1
        headers = Headers()
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(NameAddr(self.aor, None, {"tag": self.tag})))
        headers.add("To", str(NameAddr(self.aor)))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} REGISTER")
        headers.add("Contact", f"<{self.contact}>")
        headers.add("Expires", str(self.expires if expires is None else expires))
        headers.add("User-Agent", user_agent)
        if self.challenge is not None and self.credentials is not None:
            answering, challenge = self.challenge
            self.count += 1
            username, password = self.credentials
            headers.add(answering, answer_challenge(challenge, username, password, "REGISTER", str(self.registrar),
                                                    cnonce=cnonce, nc=self.count))
        return SipRequest("REGISTER", self.registrar, headers)

    def sent(self, tx: str) -> None:
        self.fire(RegistrationInput.SEND)
        self.tx, self.next_at = tx, None

    def on_response(self, resp: SipResponse, now: float) -> RegistrationChanged | None:
        """A final answer to our REGISTER: what changed (None: send again at once, ``next_at`` is now)."""
        self.tx = None
        status = resp.status
        if status in (401, 407) and self._answer(resp):
            self.next_at = now
            return None
        self.challenges = 0
        self.status = status
        if status == 423 and (minimum := _int(resp.headers.get("Min-Expires"))) and minimum > self.expires:
            self.expires = minimum  # the registrar wants a longer interval: ask again at once
            self.next_at = now
            return None
        if 200 <= status < 300:
            granted = self._granted(resp)
            self.fire(RegistrationInput.GRANTED)
            self.expires_at = now + granted
            self.next_at = now + max(1.0, granted - min(granted * REFRESH_MARGIN, 60.0))
            return self.changed()
        retry = _int(resp.headers.get("Retry-After"))
        return self._refused(now, float(retry) if retry else RETRY_SECS, resp.reason)

    def on_timeout(self, now: float) -> RegistrationChanged:
        self.tx = None
        self.status = 408
        return self._refused(now, RETRY_SECS, "no answer")

    def changed(self, reason: str = "") -> RegistrationChanged:
        expires_at = self.expires_at if self.state is RegistrationState.REGISTERED else None
        return RegistrationChanged(self.key, self.state, self.status, expires_at, reason)

    def _refused(self, now: float, retry: float, reason: str) -> RegistrationChanged:
        self.fire(RegistrationInput.REFUSED)
        self.expires_at = None
        self.challenge = None
        self.next_at = now + retry
        return self.changed(reason)

    def _answer(self, resp: SipResponse) -> bool:
        """Take the challenge to answer in the next REGISTER; False: we cannot, or our answer was refused."""
        if self.credentials is None or self.challenges >= MAX_CHALLENGES:
            return False
        asking, answering = (("WWW-Authenticate", "Authorization") if resp.status == 401
                             else ("Proxy-Authenticate", "Proxy-Authorization"))
        challenge = next((c for v in resp.headers.get_all(asking) if (c := Challenge.parse(v)) is not None), None)
        if challenge is None or (self.challenges and not challenge.stale):
            return False  # an answer refused with a fresh challenge: wrong credentials
        self.challenge, self.count = (answering, challenge), 0
        self.challenges += 1
        return True

    def _granted(self, resp: SipResponse) -> float:
        """The time the registrar granted our contact: its Contact's expires, else Expires, else ours."""
        for contact in resp.contacts:
            if contact.uri.user == self.contact.user and contact.uri.port == self.contact.port:
                value = _int(contact.params.get("expires"))
                if value is not None:
                    return float(value)
        value = _int(resp.headers.get("Expires"))
        return float(value if value is not None else self.expires)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    head = text.strip().split(";", 1)[0].split("(", 1)[0].strip()
    return int(head) if head.isdigit() else None
