"""SIP dialogs (RFC 3261 §12, §13.3.1.4, §9.1), sans-I/O.

A :class:`Dialog` is created from a 2xx (or a 1xx carrying a To tag, which makes it early) on the UAC side,
or when the UAS answers with a tag. It knows its id (Call-ID, local tag, remote tag), both CSeq counters,
the remote target (from Contact) and the route set (from Record-Route), and builds the in-dialog requests:
BYE, re-INVITE, the ACK for a 2xx. :func:`make_cancel` builds a CANCEL for a pending INVITE and
:class:`Retransmit2xx` paces the UAS's 2xx until the ACK arrives.

The dialog state machine lives here: ``DialogState`` and the ``DIALOG_TRANSITIONS`` table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum, auto

from callroom.errors import IllegalTransition, ProtocolError
from callroom.sip.message import Headers, NameAddr, SipRequest, SipResponse, SipUri, Via
from callroom.sip.transaction import T1, T2, Addr

log = logging.getLogger(__name__)


class DialogState(Enum):
    EARLY = auto()
    CONFIRMED = auto()
    TERMINATED = auto()


class DialogInput(Enum):
    PROVISIONAL = auto()  # another 1xx with the same tags
    CONFIRM = auto()  # 2xx to the dialog-creating INVITE (sent or received, including retransmissions)
    FAIL = auto()  # 300-699 to the dialog-creating INVITE, or it timed out
    BYE = auto()  # BYE sent or received
    TIMEOUT = auto()  # an in-dialog request timed out or got 408/481 (§12.2.1.2)


DIALOG_TRANSITIONS: dict[DialogState, dict[DialogInput, DialogState]] = {
    DialogState.EARLY: {
        DialogInput.PROVISIONAL: DialogState.EARLY,
        DialogInput.CONFIRM: DialogState.CONFIRMED,
        DialogInput.FAIL: DialogState.TERMINATED,
        DialogInput.BYE: DialogState.TERMINATED,
        DialogInput.TIMEOUT: DialogState.TERMINATED,
    },
    DialogState.CONFIRMED: {
        DialogInput.CONFIRM: DialogState.CONFIRMED,
        DialogInput.BYE: DialogState.TERMINATED,
        DialogInput.TIMEOUT: DialogState.TERMINATED,
    },
    DialogState.TERMINATED: {DialogInput.BYE: DialogState.TERMINATED},
}


@dataclass(frozen=True, slots=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


def uri_addr(uri: SipUri) -> Addr:
    """Where to send a request for ``uri`` (maddr honoured; no DNS: the host must be an address)."""
    host = uri.params.get("maddr") or uri.host
    return host, uri.port or (5061 if uri.scheme == "sips" else 5060)


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_party: NameAddr  # our From (UAC) or To (UAS), tag included
    remote_party: NameAddr
    local_seq: int
    remote_seq: int | None
    remote_target: SipUri
    local_contact: SipUri
    route_set: list[NameAddr] = field(default_factory=list)
    is_uas: bool = False
    state: DialogState = DialogState.EARLY
    invite_seq: int = 0  # CSeq of the last INVITE we sent (for its ACK)

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # ---- creation ------------------------------------------------------------------------------
    @classmethod
    def from_uac(cls, invite: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a 1xx-with-tag or 2xx to our ``invite`` creates (§12.1.2)."""
        remote_tag = response.to.tag
        local_tag = invite.from_.tag
        if remote_tag is None or local_tag is None:
            raise ProtocolError("a dialog needs tags on both From and To")
        contacts = response.contacts
        if not contacts and 200 <= response.status < 300:
            raise ProtocolError("2xx to INVITE without Contact")
        target = contacts[0].uri if contacts else invite.uri
        own = invite.contacts
        state = DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY
        return cls(invite.call_id, local_tag, remote_tag, invite.from_, response.to, invite.cseq.seq, None,
                   target, own[0].uri if own else invite.from_.uri, list(reversed(response.record_route)),
                   is_uas=False, state=state, invite_seq=invite.cseq.seq)  # fmt: skip

    @classmethod
    def from_uas(cls, invite: SipRequest, local_tag: str, local_contact: SipUri,
                 state: DialogState = DialogState.EARLY) -> Dialog:  # fmt: skip
        """The dialog we create by answering ``invite`` with To tag ``local_tag`` (§12.1.1)."""
        remote_tag = invite.from_.tag
        if remote_tag is None:
            raise ProtocolError("INVITE without From tag")
        contacts = invite.contacts
        if not contacts:
            raise ProtocolError("INVITE without Contact")
        return cls(invite.call_id, local_tag, remote_tag, invite.to.with_tag(local_tag), invite.from_, 0,
                   invite.cseq.seq, contacts[0].uri, local_contact, list(invite.record_route), is_uas=True,
                   state=state)  # fmt: skip

    # ---- state ---------------------------------------------------------------------------------
    def fire(self, event: DialogInput) -> DialogState:
        new = DIALOG_TRANSITIONS[self.state].get(event)
        if new is None:
            raise IllegalTransition("dialog", self.state, event)
        if new is not self.state:
            log.debug("dialog %s: %s -> %s on %s", self.call_id, self.state.name, new.name, event.name)
        self.state = new
        return new

    # ---- requests ------------------------------------------------------------------------------
    def _target_and_routes(self) -> tuple[SipUri, list[str]]:
        routes = [str(r) for r in self.route_set]
        if self.route_set and "lr" not in self.route_set[0].uri.params:  # strict router (§12.2.1.1)
            return self.route_set[0].uri, [*routes[1:], f"<{self.remote_target}>"]
        return self.remote_target, routes

    def next_hop(self) -> Addr:
        if self.route_set:
            return uri_addr(self.route_set[0].uri)
        return uri_addr(self.remote_target)

    def create_request(self, method: str, via: Via, body: bytes = b"", content_type: str | None = None,
                       extra: tuple[tuple[str, str], ...] = ()) -> SipRequest:  # fmt: skip
        """A new in-dialog request (BYE, re-INVITE, INFO, ...); increments the local CSeq."""
        if self.state is DialogState.TERMINATED:
            raise IllegalTransition("dialog", self.state, f"send {method}")
        self.local_seq += 1
        if method == "INVITE":
            self.invite_seq = self.local_seq
        return self._build(method, self.local_seq, via, body, content_type, extra)

    def create_ack(self, via: Via, body: bytes = b"") -> SipRequest:
        """The ACK for a 2xx to our last INVITE (§13.2.2.4): same CSeq number, its own branch."""
        return self._build("ACK", self.invite_seq, via, body, "application/sdp" if body else None, ())

    def _build(self, method: str, seq: int, via: Via, body: bytes, content_type: str | None,
               extra: tuple[tuple[str, str], ...]) -> SipRequest:  # fmt: skip
        uri, routes = self._target_and_routes()
        headers = Headers()
        headers.add("Via", str(via))
        for route in routes:
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self.local_party))
        headers.add("To", str(self.remote_party))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{seq} {method}")
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            headers.add("Contact", f"<{self.local_contact}>")
        for name, value in extra:
            headers.add(name, value)
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return SipRequest(method, uri, headers, body)

    def receive_request(self, request: SipRequest) -> bool:
        """Check and record the remote CSeq of an in-dialog request (§12.2.2).

        Returns False when the CSeq is lower than the last one seen (answer 500); ACK and CANCEL reuse
        their INVITE's number and are not checked. A re-INVITE refreshes the remote target.
        """
        if request.method in ("ACK", "CANCEL"):
            return True
        seq = request.cseq.seq
        if self.remote_seq is not None and seq <= self.remote_seq:
            return False
        self.remote_seq = seq
        if request.method == "INVITE" and request.contacts:
            self.remote_target = request.contacts[0].uri
        return True

    def receive_response(self, response: SipResponse) -> None:
        """Target refresh from a 2xx to a re-INVITE (§12.2.1.2)."""
        if 200 <= response.status < 300 and response.cseq.method == "INVITE" and response.contacts:
            self.remote_target = response.contacts[0].uri


def make_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for a pending ``invite`` (§9.1): same Request-URI, top Via, Call-ID, From, To, CSeq number."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return SipRequest("CANCEL", invite.uri, headers)


@dataclass(slots=True)
class Retransmit2xx:
    """UAS retransmission of a 2xx to INVITE until its ACK (§13.3.1.4): T1, doubling to T2, for 64*T1."""

    response: SipResponse
    addr: Addr
    next_at: float
    give_up_at: float
    interval: float = T1

    @classmethod
    def start(cls, response: SipResponse, addr: Addr, now: float) -> Retransmit2xx:
        return cls(response, addr, now + T1, now + 64 * T1)

    def advance(self, now: float) -> bool:
        """Call when ``now >= next_at``; True means send again, False means give up (no ACK came)."""
        if now >= self.give_up_at:
            return False
        self.interval = min(self.interval * 2, T2)
        self.next_at = now + self.interval
        return True
