"""What :class:`~callroom.sip.ua.SipEndpoint` tracks per call, and the events it reports.

The call state machine lives here: ``CallState`` and the ``CALL_TRANSITIONS`` table. It is the SIP-level
view of one leg (the control plane keeps its own, richer call leg).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum, auto

from callroom.errors import IllegalTransition
from callroom.sip.dialog import Dialog, Retransmit2xx
from callroom.sip.message import NameAddr, SipRequest, SipUri
from callroom.sip.register import RegistrationChanged
from callroom.sip.sdp import SessionDescription
from callroom.sip.transaction import Addr

log = logging.getLogger(__name__)


class CallState(Enum):
    OFFERED = auto()  # incoming INVITE, not answered yet
    CALLING = auto()  # outgoing INVITE, nothing but 100 yet
    RINGING = auto()  # 180/183 sent or received
    CANCELLING = auto()  # we sent (or will send) CANCEL for our INVITE
    ESTABLISHED = auto()  # 2xx sent or received
    ENDED = auto()


class CallInput(Enum):
    RING = auto()
    ANSWER = auto()  # 2xx sent or received (also retransmissions and re-INVITE answers)
    FAIL = auto()  # non-2xx final, timeout, or our reject
    CANCEL_SENT = auto()
    CANCEL_RECEIVED = auto()
    REINVITE = auto()
    BYE = auto()


_S, _I = CallState, CallInput
CALL_TRANSITIONS: dict[CallState, dict[CallInput, CallState]] = {
    _S.OFFERED: {_I.RING: _S.RINGING, _I.ANSWER: _S.ESTABLISHED, _I.FAIL: _S.ENDED,
                 _I.CANCEL_RECEIVED: _S.ENDED},
    _S.CALLING: {_I.RING: _S.RINGING, _I.ANSWER: _S.ESTABLISHED, _I.FAIL: _S.ENDED,
                 _I.CANCEL_SENT: _S.CANCELLING},
    _S.RINGING: {_I.RING: _S.RINGING, _I.ANSWER: _S.ESTABLISHED, _I.FAIL: _S.ENDED,
                 _I.CANCEL_SENT: _S.CANCELLING, _I.CANCEL_RECEIVED: _S.ENDED},
    _S.CANCELLING: {_I.RING: _S.CANCELLING, _I.ANSWER: _S.ESTABLISHED, _I.FAIL: _S.ENDED},
    _S.ESTABLISHED: {_I.ANSWER: _S.ESTABLISHED, _I.REINVITE: _S.ESTABLISHED, _I.BYE: _S.ENDED,
                     _I.FAIL: _S.ENDED},
    _S.ENDED: {_I.ANSWER: _S.ENDED, _I.BYE: _S.ENDED},
}  # fmt: skip


@dataclass(slots=True)
class Call:
    call_id: str
    incoming: bool
    invite: SipRequest
    invite_tx: str
    peer: Addr  # where the INVITE came from / went to
    local_tag: str
    state: CallState
    dialog: Dialog | None = None
    local_sdp: SessionDescription | None = None
    retransmit: Retransmit2xx | None = None
    reinvite_tx: str | None = None  # our pending re-INVITE (client) or theirs (server)
    reinvite_request: SipRequest | None = None
    last_ack: SipRequest | None = None
    cancel_pending: bool = False  # cancel() called before any provisional response
    confirmed: bool = False  # the ACK for our 2xx arrived
    credentials: tuple[str, str] | None = None  # (username, password) for a digest challenge to our INVITE
    auth_tries: int = 0  # INVITEs sent again with an answer to a challenge
    notes: dict[str, str] = field(default_factory=dict)

    def fire(self, event: CallInput) -> CallState:
        new = CALL_TRANSITIONS[self.state].get(event)
        if new is None:
            raise IllegalTransition("call", self.state, event)
        if new is not self.state:
            log.debug("call %s: %s -> %s on %s", self.call_id, self.state.name, new.name, event.name)
        self.state = new
        return new


@dataclass(frozen=True, slots=True)
class IncomingCall:
    call_id: str
    from_: NameAddr
    to: NameAddr
    request_uri: SipUri
    sdp_offer: SessionDescription | None
    source_addr: Addr
    custom_headers: tuple[tuple[str, str], ...] = ()  # the INVITE's X- headers and User-to-User, in order


@dataclass(frozen=True, slots=True)
class CallRinging:
    call_id: str
    status: int
    sdp: SessionDescription | None  # early media, if the 18x carried SDP


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Our outgoing INVITE got a 2xx (we have sent the ACK)."""

    call_id: str
    sdp_answer: SessionDescription | None


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK for the 2xx we sent to an incoming INVITE arrived."""

    call_id: str
    sdp: SessionDescription | None  # an answer carried in the ACK (offer-less INVITE), if any


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Our outgoing INVITE ended without a call: 3xx-6xx, or 408 when Timer B fired."""

    call_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """An established call ended: ``by`` is "remote" (BYE received), "local" (hangup) or "timeout"."""

    call_id: str
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """An unanswered call was cancelled: by the caller (incoming) or by us (outgoing, after the 487)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class ReInviteReceived:
    """The peer sent a re-INVITE: answer with ``answer(call_id, sdp, now)`` or ``reject(...)``."""

    call_id: str
    new_sdp: SessionDescription | None


@dataclass(frozen=True, slots=True)
class ReInviteAnswered:
    call_id: str
    sdp_answer: SessionDescription | None


@dataclass(frozen=True, slots=True)
class ReInviteFailed:
    call_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class OptionsPing:
    """An OPTIONS request, already answered with 200."""

    source_addr: Addr
    request_uri: SipUri


@dataclass(frozen=True, slots=True)
class ReferProgress:
    """How our REFER fares: ``accepted`` (a 2xx to it), then the NOTIFYs' sipfrag status (``notified``: 100
    while the transfer target is tried, its final status at the end), or ``failed`` with the REFER's own
    final status (or 408 when it went unanswered)."""

    call_id: str
    phase: str  # accepted | notified | failed
    status: int


# What the endpoint reports: its calls' events, and (not a call's) a registration's change.
CallEvent = (
    IncomingCall | CallRinging | CallAnswered | CallConfirmed | CallFailed | CallEnded | CallCancelled
    | ReInviteReceived | ReInviteAnswered | ReInviteFailed | OptionsPing | RegistrationChanged | ReferProgress
)  # fmt: skip
