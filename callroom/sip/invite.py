"""The INVITE dialogs of a SIP endpoint, as server and as client: calls placed (INVITE, its digest answer to a
401/407, CANCEL, the ACK to a 2xx), calls answered (ring, 200 and its retransmission until the ACK, reject,
a CANCEL received), re-INVITEs either way, and BYE.

:class:`InviteDialogs` holds the calls and the transaction layer; :class:`~callroom.sip.ua.SipEndpoint`
builds on it, routing what arrives (requests, responses, timeouts) to the handlers here.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Sequence

from callroom.errors import IllegalTransition, ProtocolError, SdpParseError, SdpTooLarge, SipParseError
from callroom.sip.addressing import Addressing
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
    reason_phrase,
    response_to,
)  # fmt: skip
from callroom.sip.sdp import SessionDescription
from callroom.sip.transaction import Addr, ServerInviteState, TransactionLayer

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
MAX_AUTH_TRIES = 3  # INVITEs sent again with a digest answer (a stale nonce may need more than one)


class InviteDialogs(Addressing):
    """The calls of one endpoint, by Call-ID, and the INVITE transactions and dialogs that carry them."""

    def __init__(self, local_addr: Addr, *, user: str = "callroom", user_agent: str = "callroom",
                 rng: random.Random | None = None) -> None:  # fmt: skip
        super().__init__(local_addr, user=user, user_agent=user_agent, rng=rng)
        self.transactions = TransactionLayer()
        self.calls: dict[str, Call] = {}
        self._answering: dict[str, Call] = {}  # calls that may have a 2xx to retransmit (pruned lazily)
        self._events: deque[CallEvent] = deque()

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

    # ---- internals: incoming requests ----------------------------------------------------------
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

    # ---- internals: responses to our INVITEs ---------------------------------------------------
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

    def _drop_dialog(self, call: Call, now: float, reason: str) -> None:
        self._events.append(ReInviteFailed(call.call_id, 408, reason))
        if call.state is CallState.ESTABLISHED:
            call.fire(CallInput.BYE)
            self._send_bye(call, now)
            self._events.append(CallEnded(call.call_id, "timeout", reason))

    # ---- internals: our 2xx, sent again until its ACK ------------------------------------------
    def _answer_deadlines(self) -> list[float]:
        deadlines = []
        for call in self._answering.values():  # the few calls whose 2xx awaits its ACK, not every call
            if call.retransmit is not None:
                deadlines.append(min(call.retransmit.next_at, call.retransmit.give_up_at))
        return deadlines

    def _resend_answers(self, now: float) -> None:
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


def custom_headers(headers: Headers) -> tuple[tuple[str, str], ...]:
    """The headers of a request that are an application's own: ``X-`` headers and User-to-User."""
    return tuple((name, value) for name, value in headers
                 if name.lower().startswith("x-") or name.lower() == "user-to-user")




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
