"""SIP messages (RFC 3261 §7, §20, §25): parse from bytes, format back to bytes.

Strict where a mistake would mislead the transaction layer (start line, Via, CSeq, From/To, Call-ID,
Content-Length), tolerant where the RFC asks for it: header names are case-insensitive and may use their
compact form, folded lines are joined, list headers carrying several comma-separated values are split
(commas inside quotes or angle brackets do not count), leading CRLFs are skipped and bare LF line ends are
accepted. Every malformed input raises :class:`SipParseError` with a message naming what was wrong.

``bytes(msg)`` writes full header names, one value per line, and a Content-Length that matches the body.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from callroom.errors import SipParseError, SipTooLarge
from callroom.sip.fields import TOKEN, CSeq, NameAddr, SipUri, Via, format_host, split_commas

__all__ = [
    "CSeq", "Headers", "NameAddr", "SipMessage", "SipRequest", "SipResponse", "SipUri", "Via", "format_host",
    "parse_message", "reason_phrase", "response_to", "salvage_request", "split_commas",
]  # fmt: skip

SIP_VERSION = "SIP/2.0"
BRANCH_MAGIC = "z9hG4bK"

COMPACT = {
    "i": "Call-ID", "f": "From", "t": "To", "v": "Via", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "k": "Supported", "e": "Content-Encoding", "s": "Subject", "o": "Event",
    "r": "Refer-To", "u": "Allow-Events", "b": "Referred-By", "x": "Session-Expires",
}  # fmt: skip
_CANONICAL = {
    n.lower(): n
    for n in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
        "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event",
        "Expires", "From", "In-Reply-To", "Max-Forwards", "Min-Expires", "MIME-Version", "Organization",
        "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "Record-Route",
        "Refer-To", "Referred-By", "Reply-To", "Require", "Retry-After", "Route", "Server",
        "Session-Expires", "Subject", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
        "Warning", "WWW-Authenticate",
    )
}  # fmt: skip
# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1): several values may share a line.
LIST_HEADERS = frozenset(
    n.lower()
    for n in (
        "Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require", "Proxy-Require",
        "Unsupported", "Accept", "Accept-Encoding", "Accept-Language", "Content-Encoding",
        "Content-Language", "Allow-Events", "In-Reply-To", "Alert-Info", "Call-Info", "Error-Info",
    )
)  # fmt: skip
# What one datagram may make us read (RFC 3261 sets no bound; these keep the work per datagram small, since
# SIP is parsed on the loop that runs the 20 ms audio tick). A real INVITE is 1-4 kB with 10-30 header values.
MAX_MESSAGE = 16_384  # bytes; more gets 513 Message Too Large
MAX_HEADER_VALUES = 128  # header values once comma lists are split; more gets 513 too


def canonical_name(name: str) -> str:
    low = name.lower()
    if low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low, name)


class Headers:
    """Ordered header fields; names are matched case-insensitively and compact forms are expanded."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def get(self, name: str) -> str | None:
        low = canonical_name(name).lower()
        return next((v for n, v in self._items if n.lower() == low), None)

    def get_all(self, name: str) -> list[str]:
        low = canonical_name(name).lower()
        return [v for n, v in self._items if n.lower() == low]

    def remove(self, name: str) -> None:
        low = canonical_name(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != low]

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``, keeping the position of the first one."""
        low = canonical_name(name).lower()
        idx = next((i for i, (n, _) in enumerate(self._items) if n.lower() == low), len(self._items))
        self.remove(name)
        self._items.insert(min(idx, len(self._items)), (canonical_name(name), value))

    def copy(self) -> Headers:
        return Headers(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class _MessageBase:
    """Typed views on the headers that every SIP message carries."""

    __slots__ = ()
    headers: Headers
    body: bytes

    def _one(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self._one("Call-ID").strip()

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self._one("CSeq"))

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self._one("From"))

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self._one("To"))

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        return Via.parse(self._one("Via"))

    @property
    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.get_all("Contact") if v.strip() != "*"]

    @property
    def record_route(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.get_all("Record-Route")]

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";")[0].strip().lower() if value is not None else None

    def _head_bytes(self, start_line: str) -> bytes:
        lines = [start_line]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _validate(self) -> None:
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            self._one(name)
        if not self.call_id or any(c.isspace() for c in self.call_id):
            raise SipParseError(f"bad Call-ID {self.call_id!r}")
        for check in (lambda: self.vias, lambda: self.from_, lambda: self.to, lambda: self.contacts,
                      lambda: self.record_route):  # fmt: skip
            check()  # each raises SipParseError when its header is malformed
        mf = self.headers.get("Max-Forwards")
        if mf is not None and not (mf.strip().isdigit() and mf.strip().isascii() and int(mf) <= 255):
            raise SipParseError(f"bad Max-Forwards {mf!r}")


@dataclass(slots=True, eq=True)
class SipRequest(_MessageBase):
    method: str
    uri: SipUri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> SipRequest:
        msg = parse_message(data)
        if not isinstance(msg, SipRequest):
            raise SipParseError("expected a request, got a response")
        return msg

    def __bytes__(self) -> bytes:
        return self._head_bytes(f"{self.method} {self.uri} {SIP_VERSION}") + self.body

    @property
    def branch(self) -> str | None:
        return self.top_via.branch


@dataclass(slots=True, eq=True)
class SipResponse(_MessageBase):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> SipResponse:
        msg = parse_message(data)
        if not isinstance(msg, SipResponse):
            raise SipParseError("expected a response, got a request")
        return msg

    def __bytes__(self) -> bytes:
        return self._head_bytes(f"{SIP_VERSION} {self.status} {self.reason}") + self.body


SipMessage = SipRequest | SipResponse


# List headers whose value may be empty altogether (RFC 3261 §20: Accept, Accept-Encoding,
# Accept-Language, Allow, Supported, Unsupported, Require and Proxy-Require take "*(...)").
MAY_BE_EMPTY = frozenset({"accept", "accept-encoding", "accept-language", "allow", "supported", "unsupported",
                          "require", "proxy-require"})


def _split(data: bytes) -> tuple[str, Headers, bytes, int | None]:
    """Start line, headers (unfolded, lists split), raw body, declared Content-Length."""
    if len(data) > MAX_MESSAGE:
        raise SipTooLarge(f"message larger than {MAX_MESSAGE} bytes")
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    crlf, lf = data.find(b"\r\n\r\n"), data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        head, body = data[:crlf], data[crlf + 4 :]
    elif lf >= 0:
        head, body = data[:lf], data[lf + 2 :]
    else:
        raise SipParseError("no empty line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not valid UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) > MAX_HEADER_VALUES + 1:
        raise SipTooLarge(f"more than {MAX_HEADER_VALUES} header lines")
    if "\r" in text.replace("\r\n", "") or "\x00" in text:
        raise SipParseError("stray CR or NUL in headers")
    start = lines[0]
    fields: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("continuation line before any header")
            fields[-1] += " " + line.strip()
        else:
            fields.append(line)
    headers = Headers()
    for raw in fields:
        name, colon, value = raw.partition(":")
        name = name.strip()
        if not colon or not TOKEN.match(name):
            raise SipParseError(f"bad header line {raw[:60]!r}")
        value = value.strip()
        if name.lower() in LIST_HEADERS or canonical_name(name).lower() in LIST_HEADERS:
            if not value and canonical_name(name).lower() in MAY_BE_EMPTY:
                headers.add(name, value)  # RFC 3261 lets these be empty ("Supported:" from baresip)
                continue
            parts = split_commas(value)
            if len(headers) + len(parts) > MAX_HEADER_VALUES:
                raise SipTooLarge(f"more than {MAX_HEADER_VALUES} header values")
            for part in parts:
                if not part:
                    raise SipParseError(f"empty value in {name} list")
                headers.add(name, part)
        else:
            headers.add(name, value)
    lengths = headers.get_all("Content-Length")
    declared: int | None = None
    if lengths:
        if len(set(v.strip() for v in lengths)) != 1:
            raise SipParseError("conflicting Content-Length headers")
        cl = lengths[0].strip()
        if not cl.isdigit() or not cl.isascii() or len(cl) > 6:
            raise SipParseError(f"bad Content-Length {cl!r}")
        declared = int(cl)
    headers.remove("Content-Length")  # derived from the body: __bytes__ writes it
    return start, headers, body, declared


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one SIP message from a datagram."""
    start, headers, body, declared = _split(data)
    if declared is not None:
        if declared > len(body):
            raise SipParseError(f"Content-Length {declared} exceeds the {len(body)} body bytes received")
        body = body[:declared]  # RFC 3261 §18.3: octets past Content-Length are discarded
    msg: SipRequest | SipResponse
    if start.startswith(SIP_VERSION + " ") or start.upper().startswith("SIP/"):
        parts = start.split(" ", 2)
        if parts[0].upper() != SIP_VERSION:
            raise SipParseError(f"unsupported SIP version {parts[0]!r}")
        if len(parts) < 2 or not (len(parts[1]) == 3 and parts[1].isdigit() and parts[1].isascii()):
            raise SipParseError(f"bad status line {start!r}")
        status = int(parts[1])
        if not 100 <= status <= 699:
            raise SipParseError(f"status code {status} out of range")
        msg = SipResponse(status, parts[2].strip() if len(parts) > 2 else "", headers, body)
    else:
        parts = start.split(" ")
        if len(parts) != 3:
            raise SipParseError(f"bad request line {start!r}")
        method, uri_text, version = parts
        if not TOKEN.match(method):
            raise SipParseError(f"bad method {method!r}")
        if version.upper() != SIP_VERSION:
            raise SipParseError(f"unsupported SIP version {version!r}")
        msg = SipRequest(method, SipUri.parse(uri_text), headers, body)
    msg._validate()
    if isinstance(msg, SipRequest) and msg.cseq.method != msg.method:
        raise SipParseError(f"CSeq method {msg.cseq.method} does not match request method {msg.method}")
    return msg


def salvage_request(data: bytes) -> SipRequest | None:
    """Best effort on a request that failed :func:`parse_message`: enough of it to answer with an error, or
    None.

    Needs a request line with a method, and parseable Via, From, To, Call-ID and CSeq headers among the first
    header lines; the body and every other header are dropped, and of the Vias only the top one is kept (the
    response goes back to where the request came from, whatever came before). Reads at most the first
    ``MAX_MESSAGE`` bytes and ``MAX_HEADER_VALUES`` lines, so a message refused for its size costs no more.
    """
    head = data[:MAX_MESSAGE].lstrip(b"\r\n")
    for end in (b"\r\n\r\n", b"\n\n"):
        if (cut := head.find(end)) >= 0:
            head = head[:cut]
            break
    lines = head.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")[: MAX_HEADER_VALUES + 1]
    parts = lines[0].split(" ")
    if len(parts) < 2 or not TOKEN.match(parts[0]) or parts[0].upper().startswith("SIP/"):
        return None
    wanted = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}
    kept = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        canonical = canonical_name(name.strip()) if colon else ""
        if canonical.lower() not in wanted or canonical in kept:
            continue
        value = value.strip()
        if canonical == "Via":
            value = value.split(",", 1)[0]  # the top one (a comma inside its parameters just makes it fail)
        kept.add(canonical, value)
    req = SipRequest(parts[0], SipUri("invalid"), kept)
    try:
        _MessageBase._validate(req)
    except SipParseError:
        return None
    return req


def response_to(req: SipRequest, status: int, reason: str, to_tag: str | None = None,
                body: bytes = b"", extra: Iterable[tuple[str, str]] = ()) -> SipResponse:  # fmt: skip
    """A response copying Via, From, To (plus ``to_tag`` if it has none), Call-ID and CSeq (§8.2.6)."""
    headers = Headers()
    for v in req.headers.get_all("Via"):
        headers.add("Via", v)
    headers.add("From", req._one("From"))
    to = req._one("To")
    if to_tag is not None and status != 100 and req.to.tag is None:
        to = str(req.to.with_tag(to_tag))
    headers.add("To", to)
    headers.add("Call-ID", req.call_id)
    headers.add("CSeq", req._one("CSeq"))
    for name, value in extra:
        headers.add(name, value)
    return SipResponse(status, reason, headers, body)


REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 400: "Bad Request",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 415: "Unsupported Media Type",
    481: "Call/Transaction Does Not Exist", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 500: "Server Internal Error", 501: "Not Implemented",
    480: "Temporarily Unavailable", 503: "Service Unavailable", 513: "Message Too Large",
    603: "Decline",
}  # fmt: skip


def reason_phrase(status: int) -> str:
    return REASONS.get(status, "Unknown")
