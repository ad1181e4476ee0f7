"""RFC 3261 §17 transactions over UDP, sans-I/O.

Everything that moves a transaction from one state to another lives in this module: four state enums and
one transition table each (``TABLES``). An input with no entry raises :class:`IllegalTransition`; inputs
from the network that the RFC says to absorb (a retransmitted request, a stray 1xx after a final answer)
have explicit entries, so only a misbehaving transaction user can trigger the error.

Two choices worth knowing:

* An INVITE server transaction answers ``100 Trying`` immediately when the INVITE arrives rather than
  waiting 200 ms for the TU (§17.2.1 allows both). The 100 is queued before anything the TU sends, so the
  order on the wire is always 100 before 180/200.
* Transactions ending in 2xx follow RFC 6026: the INVITE client moves to ACCEPTED (Timer M) and hands 2xx
  retransmissions to the TU, which re-sends its ACK; the INVITE server moves to ACCEPTED (Timer L) and lets
  the TU retransmit the 2xx until the ACK (a separate request) arrives.

:class:`TransactionLayer` owns all transactions: feed it parsed messages with ``receive(msg, addr, now)``,
take what to send from ``datagrams_to_send()``, arm a timer for ``get_timer()``, call ``handle_timer(now)``
when it expires, and drain ``next_event()``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from enum import Enum, auto

from callroom.errors import IllegalTransition
from callroom.sip.message import Headers, SipRequest, SipResponse, reason_phrase, response_to

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0
T4 = 5.0
Addr = tuple[str, int]


class ClientInviteState(Enum):
    CALLING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    ACCEPTED = auto()
    TERMINATED = auto()


class ClientNonInviteState(Enum):
    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    TERMINATED = auto()


class ServerInviteState(Enum):
    PROCEEDING = auto()
    COMPLETED = auto()
    CONFIRMED = auto()
    ACCEPTED = auto()
    TERMINATED = auto()


class ServerNonInviteState(Enum):
    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    TERMINATED = auto()


class Input(Enum):
    RECV_1XX = auto()
    RECV_2XX = auto()
    RECV_FINAL = auto()  # 300-699 (for non-INVITE clients: any final)
    RECV_REQUEST = auto()  # a retransmission of the transaction's request
    RECV_ACK = auto()
    SEND_1XX = auto()
    SEND_2XX = auto()
    SEND_FINAL = auto()  # 300-699 (for non-INVITE servers: any final)
    TIMER_A = auto()
    TIMER_B = auto()
    TIMER_D = auto()
    TIMER_E = auto()
    TIMER_F = auto()
    TIMER_G = auto()
    TIMER_H = auto()
    TIMER_I = auto()
    TIMER_J = auto()
    TIMER_K = auto()
    TIMER_L = auto()
    TIMER_M = auto()


_CI, _CN, _SI, _SN = ClientInviteState, ClientNonInviteState, ServerInviteState, ServerNonInviteState
_I = Input
State = ClientInviteState | ClientNonInviteState | ServerInviteState | ServerNonInviteState
Table = dict[State, dict[Input, State]]

CLIENT_INVITE: Table = {
    _CI.CALLING: {_I.TIMER_A: _CI.CALLING, _I.TIMER_B: _CI.TERMINATED, _I.RECV_1XX: _CI.PROCEEDING,
                  _I.RECV_2XX: _CI.ACCEPTED, _I.RECV_FINAL: _CI.COMPLETED},
    _CI.PROCEEDING: {_I.RECV_1XX: _CI.PROCEEDING, _I.RECV_2XX: _CI.ACCEPTED, _I.RECV_FINAL: _CI.COMPLETED},
    _CI.COMPLETED: {_I.RECV_1XX: _CI.COMPLETED, _I.RECV_FINAL: _CI.COMPLETED, _I.TIMER_D: _CI.TERMINATED},
    _CI.ACCEPTED: {_I.RECV_1XX: _CI.ACCEPTED, _I.RECV_2XX: _CI.ACCEPTED, _I.RECV_FINAL: _CI.ACCEPTED,
                   _I.TIMER_M: _CI.TERMINATED},
    _CI.TERMINATED: {},
}  # fmt: skip
CLIENT_NON_INVITE: Table = {
    _CN.TRYING: {_I.TIMER_E: _CN.TRYING, _I.TIMER_F: _CN.TERMINATED, _I.RECV_1XX: _CN.PROCEEDING,
                 _I.RECV_2XX: _CN.COMPLETED, _I.RECV_FINAL: _CN.COMPLETED},
    _CN.PROCEEDING: {_I.TIMER_E: _CN.PROCEEDING, _I.TIMER_F: _CN.TERMINATED, _I.RECV_1XX: _CN.PROCEEDING,
                     _I.RECV_2XX: _CN.COMPLETED, _I.RECV_FINAL: _CN.COMPLETED},
    _CN.COMPLETED: {_I.RECV_1XX: _CN.COMPLETED, _I.RECV_2XX: _CN.COMPLETED, _I.RECV_FINAL: _CN.COMPLETED,
                    _I.TIMER_K: _CN.TERMINATED},
    _CN.TERMINATED: {},
}  # fmt: skip
SERVER_INVITE: Table = {
    _SI.PROCEEDING: {_I.RECV_REQUEST: _SI.PROCEEDING, _I.SEND_1XX: _SI.PROCEEDING, _I.SEND_2XX: _SI.ACCEPTED,
                     _I.SEND_FINAL: _SI.COMPLETED},
    _SI.COMPLETED: {_I.RECV_REQUEST: _SI.COMPLETED, _I.TIMER_G: _SI.COMPLETED, _I.TIMER_H: _SI.TERMINATED,
                    _I.RECV_ACK: _SI.CONFIRMED},
    _SI.CONFIRMED: {_I.RECV_REQUEST: _SI.CONFIRMED, _I.RECV_ACK: _SI.CONFIRMED, _I.TIMER_I: _SI.TERMINATED},
    _SI.ACCEPTED: {_I.RECV_REQUEST: _SI.ACCEPTED, _I.RECV_ACK: _SI.ACCEPTED, _I.SEND_2XX: _SI.ACCEPTED,
                   _I.TIMER_L: _SI.TERMINATED},
    _SI.TERMINATED: {},
}  # fmt: skip
SERVER_NON_INVITE: Table = {
    _SN.TRYING: {_I.RECV_REQUEST: _SN.TRYING, _I.SEND_1XX: _SN.PROCEEDING, _I.SEND_2XX: _SN.COMPLETED,
                 _I.SEND_FINAL: _SN.COMPLETED},
    _SN.PROCEEDING: {_I.RECV_REQUEST: _SN.PROCEEDING, _I.SEND_1XX: _SN.PROCEEDING,
                     _I.SEND_2XX: _SN.COMPLETED, _I.SEND_FINAL: _SN.COMPLETED},
    _SN.COMPLETED: {_I.RECV_REQUEST: _SN.COMPLETED, _I.TIMER_J: _SN.TERMINATED},
    _SN.TERMINATED: {},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU. ``transaction_id`` is None for an ACK to a 2xx (it has no transaction);
    for a CANCEL, ``cancels`` names the INVITE server transaction it matched."""

    request: SipRequest
    source: Addr
    transaction_id: str | None
    cancels: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU; ``transaction_id`` is None for a stray 2xx no transaction matched."""

    response: SipResponse
    source: Addr
    transaction_id: str | None


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B or F (no final response), or Timer H (no ACK for our non-2xx final response)."""

    transaction_id: str
    request: SipRequest
    timer: str


TransactionEvent = RequestReceived | ResponseReceived | TransactionTimeout


def _response_input(status: int) -> Input:
    return _I.RECV_1XX if status < 200 else _I.RECV_2XX if status < 300 else _I.RECV_FINAL


def _send_input(status: int) -> Input:
    return _I.SEND_1XX if status < 200 else _I.SEND_2XX if status < 300 else _I.SEND_FINAL


@dataclass(slots=True)
class Transaction:
    id: str
    machine: str
    table: Table
    state: State
    request: SipRequest
    peer: Addr
    timers: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, float] = field(default_factory=dict)
    last_response: SipResponse | None = None
    ack: SipRequest | None = None
    reliable: bool = False  # over a stream (TCP, TLS): nothing retransmitted, nothing waited for

    def fire(self, event: Input) -> State:
        new = self.table[self.state].get(event)
        if new is None:
            raise IllegalTransition(self.machine, self.state, event)
        if new is not self.state:
            log.debug("%s %s: %s -> %s on %s", self.machine, self.id, self.state.name, new.name, event.name)
        self.state = new
        return new

    @property
    def terminated(self) -> bool:
        return self.state.name == "TERMINATED"


def client_key(branch: str, method: str) -> str:
    return f"c|{branch}|{method}"


def _server_key(req: SipRequest, method: str) -> str:
    via = req.top_via
    branch = via.branch or f"{req.call_id}|{req.from_.tag}|{req.cseq.seq}"
    return f"s|{branch}|{via.host}:{via.port or 5060}|{method}"


class TransactionLayer:
    """All client and server transactions of one endpoint, driven by the caller's clock."""

    def __init__(self, *, reliable: bool = False, auto_trying: bool = True) -> None:
        self.reliable = reliable
        # Peers reached over a stream connection (TCP, TLS), told by the transport adapter: their transactions
        # are reliable ones, and responses to their requests go back over the connection they came on.
        self.streams: set[Addr] = set()
        self.auto_trying = auto_trying
        self.transactions: dict[str, Transaction] = {}
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[TransactionEvent] = deque()
        # Every running timer as (deadline, order, transaction id, timer name); ``_tracked`` is the deadline
        # last pushed per timer, so an unchanged timer is not pushed again.
        self._heap: list[tuple[float, int, str, str]] = []
        self._tracked: dict[tuple[str, str], float] = {}
        self._order = itertools.count()

    # ---- outputs -------------------------------------------------------------------------------
    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> TransactionEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            at, _, tx_id, name = heap[0]
            tx = self.transactions.get(tx_id)
            if tx is not None and tx.timers.get(name) == at:
                return at
            self._pop()  # a timer since stopped, changed or fired, or of a transaction gone
        return None

    def _pop(self) -> tuple[float, str, str]:
        at, _, tx_id, name = heapq.heappop(self._heap)
        if self._tracked.get((tx_id, name)) == at:
            del self._tracked[tx_id, name]
        return at, tx_id, name

    def state_of(self, transaction_id: str) -> State | None:
        tx = self.transactions.get(transaction_id)
        return tx.state if tx is not None else None

    def send_stateless(self, message: SipRequest | SipResponse, addr: Addr) -> None:
        """Send outside any transaction: an ACK for a 2xx, or a 2xx retransmitted by the TU."""
        self._out.append((bytes(message), addr))

    def _wait(self, seconds: float, tx: Transaction) -> float:
        return 0.0 if tx.reliable else seconds

    # ---- client side ---------------------------------------------------------------------------
    def send_request(self, request: SipRequest, addr: Addr, now: float) -> str:
        """Start a client transaction for ``request`` (not ACK) sent to ``addr``; returns its id."""
        if request.method == "ACK":
            raise IllegalTransition("client transaction", None, "ACK (use send_stateless)")
        branch = request.branch
        if branch is None:
            raise ValueError("a request sent by us needs a Via branch")
        key = client_key(branch, request.method)
        reliable = self.reliable or addr in self.streams
        if request.method == "INVITE":
            tx = Transaction(key, "invite client", CLIENT_INVITE, _CI.CALLING, request, addr, reliable=reliable)
            if not reliable:
                tx.timers["A"], tx.intervals["A"] = now + T1, T1
            tx.timers["B"] = now + 64 * T1
        else:
            tx = Transaction(key, "non-invite client", CLIENT_NON_INVITE, _CN.TRYING, request, addr, reliable=reliable)
            if not reliable:
                tx.timers["E"], tx.intervals["E"] = now + T1, T1
            tx.timers["F"] = now + 64 * T1
        self.transactions[key] = tx
        self._track(tx)
        self._out.append((bytes(request), addr))
        return key

    def _client_response(self, resp: SipResponse, addr: Addr, now: float) -> None:
        branch = resp.top_via.branch
        tx = self.transactions.get(client_key(branch, resp.cseq.method)) if branch else None
        if tx is None:
            if 200 <= resp.status < 300 and resp.cseq.method == "INVITE":
                self._events.append(ResponseReceived(resp, addr, None))
            return  # RFC 3261 §18.1.2: other stray responses are dropped
        before = tx.state
        state = tx.fire(_response_input(resp.status))
        if tx.machine == "invite client":
            if state is _CI.PROCEEDING or state is _CI.ACCEPTED:
                tx.timers.pop("A", None)
                tx.timers.pop("B", None)
            if state is _CI.ACCEPTED and before is not _CI.ACCEPTED:
                tx.timers["M"] = now + 64 * T1
            if state is _CI.COMPLETED:
                if tx.ack is None:
                    tx.ack = _ack_for(tx.request, resp)
                    tx.timers = {"D": now + self._wait(32.0, tx)}
                self._out.append((bytes(tx.ack), tx.peer))
            deliver = before in (_CI.CALLING, _CI.PROCEEDING) or (state is _CI.ACCEPTED and resp.status < 300)
        else:
            if state is _CN.PROCEEDING and "E" in tx.timers:
                tx.intervals["E"] = T2
            if state is _CN.COMPLETED and before is not _CN.COMPLETED:
                tx.timers = {"K": now + self._wait(T4, tx)}
            deliver = before is not _CN.COMPLETED
        if deliver:
            self._events.append(ResponseReceived(resp, addr, tx.id))
        self._reap(tx)

    # ---- server side ---------------------------------------------------------------------------
    def _server_request(self, req: SipRequest, addr: Addr, now: float) -> None:
        method = "INVITE" if req.method == "ACK" else req.method
        key = _server_key(req, method)
        tx = self.transactions.get(key)
        if req.method == "ACK":
            if tx is not None and tx.state in (_SI.COMPLETED, _SI.CONFIRMED):
                if tx.fire(_I.RECV_ACK) is _SI.CONFIRMED:
                    tx.timers = {"I": now + self._wait(T4, tx)}
                    self._reap(tx)
                return
            self._events.append(RequestReceived(req, addr, None))  # ACK for a 2xx: the TU's business
            return
        if tx is not None:  # a retransmission
            tx.fire(_I.RECV_REQUEST)
            if tx.last_response is not None and tx.state is not _SI.ACCEPTED:
                self._out.append((bytes(tx.last_response), tx.peer))
            return
        reliable = self.reliable or addr in self.streams
        peer = addr if addr in self.streams else req.top_via.response_addr()  # a stream: back on its connection
        if req.method == "INVITE":
            tx = Transaction(key, "invite server", SERVER_INVITE, _SI.PROCEEDING, req, peer, reliable=reliable)
        else:
            tx = Transaction(key, "non-invite server", SERVER_NON_INVITE, _SN.TRYING, req, peer, reliable=reliable)
        self.transactions[key] = tx
        cancels: str | None = None
        if req.method == "CANCEL":
            invite = self.transactions.get(_server_key(req, "INVITE"))
            if invite is None:
                self.send_response(key, response_to(req, 481, reason_phrase(481)), now)
                return
            cancels = invite.id
        if req.method == "INVITE" and self.auto_trying:
            self.send_response(key, response_to(req, 100, "Trying"), now)
        self._events.append(RequestReceived(req, addr, key, cancels))

    def send_response(self, transaction_id: str, response: SipResponse, now: float) -> None:
        """Send ``response`` within server transaction ``transaction_id``."""
        tx = self.transactions.get(transaction_id)
        if tx is None or not tx.machine.endswith("server"):
            raise IllegalTransition("server transaction", None, f"respond {response.status}")
        before = tx.state
        state = tx.fire(_send_input(response.status))
        tx.last_response = response
        self._out.append((bytes(response), tx.peer))
        if state is _SI.ACCEPTED and before is not _SI.ACCEPTED:
            tx.timers = {"L": now + 64 * T1}
        elif state is _SI.COMPLETED and before is not _SI.COMPLETED:
            tx.timers = {"H": now + 64 * T1}
            if not tx.reliable:
                tx.timers["G"], tx.intervals["G"] = now + T1, T1
        elif state is _SN.COMPLETED and before is not _SN.COMPLETED:
            tx.timers = {"J": now + self._wait(64 * T1, tx)}
        self._reap(tx)

    # ---- shared --------------------------------------------------------------------------------
    def receive(self, message: SipRequest | SipResponse, addr: Addr, now: float) -> None:
        """Hand a parsed message received from ``addr`` to its transaction (or create one)."""
        if isinstance(message, SipResponse):
            self._client_response(message, addr, now)
            return
        _stamp_via(message, addr)
        self._server_request(message, addr, now)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due by ``now``, earliest first (the heap holds them all: the work is the timers
        due, not the transactions alive)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, tx_id, name = self._pop()
            tx = self.transactions.get(tx_id)
            if tx is None or tx.timers.get(name) != at:
                continue
            self._fire_timer(tx, name, now)
            self._reap(tx)

    def _fire_timer(self, tx: Transaction, name: str, now: float) -> None:
        del tx.timers[name]
        tx.fire(Input[f"TIMER_{name}"])
        if name in ("A", "E", "G"):
            sent = tx.last_response if name == "G" else tx.request
            assert sent is not None
            self._out.append((bytes(sent), tx.peer))
            interval = tx.intervals[name] * 2
            if name != "A":
                interval = min(interval, T2)
            if name == "E" and tx.state is _CN.PROCEEDING:
                interval = T2
            tx.intervals[name] = interval
            tx.timers[name] = now + interval
        elif name in ("B", "F", "H"):
            tx.timers.clear()
            self._events.append(TransactionTimeout(tx.id, tx.request, name))
        else:  # D, I, J, K, L, M: the transaction ends quietly
            tx.timers.clear()

    def _reap(self, tx: Transaction) -> None:
        """After any change to ``tx``: forget it if it has ended, else put its timers on the heap (entries
        that no longer match ``tx.timers`` are skipped when they come up)."""
        if tx.terminated:
            tx.timers.clear()
            self.transactions.pop(tx.id, None)
        else:
            self._track(tx)

    def _track(self, tx: Transaction) -> None:
        for name, at in tx.timers.items():
            if (tx.id, name) not in self._tracked or self._tracked[tx.id, name] != at:
                self._tracked[tx.id, name] = at
                heapq.heappush(self._heap, (at, next(self._order), tx.id, name))


def _stamp_via(req: SipRequest, addr: Addr) -> None:
    """Set received= and rport= on the top Via from where the request really came (RFC 3261 §18.2.1,
    RFC 3581 §4), so that responses go back to the source address and never to a name or an address the
    sender wrote: a ``received`` or ``rport`` value in the request is the sender's claim and is replaced."""
    vias = req.headers.get_all("Via")
    if not vias:
        return
    top = req.top_via
    before = dict(top.params)
    if top.host != addr[0] or "received" in top.params:
        top.params["received"] = addr[0]
    if "rport" in top.params:
        top.params["rport"] = str(addr[1])
        top.params["received"] = addr[0]
    if top.params != before:
        rebuilt = Headers()
        first = True
        for name, value in req.headers:
            if name == "Via" and first:
                value, first = str(top), False
            rebuilt.add(name, value)
        req.headers = rebuilt


def _ack_for(invite: SipRequest, resp: SipResponse) -> SipRequest:
    """The ACK for a 300-699 answer to ``invite`` (RFC 3261 §17.1.1.3)."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", resp.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    return SipRequest("ACK", invite.uri, headers)
