"""A sans-I/O SIP user agent core for a B2BUA-style server: calls in and out over UDP.

Surface, as aioquic's ``QuicConnection``: ``receive_datagram(data, addr, now)``, ``datagrams_to_send(now)``,
``get_timer()``, ``handle_timer(now)``, ``next_event()``; plus the call commands ``invite``, ``ring``,
``answer``, ``reject``, ``cancel``, ``reinvite``, ``hangup``. Commands take ``now`` too, because they may
start timers. Calls are named by their Call-ID.

Policy: OPTIONS gets 200 automatically; a request that does not parse gets 400 when its Via, From, To,
Call-ID and CSeq can still be read (otherwise it is dropped); methods we know but do not serve get 405
with Allow, others 501; ``receive_datagram`` never raises.

The INVITE dialogs themselves (placing, answering, re-INVITE, CANCEL, BYE) are handled in
:mod:`callroom.sip.invite`; this module routes what arrives to them, and keeps registrations with
registrars, the in-dialog INFO and REFER we send, and OPTIONS.
"""

from __future__ import annotations

import logging
import random

from callroom.errors import CallroomError, IllegalTransition, SipParseError
from callroom.sip.call import CallEvent, CallFailed, CallInput, CallState, OptionsPing, ReferProgress
from callroom.sip.invite import ALLOW, InviteDialogs
from callroom.sip.message import SipResponse, SipUri, parse_message, reason_phrase, response_to, salvage_request
from callroom.sip.register import Registration, RegistrationInput
from callroom.sip.transaction import Addr, RequestReceived, ResponseReceived, TransactionTimeout

log = logging.getLogger(__name__)

KNOWN_METHODS = frozenset({"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "INFO", "UPDATE", "PRACK", "PUBLISH"})


class SipEndpoint(InviteDialogs):
    """One UDP SIP endpoint (``local_addr``) with any number of calls."""

    def __init__(self, local_addr: Addr, *, user: str = "callroom", user_agent: str = "callroom",
                 rng: random.Random | None = None) -> None:  # fmt: skip
        super().__init__(local_addr, user=user, user_agent=user_agent, rng=rng)
        self.registrations: dict[str, Registration] = {}  # ours with registrars (trunks), by key
        self._registering: dict[str, str] = {}  # REGISTER transaction id -> registration key
        self.unavailable: int | None = None  # set (a Retry-After in seconds): OPTIONS are answered 503
        self._sent: dict[str, str] = {}  # our in-dialog INFO and REFER transactions -> their method

    # ---- sans-I/O surface ----------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._bad_request(data, addr, exc)
            return
        try:
            self.transactions.receive(message, addr, now)
        except CallroomError as exc:
            log.info("dropped a message from %s: %s", addr, exc)
        self._pump(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        return self.transactions.datagrams_to_send()

    def get_timer(self) -> float | None:
        deadlines = [t for t in [self.transactions.get_timer()] if t is not None]
        deadlines += self._answer_deadlines()
        deadlines += [reg.next_at for reg in self.registrations.values() if reg.next_at is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        self.transactions.handle_timer(now)
        for reg in list(self.registrations.values()):
            if reg.next_at is not None and reg.next_at <= now and reg.tx is None:
                self._send_register(reg, now)
        self._resend_answers(now)
        self._pump(now)

    def next_event(self) -> CallEvent | None:
        return self._events.popleft() if self._events else None

    # ---- commands: INFO and REFER in a dialog, registrations -----------------------------------
    def send_in_dialog(self, call_id: str, method: str, now: float, *, body: bytes = b"",
                       content_type: str | None = None, extra: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        """An INFO or a REFER on an established call; a REFER's fate comes back as ``ReferProgress``."""
        call = self._call(call_id)
        if call.dialog is None or call.state is not CallState.ESTABLISHED:
            raise IllegalTransition("call", call.state, f"send {method}")
        req = call.dialog.create_request(method, self._via(), body, content_type, extra)
        self._sent[self.transactions.send_request(req, self._hop(call), now)] = method

    def register(self, key: str, registrar: SipUri, aor: SipUri, now: float, *, addr: Addr,
                 credentials: tuple[str, str] | None, expires: int) -> None:  # fmt: skip
        """Register our contact for ``aor`` with ``registrar`` (at ``addr``) and keep it registered; one
        registration per ``key`` (registering again under a key replaces it)."""
        self.unregister(key, now)
        contact = self._contact(addr, user=aor.user or self.contact.user)
        reg = Registration(key, registrar, aor, contact, addr, f"{self._token()}@{self.local_addr[0]}",
                           self._token(), credentials, expires)
        self.registrations[key] = reg
        self._send_register(reg, now)

    def unregister(self, key: str, now: float) -> None:
        """Stop keeping ``key`` registered; a registration granted is removed (Expires: 0), unanswered."""
        reg = self.registrations.pop(key, None)
        if reg is None:
            return
        if reg.tx is not None:
            self._registering.pop(reg.tx, None)
        granted = reg.expires_at is not None
        reg.fire(RegistrationInput.STOP)
        if granted:
            removal = reg.request(self._via(reg.addr), self.user_agent, self._token(), expires=0)
            self.transactions.send_request(removal, reg.addr, now)
        self._events.append(reg.changed("stopped"))

    def _send_register(self, reg: Registration, now: float) -> None:
        request = reg.request(self._via(reg.addr), self.user_agent, self._token())
        tx = self.transactions.send_request(request, reg.addr, now)
        self._registering[tx] = reg.key
        reg.sent(tx)

    def _on_register_response(self, key: str, resp: SipResponse, now: float) -> None:
        reg = self.registrations.get(key)
        if reg is None or resp.status < 200:
            if reg is not None and reg.tx is not None:  # still waiting: keep the transaction's key
                self._registering[reg.tx] = key
            return
        changed = reg.on_response(resp, now)
        if changed is None:
            self._send_register(reg, now)
        else:
            self._events.append(changed)

    # ---- internals: incoming requests ----------------------------------------------------------
    def _pump(self, now: float) -> None:
        while (ev := self.transactions.next_event()) is not None:
            try:
                if isinstance(ev, RequestReceived):
                    self._on_request(ev, now)
                elif isinstance(ev, ResponseReceived):
                    self._on_response(ev, now)
                else:
                    self._on_timeout(ev, now)
            except CallroomError as exc:
                log.info("ignored %r: %s", ev, exc)

    def _on_request(self, ev: RequestReceived, now: float) -> None:
        req, tx = ev.request, ev.transaction_id
        if req.method == "ACK":
            self._on_ack(req)
            return
        assert tx is not None
        call = self.calls.get(req.call_id)
        if req.method == "INVITE" and req.to.tag is None:
            self._on_invite(req, tx, ev.source, now)
        elif req.method == "CANCEL":
            self._send(tx, response_to(req, 200, "OK"), now)
            self._on_cancel(ev.cancels, now)
        elif req.method == "OPTIONS":
            offered: tuple[tuple[str, str], ...] = (("Allow", ALLOW), ("Accept", "application/sdp"))
            if self.unavailable is not None:  # draining: a proxy's probe takes the node out of its set
                answer = response_to(req, 503, "Service Unavailable", self._token(),
                                     extra=(*offered, ("Retry-After", str(self.unavailable))))
            else:
                answer = response_to(req, 200, "OK", self._token(), extra=offered)
            self._send(tx, answer, now)
            self._events.append(OptionsPing(ev.source, req.uri))
        elif req.method in ("NOTIFY", "INFO") and call is not None and call.dialog is not None and (
                self._in_dialog(call, req)):
            ok = call.dialog.receive_request(req)
            self._send(tx, response_to(req, 200 if ok else 500, "OK" if ok else "CSeq out of order"), now)
            status = sipfrag_status(req.body) if ok and req.method == "NOTIFY" else None
            if status is not None and (req.headers.get("Event") or "").split(";")[0].strip().lower() == "refer":
                self._events.append(ReferProgress(call.call_id, "notified", status))
        elif req.method in ("INVITE", "BYE"):
            if call is None or call.dialog is None or not self._in_dialog(call, req):
                self._send(tx, response_to(req, 481, reason_phrase(481)), now)
            elif not call.dialog.receive_request(req):
                self._send(tx, response_to(req, 500, "CSeq out of order"), now)
            elif req.method == "BYE":
                self._send(tx, response_to(req, 200, "OK"), now)
                self._end_by_bye(call, now)
            else:
                self._on_reinvite(call, req, tx, now)
        else:
            status = 405 if req.method in KNOWN_METHODS else 501
            allow = [("Allow", ALLOW)]
            self._send(tx, response_to(req, status, reason_phrase(status), self._token(), extra=allow), now)

    # ---- internals: responses and timeouts -----------------------------------------------------
    def _on_response(self, ev: ResponseReceived, now: float) -> None:
        resp = ev.response
        if ev.transaction_id is not None and (key := self._registering.pop(ev.transaction_id, None)) is not None:
            self._on_register_response(key, resp, now)
            return
        call = self.calls.get(resp.call_id)
        if call is None:
            return
        method = self._sent.get(ev.transaction_id or "") if resp.status >= 200 else None
        if method is not None:
            del self._sent[ev.transaction_id or ""]
            if method == "REFER":
                phase = "accepted" if resp.status < 300 else "failed"
                self._events.append(ReferProgress(call.call_id, phase, resp.status))
            return
        if ev.transaction_id is None:  # a retransmitted 2xx: the ACK got lost
            if call.last_ack is not None and call.dialog is not None:
                self.transactions.send_stateless(call.last_ack, self._hop(call))
            return
        if ev.transaction_id == call.invite_tx:
            self._on_invite_response(call, resp, now)
        elif ev.transaction_id == call.reinvite_tx:
            self._on_reinvite_response(call, resp, now)

    def _on_timeout(self, ev: TransactionTimeout, now: float) -> None:
        key = self._registering.pop(ev.transaction_id, None)
        if key is not None and (reg := self.registrations.get(key)) is not None:
            self._events.append(reg.on_timeout(now))
            return
        call = self.calls.get(ev.request.call_id)
        if call is None:
            return
        if self._sent.pop(ev.transaction_id, None) == "REFER":
            self._events.append(ReferProgress(call.call_id, "failed", 408))
            return
        if ev.transaction_id == call.invite_tx and not call.incoming:
            call.fire(CallInput.FAIL)
            self._forget(call)
            self._events.append(CallFailed(call.call_id, 408, "Request Timeout"))
        elif ev.transaction_id == call.reinvite_tx:
            call.reinvite_tx = call.reinvite_request = None
            self._drop_dialog(call, now, "re-INVITE timed out")

    # ---- streams and unreadable datagrams ------------------------------------------------------
    def stream_opened(self, peer: Addr, transport: str) -> None:
        """The adapter holds a ``transport`` ("TCP" or "TLS") connection with ``peer``: messages to it go there."""
        self.streams[peer] = transport
        self.transactions.streams.add(peer)

    def stream_closed(self, peer: Addr) -> None:
        """The connection with ``peer`` is gone: what was under way with it times out."""
        self.streams.pop(peer, None)
        self.transactions.streams.discard(peer)

    def _bad_request(self, data: bytes, addr: Addr, why: SipParseError) -> None:
        req = salvage_request(data)
        if req is None or req.method == "ACK":
            log.debug("dropped an unparseable datagram from %s: %s", addr, why)
            return
        via = req.top_via
        via.params["received"] = addr[0]
        if "rport" in via.params:
            via.params["rport"] = str(addr[1])
        resp = response_to(req, why.status, reason_phrase(why.status))
        resp.headers.set("Via", str(via))
        for extra_via in req.headers.get_all("Via")[1:]:
            resp.headers.add("Via", extra_via)
        self.transactions.send_stateless(resp, via.response_addr())


def sipfrag_status(body: bytes) -> int | None:
    """The status of a ``message/sipfrag`` body's status line (``SIP/2.0 200 OK``), or None."""
    first = body.split(b"\n", 1)[0].strip().split()
    if len(first) >= 2 and first[0].upper() == b"SIP/2.0" and first[1].isdigit() and len(first[1]) == 3:
        return int(first[1])
    return None
