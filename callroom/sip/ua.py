"""A sans-I/O SIP user agent core for a B2BUA-style server: calls in and out over UDP.

Surface, as aioquic's ``QuicConnection``: ``receive_datagram(data, addr, now)``, ``datagrams_to_send(now)``,
``get_timer()``, ``handle_timer(now)``, ``next_event()``; plus the call commands ``invite``, ``ring``,
``answer``, ``reject``, ``cancel``, ``reinvite``, ``hangup``. Commands take ``now`` too, because they may
start timers. Calls are named by their Call-ID.

Policy: OPTIONS gets 200 automatically; a request that does not parse gets 400 when its Via, From, To,
Call-ID and CSeq can still be read (otherwise it is dropped); methods we know but do not serve get 405
with Allow, others 501; ``receive_datagram`` never raises.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections import deque
from collections.abc import Sequence

from callroom.errors import (
    CallroomError,
    IllegalTransition,
    ProtocolError,
    SdpParseError,
    SdpTooLarge,
    SipParseError,
)
from callroom.sip.call import (
    Call,
    CallAnswered,
    CallCancelled,
    CallConfirmed,
    CallEnded,
    CallEvent,
    CallFailed,
    CallInput,
    CallRinging,
    CallState,
    IncomingCall,
    OptionsPing,
    ReferProgress,
    ReInviteAnswered,
    ReInviteFailed,
    ReInviteReceived,
)  # fmt: skip
from callroom.sip.dialog import Dialog, DialogInput, DialogState, Retransmit2xx, make_cancel, uri_addr
from callroom.sip.digest import Challenge, answer_challenge
from callroom.sip.message import (
    Headers,
    NameAddr,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    parse_message,
    reason_phrase,
    response_to,
    salvage_request,
)  # fmt: skip
from callroom.sip.register import Registration, RegistrationInput
from callroom.sip.sdp import SessionDescription
from callroom.sip.transaction import (
    Addr,
    RequestReceived,
    ResponseReceived,
    ServerInviteState,
    TransactionLayer,
    TransactionTimeout,
)  # fmt: skip

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
MAX_AUTH_TRIES = 3  # INVITEs sent again with a digest answer (a stale nonce may need more than one)
KNOWN_METHODS = frozenset({"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "INFO", "UPDATE", "PRACK", "PUBLISH"})


class SipEndpoint:
    """One UDP SIP endpoint (``local_addr``) with any number of calls."""

    def __init__(self, local_addr: Addr, *, user: str = "callroom", user_agent: str = "callroom",
                 rng: random.Random | None = None) -> None:  # fmt: skip
        self.local_addr = local_addr
        try:
            self.ip_version = ipaddress.ip_address(local_addr[0]).version
        except ValueError:  # advertised by name: the socket is IPv4
            self.ip_version = 4
        self.user_agent = user_agent
        self.contact = SipUri(host=local_addr[0], user=user, port=local_addr[1])
        # Stream connections (TCP, TLS) the adapter holds, by peer address, and the ports we listen on for
        # each stream transport: what a message to such a peer says in its Via and Contact.
        self.streams: dict[Addr, str] = {}
        self.stream_ports: dict[str, int] = {}
        self.transactions = TransactionLayer()
        self.calls: dict[str, Call] = {}
        self._answering: dict[str, Call] = {}  # calls that may have a 2xx to retransmit (pruned lazily)
        self.registrations: dict[str, Registration] = {}  # ours with registrars (trunks), by key
        self._registering: dict[str, str] = {}  # REGISTER transaction id -> registration key
        self._rng = rng or random.SystemRandom()
        self.unavailable: int | None = None  # set (a Retry-After in seconds): OPTIONS are answered 503
        self._events: deque[CallEvent] = deque()
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
        for call in self._answering.values():  # the few calls whose 2xx awaits its ACK, not every call
            if call.retransmit is not None:
                deadlines.append(min(call.retransmit.next_at, call.retransmit.give_up_at))
        deadlines += [reg.next_at for reg in self.registrations.values() if reg.next_at is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        self.transactions.handle_timer(now)
        for reg in list(self.registrations.values()):
            if reg.next_at is not None and reg.next_at <= now and reg.tx is None:
                self._send_register(reg, now)
        for call in list(self._answering.values()):
            rt = call.retransmit
            if rt is None:
                self._answering.pop(call.call_id, None)
                continue
            if now < min(rt.next_at, rt.give_up_at):
                continue
            if rt.advance(now):
                self.transactions.send_stateless(rt.response, rt.addr)
            else:
                call.retransmit = None
                if rt.response.cseq.method == "INVITE" and call.state is CallState.ESTABLISHED:
                    self._send_bye(call, now)
                    self._events.append(CallEnded(call.call_id, "timeout", "no ACK for our 2xx"))
        self._pump(now)

    def next_event(self) -> CallEvent | None:
        return self._events.popleft() if self._events else None

    # ---- commands ------------------------------------------------------------------------------
    def invite(self, to_uri: SipUri | str, from_uri: SipUri | str, sdp: SessionDescription | None, now: float,
               *, addr: Addr | None = None, display_name: str | None = None,
               credentials: tuple[str, str] | None = None, headers: Sequence[tuple[str, str]] = (),
               extra_headers: Sequence[tuple[str, str]] = ()) -> str:  # fmt: skip
        """Place a call; returns its Call-ID. ``addr`` overrides where the INVITE goes (else the URI host).
        ``credentials`` (username, password) answer a 401/407 digest challenge to it (the INVITE is sent again,
        CSeq one higher, at most ``MAX_AUTH_TRIES`` times); ``headers`` are added (P-Asserted-Identity ...),
        then ``extra_headers``, the application's own (X- headers, User-to-User)."""
        to = SipUri.parse(to_uri) if isinstance(to_uri, str) else to_uri
        frm = SipUri.parse(from_uri) if isinstance(from_uri, str) else from_uri
        call_id = f"{self._token()}@{self.local_addr[0]}"
        tag = self._token()
        peer = addr or uri_addr(to)
        message = Headers()
        message.add("Via", str(self._via(peer)))
        message.add("Max-Forwards", "70")
        message.add("From", str(NameAddr(frm, display_name, {"tag": tag})))
        message.add("To", str(NameAddr(to)))
        message.add("Call-ID", call_id)
        message.add("CSeq", "1 INVITE")
        message.add("Contact", f"<{self._contact(peer)}>")
        message.add("Allow", ALLOW)
        message.add("User-Agent", self.user_agent)
        for name, value in (*headers, *extra_headers):
            message.add(name, value)
        body = b""
        if sdp is not None:
            message.add("Content-Type", "application/sdp")
            body = bytes(sdp)
        req = SipRequest("INVITE", to, message, body)
        tx = self.transactions.send_request(req, peer, now)
        self.calls[call_id] = Call(call_id, False, req, tx, peer, tag, CallState.CALLING, local_sdp=sdp,
                                   credentials=credentials)
        return call_id

    def ring(self, call_id: str, now: float, sdp: SessionDescription | None = None) -> None:
        call = self._call(call_id)
        call.fire(CallInput.RING)
        self._respond_invite(call, 180, now, sdp)

    def answer(self, call_id: str, sdp: SessionDescription | None, now: float,
               extra_headers: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        """Answer an incoming call, or the peer's pending re-INVITE, with 200 and ``sdp`` (an incoming call's
        200 with ``extra_headers``: the application's own)."""
        call = self._call(call_id)
        if call.reinvite_tx is not None and call.reinvite_request is not None:
            resp = self._response(call.reinvite_request, 200, call, sdp)
            self.transactions.send_response(call.reinvite_tx, resp, now)
            call.retransmit = Retransmit2xx.start(resp, self._peer_of(call.reinvite_request), now)
            self._answering[call.call_id] = call
            call.reinvite_tx = call.reinvite_request = None
            call.local_sdp = sdp or call.local_sdp
            return
        if not call.incoming:
            raise IllegalTransition("call", call.state, "answer")
        call.fire(CallInput.ANSWER)
        call.local_sdp = sdp
        resp = self._respond_invite(call, 200, now, sdp, headers=extra_headers)
        assert call.dialog is not None
        call.dialog.fire(DialogInput.CONFIRM)
        call.retransmit = Retransmit2xx.start(resp, self._peer_of(call.invite), now)
        self._answering[call.call_id] = call

    def reject(self, call_id: str, status: int, now: float, reason: str | None = None,
               headers: Sequence[tuple[str, str]] = ()) -> None:  # fmt: skip
        """Refuse an incoming call (or the peer's pending re-INVITE) with ``status`` (300-699);
        ``headers`` are added to the response (a digest challenge's WWW-Authenticate, say)."""
        if not 300 <= status <= 699:
            raise ValueError("reject needs a 3xx-6xx status")
        call = self._call(call_id)
        if call.reinvite_tx is not None and call.reinvite_request is not None:
            resp = self._response(call.reinvite_request, status, call, None, reason)
            self.transactions.send_response(call.reinvite_tx, resp, now)
            call.reinvite_tx = call.reinvite_request = None
            return
        if not call.incoming:
            raise IllegalTransition("call", call.state, "reject")
        call.fire(CallInput.FAIL)
        self._respond_invite(call, status, now, None, reason, headers)
        self._forget(call)

    def cancel(self, call_id: str, now: float) -> None:
        """Cancel our unanswered INVITE; sent once a provisional response has arrived (§9.1)."""
        call = self._call(call_id)
        if call.incoming:
            raise IllegalTransition("call", call.state, "cancel")
        provisional = call.state is CallState.RINGING or call.notes.get("provisional") == "yes"
        call.fire(CallInput.CANCEL_SENT)
        if provisional:
            self.transactions.send_request(make_cancel(call.invite), call.peer, now)
        else:
            call.cancel_pending = True

    def send_in_dialog(self, call_id: str, method: str, now: float, *, body: bytes = b"",
                       content_type: str | None = None, extra: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        """An INFO or a REFER on an established call; a REFER's fate comes back as ``ReferProgress``."""
        call = self._call(call_id)
        if call.dialog is None or call.state is not CallState.ESTABLISHED:
            raise IllegalTransition("call", call.state, f"send {method}")
        req = call.dialog.create_request(method, self._via(), body, content_type, extra)
        self._sent[self.transactions.send_request(req, self._hop(call), now)] = method

    def reinvite(self, call_id: str, sdp: SessionDescription, now: float) -> None:
        """Send a re-INVITE with a new offer (hold: ``a=sendonly``; unhold: ``a=sendrecv``)."""
        call = self._call(call_id)
        if call.state is not CallState.ESTABLISHED or call.dialog is None or call.reinvite_tx is not None:
            raise IllegalTransition("call", call.state, "reinvite")
        call.fire(CallInput.REINVITE)
        req = call.dialog.create_request("INVITE", self._via(self._hop(call)), bytes(sdp), "application/sdp")
        call.reinvite_tx = self.transactions.send_request(req, self._hop(call), now)
        call.reinvite_request = req
        call.local_sdp = sdp

    def hangup(self, call_id: str, now: float) -> None:
        """End a call whatever its state: BYE, CANCEL, or 603 Decline for an unanswered incoming call."""
        call = self._call(call_id)
        if call.state is CallState.ESTABLISHED:
            call.fire(CallInput.BYE)
            self._send_bye(call, now)
            self._events.append(CallEnded(call_id, "local", "hangup"))
        elif call.state in (CallState.OFFERED, CallState.RINGING) and call.incoming:
            self.reject(call_id, 603, now)
        elif call.state in (CallState.CALLING, CallState.RINGING):
            self.cancel(call_id, now)
        else:
            raise IllegalTransition("call", call.state, "hangup")

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

    def _on_invite(self, req: SipRequest, tx: str, source: Addr, now: float) -> None:
        if req.call_id in self.calls:
            self._send(tx, response_to(req, 482, "Loop Detected", self._token()), now)
            return
        try:
            sdp = _sdp_of(req)
            if not req.contacts:
                raise SipParseError("INVITE without Contact")
        except ProtocolError as exc:
            status = 488 if isinstance(exc, SdpTooLarge) else 400
            log.info("%d to INVITE %s: %s", status, req.call_id, exc)
            self._send(tx, response_to(req, status, reason_phrase(status), self._token()), now)
            return
        call = Call(req.call_id, True, req, tx, source, self._token(), CallState.OFFERED)
        call.dialog = Dialog.from_uas(req, call.local_tag, self._contact(source))
        self.calls[req.call_id] = call
        self._events.append(IncomingCall(req.call_id, req.from_, req.to, req.uri, sdp, source,
                                         custom_headers(req.headers)))

    def _on_reinvite(self, call: Call, req: SipRequest, tx: str, now: float) -> None:
        if call.reinvite_tx is not None or call.state is not CallState.ESTABLISHED:
            self._send(tx, response_to(req, 491, "Request Pending"), now)
            return
        try:
            sdp = _sdp_of(req)
        except SdpParseError as exc:
            log.info("400 to re-INVITE %s: %s", req.call_id, exc)
            self._send(tx, response_to(req, 400, "Bad Request"), now)
            return
        call.fire(CallInput.REINVITE)
        call.reinvite_tx, call.reinvite_request = tx, req
        self._events.append(ReInviteReceived(call.call_id, sdp))

    def _on_ack(self, req: SipRequest) -> None:
        call = self.calls.get(req.call_id)
        if call is None or call.dialog is None or not self._in_dialog(call, req):
            return
        rt = call.retransmit
        if rt is not None and rt.response.cseq.seq == req.cseq.seq:
            call.retransmit = None
        if call.incoming and not call.confirmed and call.state is CallState.ESTABLISHED:
            call.confirmed = True
            try:
                sdp = _sdp_of(req)
            except SdpParseError:
                sdp = None
            self._events.append(CallConfirmed(call.call_id, sdp))

    def _on_cancel(self, invite_tx: str | None, now: float) -> None:
        call = next((c for c in self.calls.values() if c.incoming and c.invite_tx == invite_tx), None)
        if call is None or self.transactions.state_of(call.invite_tx) is not ServerInviteState.PROCEEDING:
            return
        call.fire(CallInput.CANCEL_RECEIVED)
        self._respond_invite(call, 487, now)
        self._forget(call)
        self._events.append(CallCancelled(call.call_id))

    def _end_by_bye(self, call: Call, now: float) -> None:
        if call.state in (CallState.ESTABLISHED, CallState.ENDED):
            call.fire(CallInput.BYE)
        else:  # BYE on an early dialog (§15): answer the INVITE with 487 first
            if call.incoming and self.transactions.state_of(call.invite_tx) is ServerInviteState.PROCEEDING:
                self._respond_invite(call, 487, now)
            call.fire(CallInput.FAIL)
        self._forget(call)
        self._events.append(CallEnded(call.call_id, "remote", "BYE"))

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

    def _on_invite_response(self, call: Call, resp: SipResponse, now: float) -> None:
        status = resp.status
        if status < 200:
            call.notes["provisional"] = "yes"
            if call.cancel_pending:
                call.cancel_pending = False
                self.transactions.send_request(make_cancel(call.invite), call.peer, now)
            if status > 100 and call.state is not CallState.CANCELLING:
                call.fire(CallInput.RING)
                self._events.append(CallRinging(call.call_id, status, _sdp_or_none(resp)))
            return
        if status in (401, 407) and self._authenticate(call, resp, now):
            return
        if status >= 300:
            cancelled = call.state is CallState.CANCELLING
            call.fire(CallInput.FAIL)
            self._forget(call)
            if cancelled and status == 487:
                self._events.append(CallCancelled(call.call_id))
            else:
                self._events.append(CallFailed(call.call_id, status, resp.reason))
            return
        if call.dialog is not None and call.dialog.state is DialogState.CONFIRMED:
            if call.last_ack is not None:  # 2xx retransmission within the transaction (ACCEPTED)
                self.transactions.send_stateless(call.last_ack, self._hop(call))
            return
        call.dialog = Dialog.from_uac(call.invite, resp)
        call.last_ack = call.dialog.create_ack(self._via(self._hop(call)))
        self.transactions.send_stateless(call.last_ack, self._hop(call))
        was_cancelling = call.state is CallState.CANCELLING
        call.fire(CallInput.ANSWER)
        if was_cancelling:  # the 200 won the race with our CANCEL: end the call we did not want
            call.fire(CallInput.BYE)
            self._send_bye(call, now)
            self._events.append(CallCancelled(call.call_id))
            return
        self._events.append(CallAnswered(call.call_id, _sdp_or_none(resp)))

    def _authenticate(self, call: Call, resp: SipResponse, now: float) -> bool:
        """Send the INVITE again with an answer to the 401/407's digest challenge (RFC 3261 §22.2): same
        Call-ID and From tag, CSeq one higher, a new branch. False when there is nothing to answer with: no
        credentials, a challenge we cannot read, a cancelled call, or a challenge to our answer that does not
        say ``stale`` (the credentials are wrong)."""
        if call.credentials is None or call.state is CallState.CANCELLING or call.auth_tries >= MAX_AUTH_TRIES:
            return False
        asking, answering = (("WWW-Authenticate", "Authorization") if resp.status == 401
                             else ("Proxy-Authenticate", "Proxy-Authorization"))
        challenge = next((c for v in resp.headers.get_all(asking) if (c := Challenge.parse(v)) is not None), None)
        if challenge is None:
            return False
        if call.invite.headers.get(answering) is not None and not challenge.stale:
            return False  # our answer was refused: a new challenge that is not stale means wrong credentials
        username, password = call.credentials
        answer = answer_challenge(challenge, username, password, "INVITE", str(call.invite.uri), cnonce=self._token())
        headers = Headers()
        for name, value in call.invite.headers:
            if name == "Via":
                value = str(self._via(call.peer))
            elif name == "CSeq":
                value = f"{call.invite.cseq.seq + 1} INVITE"
            elif name in ("Authorization", "Proxy-Authorization"):
                continue
            headers.add(name, value)
        headers.add(answering, answer)
        req = SipRequest("INVITE", call.invite.uri, headers, call.invite.body)
        call.auth_tries += 1
        call.invite, call.invite_tx = req, self.transactions.send_request(req, call.peer, now)
        call.notes.pop("provisional", None)
        return True

    def _on_reinvite_response(self, call: Call, resp: SipResponse, now: float) -> None:
        if resp.status < 200 or call.dialog is None:
            return
        call.reinvite_tx = call.reinvite_request = None
        if resp.status < 300:
            call.dialog.receive_response(resp)
            call.last_ack = call.dialog.create_ack(self._via(self._hop(call)))
            self.transactions.send_stateless(call.last_ack, self._hop(call))
            self._events.append(ReInviteAnswered(call.call_id, _sdp_or_none(resp)))
        elif resp.status in (408, 481):
            self._drop_dialog(call, now, f"re-INVITE got {resp.status}")
        else:
            self._events.append(ReInviteFailed(call.call_id, resp.status, resp.reason))

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

    def _drop_dialog(self, call: Call, now: float, reason: str) -> None:
        self._events.append(ReInviteFailed(call.call_id, 408, reason))
        if call.state is CallState.ESTABLISHED:
            call.fire(CallInput.BYE)
            self._send_bye(call, now)
            self._events.append(CallEnded(call.call_id, "timeout", reason))

    # ---- helpers -------------------------------------------------------------------------------
    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise KeyError(f"no call {call_id!r}")
        return call

    def _forget(self, call: Call) -> None:
        if call.dialog is not None and call.dialog.state is not DialogState.TERMINATED:
            confirmed = call.dialog.state is DialogState.CONFIRMED
            call.dialog.fire(DialogInput.BYE if confirmed else DialogInput.FAIL)
        call.retransmit = None
        self.calls.pop(call.call_id, None)
        self._answering.pop(call.call_id, None)

    def _send_bye(self, call: Call, now: float) -> None:
        assert call.dialog is not None
        bye = call.dialog.create_request("BYE", self._via(self._hop(call)), extra=(("User-Agent", self.user_agent),))
        self.transactions.send_request(bye, self._hop(call), now)
        self._forget(call)

    def _in_dialog(self, call: Call, req: SipRequest) -> bool:
        assert call.dialog is not None
        return req.to.tag == call.dialog.local_tag and req.from_.tag == call.dialog.remote_tag

    def _respond_invite(self, call: Call, status: int, now: float, sdp: SessionDescription | None = None,
                        reason: str | None = None, headers: Sequence[tuple[str, str]] = ()) -> SipResponse:  # fmt: skip
        resp = self._response(call.invite, status, call, sdp, reason, headers)
        self.transactions.send_response(call.invite_tx, resp, now)
        return resp

    def _response(self, req: SipRequest, status: int, call: Call, sdp: SessionDescription | None,
                  reason: str | None = None, headers: Sequence[tuple[str, str]] = ()) -> SipResponse:  # fmt: skip
        extra: list[tuple[str, str]] = list(headers)
        if status < 300:
            extra += [("Contact", f"<{self._contact(call.peer)}>"), ("Allow", ALLOW)]
            extra += [("Record-Route", str(r)) for r in req.record_route]
        if sdp is not None:
            extra.append(("Content-Type", "application/sdp"))
        extra.append(("Server", self.user_agent))
        body = bytes(sdp) if sdp is not None else b""
        return response_to(req, status, reason or reason_phrase(status), call.local_tag, body, extra)

    def _send(self, tx: str, resp: SipResponse, now: float) -> None:
        self.transactions.send_response(tx, resp, now)

    def _hop(self, call: Call) -> Addr:
        """Where an in-dialog request (BYE, re-INVITE, ACK) goes: the dialog's next hop (RFC 3261 §12.2.1.1)
        when it is an address of our own family; otherwise the address the call's INVITE came from or went to.
        A host name in a Contact or Record-Route is never looked up here (that would block, and a per-packet
        lookup is a gift to whoever controls the name); an address we cannot send to (IPv6 on an IPv4
        socket) is not tried."""
        assert call.dialog is not None
        if call.peer in self.streams:  # over the call's connection (the peer's Contact may name another port)
            return call.peer
        hop = call.dialog.next_hop()
        return hop if self.sendable(hop) else call.peer

    def sendable(self, addr: Addr) -> bool:
        """Whether ``addr`` is an IP address of the socket's family with a usable port."""
        try:
            ip = ipaddress.ip_address(addr[0])
        except ValueError:
            return False
        return ip.version == self.ip_version and 0 < addr[1] < 65536

    def _peer_of(self, req: SipRequest) -> Addr:
        return req.top_via.response_addr()

    def _via(self, peer: Addr | None = None) -> Via:
        """Our Via for a request to ``peer``: the transport it is reached over, and our port for it."""
        params: dict[str, str | None] = {"branch": "z9hG4bK" + self._token(), "rport": None}
        transport = self.streams.get(peer, "UDP") if peer is not None else "UDP"
        return Via(self.local_addr[0], self.stream_ports.get(transport, self.local_addr[1]), transport, params)

    def _contact(self, peer: Addr, user: str | None = None) -> SipUri:
        """Our Contact for a dialog or registration with ``peer`` (``;transport=tcp`` or ``tls`` over a stream)."""
        transport = self.streams.get(peer)
        if transport is None:
            return self.contact if user is None else SipUri(self.contact.host, user=user, port=self.contact.port)
        return SipUri(self.contact.host, user=user or self.contact.user, port=self.stream_ports.get(transport),
                      params={"transport": transport.lower()})

    def stream_opened(self, peer: Addr, transport: str) -> None:
        """The adapter holds a ``transport`` ("TCP" or "TLS") connection with ``peer``: messages to it go there."""
        self.streams[peer] = transport
        self.transactions.streams.add(peer)

    def stream_closed(self, peer: Addr) -> None:
        """The connection with ``peer`` is gone: what was under way with it times out."""
        self.streams.pop(peer, None)
        self.transactions.streams.discard(peer)

    def _token(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

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


def custom_headers(headers: Headers) -> tuple[tuple[str, str], ...]:
    """The headers of a request that are an application's own: ``X-`` headers and User-to-User."""
    return tuple((name, value) for name, value in headers
                 if name.lower().startswith("x-") or name.lower() == "user-to-user")


def sipfrag_status(body: bytes) -> int | None:
    """The status of a ``message/sipfrag`` body's status line (``SIP/2.0 200 OK``), or None."""
    first = body.split(b"\n", 1)[0].strip().split()
    if len(first) >= 2 and first[0].upper() == b"SIP/2.0" and first[1].isdigit() and len(first[1]) == 3:
        return int(first[1])
    return None


def _sdp_of(msg: SipRequest | SipResponse) -> SessionDescription | None:
    if not msg.body:
        return None
    if msg.content_type not in (None, "application/sdp"):
        raise SdpParseError(f"unsupported body type {msg.content_type}")
    return SessionDescription.parse(msg.body)


def _sdp_or_none(msg: SipRequest | SipResponse) -> SessionDescription | None:
    try:
        return _sdp_of(msg)
    except SdpParseError:
        return None
