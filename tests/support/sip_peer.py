"""A scripted SIP peer on a real UDP socket: it writes exactly the requests a test wants (hostile ones
included) and reads what the node answers, with none of a real phone's forgiveness."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from callroom.errors import SipParseError
from callroom.sip.message import SipRequest, SipResponse, parse_message

Addr = tuple[str, int]


def audio_sdp(port: int, host: str = "127.0.0.1", codecs: str = "0 101", direction: str = "sendrecv",
              addrtype: str = "IP4") -> bytes:  # fmt: skip
    """An audio SDP offer or answer (PCMU and telephone-event unless told otherwise)."""
    maps = {"0": "a=rtpmap:0 PCMU/8000", "8": "a=rtpmap:8 PCMA/8000", "18": "a=rtpmap:18 G729/8000",
            "101": "a=rtpmap:101 telephone-event/8000"}  # fmt: skip
    lines = ["v=0", f"o=peer 1 1 IN {addrtype} {host}", "s=-", f"c=IN {addrtype} {host}", "t=0 0",
             f"m=audio {port} RTP/AVP {codecs}", *(maps[c] for c in codecs.split() if c in maps), f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass
class Dialog:
    """What the peer needs to send ACK, BYE and re-INVITEs in a call it placed."""

    call_id: str
    from_tag: str
    to: str  # the To header of the 2xx, with the node's tag
    request_uri: str
    cseq: int = 1
    answer: SipResponse | None = None


@dataclass
class SipPeer:
    """One UDP socket on 127.0.0.1; everything received is kept in ``log``."""

    node: Addr
    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    log: list[SipRequest | SipResponse] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.addr: Addr = self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.node)

    def receive(self, timeout: float) -> SipRequest | SipResponse | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        try:
            msg = parse_message(data)
        except SipParseError:
            return None
        self.log.append(msg)
        return msg

    def wait_for(self, wanted: Callable[[SipRequest | SipResponse], bool], timeout: float = 10.0,
                 ) -> SipRequest | SipResponse:  # fmt: skip
        """The first message (already received or arriving within ``timeout``) that ``wanted`` accepts."""
        for msg in self.log:
            if wanted(msg):
                return msg
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(left)
            if got is not None and wanted(got):
                return got
        raise AssertionError(f"nothing wanted arrived in {timeout} s; got {[_first(m) for m in self.log]}")

    def response(self, call_id: str, status: int | None = None, final: bool = True, timeout: float = 10.0,
                 method: str = "INVITE") -> SipResponse:  # fmt: skip
        def wanted(m: SipRequest | SipResponse) -> bool:
            return (isinstance(m, SipResponse) and m.call_id == call_id and m.cseq.method == method
                    and (status is None or m.status == status) and (not final or m.status >= 200))
        found = self.wait_for(wanted, timeout)
        assert isinstance(found, SipResponse)
        return found

    def request(self, call_id: str, method: str, timeout: float = 10.0) -> SipRequest:
        found = self.wait_for(lambda m: isinstance(m, SipRequest) and m.call_id == call_id and m.method == method,
                              timeout)
        assert isinstance(found, SipRequest)
        return found

    # -- what the peer sends ---------------------------------------------------------------------------

    def invite(self, user: str, sdp: bytes | None, *, via_params: str = "", contact_host: str | None = None,
               call_id: str | None = None, extra: str = "") -> Dialog:  # fmt: skip
        call_id = call_id or f"{secrets.token_hex(8)}@peer"
        tag = secrets.token_hex(4)
        uri = f"sip:{user}@{self.node[0]}:{self.node[1]}"
        contact = f"<sip:peer@{contact_host or self.addr[0]}:{self.addr[1]}>"
        body = sdp or b""
        head = (f"INVITE {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.addr[0]}:{self.addr[1]};branch=z9hG4bK{secrets.token_hex(6)}{via_params}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:peer@{self.addr[0]}>;tag={tag}\r\nTo: <{uri}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\n{extra}"
                + ("Content-Type: application/sdp\r\n" if body else "")
                + f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        self.send(head.encode() + body)
        return Dialog(call_id, tag, f"<{uri}>", uri)

    def in_dialog(self, dialog: Dialog, method: str, body: bytes = b"", cseq: int | None = None) -> None:
        """ACK (with ``cseq`` of the INVITE), BYE or a re-INVITE within the call."""
        if cseq is None:
            dialog.cseq += 1
            cseq = dialog.cseq
        head = (f"{method} {dialog.request_uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.addr[0]}:{self.addr[1]};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:peer@{self.addr[0]}>;tag={dialog.from_tag}\r\nTo: {dialog.to}\r\n"
                f"Call-ID: {dialog.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:peer@{self.addr[0]}:{self.addr[1]}>\r\n"
                + ("Content-Type: application/sdp\r\n" if body else "")
                + f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        self.send(head.encode() + body)

    def answered(self, dialog: Dialog, timeout: float = 10.0) -> SipResponse:
        """Wait for the 200 to our INVITE and remember its To tag (no ACK sent: the test decides)."""
        ok = self.response(dialog.call_id, 200, timeout=timeout)
        dialog.to = ok.headers.get("To") or dialog.to
        dialog.answer = ok
        return ok

    def reply(self, request: SipRequest, status: int, reason: str = "OK") -> None:
        """Answer a request from the node (a BYE, say) with its own Via, From, To, Call-ID and CSeq."""
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in request.headers.get_all("Via")]
        for name in ("From", "To", "Call-ID", "CSeq"):
            lines.append(f"{name}: {request.headers.get(name)}")
        self.send(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())


def _first(msg: SipRequest | SipResponse) -> str:
    return f"{msg.status}" if isinstance(msg, SipResponse) else msg.method


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` holds (Linux)."""
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))
