"""Every exception callroom raises on purpose, in one place.

    CallroomError
    ├── ApiError                      -- becomes a Telnyx error body at the HTTP boundary
    │   ├── AuthenticationFailed      401 / 10009
    │   ├── Forbidden                 403 / 10010 (a public recording link tampered with or expired)
    │   ├── RateLimited               429 / 10011
    │   ├── NotFound                  404 (resource-specific codes, e.g. 90058 conference)
    │   ├── ValidationFailed          422 (one or more field errors with a JSON pointer)
    │   ├── BodyTooLarge              413 / 90109 (a request body over its route's limit, api/limits.py)
    │   ├── RangeNotSatisfiable       416 / 90118 (a download's Range past the file's end, api/ranges.py)
    │   ├── CommandRejected           422 (a well-formed command the current state refuses:
    │   │                                 call ended 90018, conference ended 90019, queue full 90036, ...)
    │   ├── CommandNotSupported       501 / 90117 (a Telnyx command callroom does not carry out)
    │   ├── NodeUnavailable           503 / 90113 (a cluster's node that did not take a command's media)
    │   ├── Overloaded                503 / 90115 (the node is past one of its admission limits: a new call
    │   │                                 is refused at once, with Retry-After; callroom/admission.py)
    │   └── Draining                  503 / 90116 (a node that is stopping takes no new call)
    ├── IllegalTransition             a state machine was asked for a move its table does not allow
    ├── AddressRefused                a URL's host is (or resolves to) an address the node's outbound
    │                                 policy refuses (callroom/outbound.py): webhooks and media URLs
    ├── ProtocolError                 a wire message (SIP, SDP, RTP, RFC 4733) could not be parsed
    │   ├── SipParseError
    │   ├── SdpParseError
    │   ├── RtpParseError
    │   └── SrtpNotAcceptable         SRTP asked for and not agreed (SDES, RFC 4568): the INVITE gets 488
    ├── MediaError                    media that cannot be fetched, decoded or synthesised
    ├── StoreError                    persistence failures (migration missing, database unreachable)
    ├── StartupError                  a node that cannot start: a port it cannot bind, a tool it needs
    │                                 missing, its media process not ready (said in one line, exit 1)
    └── ConfigError                   a configuration file, option or environment variable that is wrong

Lower layers raise their own class; the layer above translates with ``raise X(...) from exc`` where the
meaning changes (for instance an ``IllegalTransition`` of a call leg becomes ``CommandRejected(90018)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class CallroomError(Exception):
    """Base of every error callroom raises deliberately."""


@dataclass(frozen=True, slots=True)
class ErrorItem:
    """One entry of a Telnyx ``errors[]`` array."""

    code: str
    title: str
    detail: str = ""
    pointer: str | None = None
    parameter: str | None = None  # a query parameter, for errors about the query string
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "title": self.title}
        if self.detail:
            out["detail"] = self.detail
        if self.pointer is not None:
            out["source"] = {"pointer": self.pointer}
        elif self.parameter is not None:
            out["source"] = {"parameter": self.parameter}
        if self.meta:
            out["meta"] = self.meta
        return out


class ApiError(CallroomError):
    """An error the API reports to the client as ``{"errors": [...]}`` with ``status``."""

    status: int = 400

    def __init__(self, *items: ErrorItem, status: int | None = None) -> None:
        if not items:
            raise ValueError("an ApiError needs at least one error item")
        self.items: tuple[ErrorItem, ...] = items
        if status is not None:
            self.status = status
        super().__init__("; ".join(f"{i.code} {i.title}: {i.detail}" for i in items))

    def body(self) -> dict[str, Any]:
        return {"errors": [i.to_json() for i in self.items]}


class AuthenticationFailed(ApiError):
    status = 401

    def __init__(self, detail: str = "The API key is missing, invalid or revoked.") -> None:
        super().__init__(ErrorItem("10009", "Authentication failed", detail))


class Forbidden(ApiError):
    status = 403

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorItem("10010", "Authorization failed", detail))


class RateLimited(ApiError):
    status = 429

    def __init__(self, retry_after: float, limit: int = 0) -> None:
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(ErrorItem("10011", "Too many requests", "Slow down and retry later."))


class NotFound(ApiError):
    status = 404

    def __init__(self, detail: str, code: str = "10005", title: str = "Resource not found") -> None:
        super().__init__(ErrorItem(code, title, detail))


class ValidationFailed(ApiError):
    status = 422

    @classmethod
    def field(cls, pointer: str, detail: str, code: str = "10015", title: str = "Invalid value") -> ValidationFailed:
        return cls(ErrorItem(code, title, detail, pointer=pointer))


class BodyTooLarge(ApiError):
    """A request body over its route's limit: answered without reading the rest, and the connection closed."""

    status = 413

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(ErrorItem("90109", "Request body too large", f"The body may have at most {limit:,} bytes."))


class RangeNotSatisfiable(ApiError):
    """A download's ``Range`` that selects no byte of the file: answered with ``Content-Range: bytes */size``."""

    status = 416

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(ErrorItem("90118", "Range not satisfiable",
                                   f"The range asked for selects no byte of this {size}-byte file."))


class CommandRejected(ApiError):
    """A valid request that the current state of the call, conference or queue refuses."""

    status = 422

    def __init__(self, code: str, title: str, detail: str, pointer: str | None = None) -> None:
        super().__init__(ErrorItem(code, title, detail, pointer=pointer))


class CommandNotSupported(ApiError):
    """A Telnyx command callroom does not carry out (``api/unsupported.py`` lists them); nothing changed.
    501, and the HTTP layer adds ``x-should-retry: false`` so that Telnyx's SDKs do not send it again."""

    status = 501

    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(ErrorItem(
            "90117", "Command not supported",
            f"callroom does not carry out Telnyx's {command!r} command; nothing was changed.",
        ))  # fmt: skip


class NodeUnavailable(ApiError):
    """In a cluster: the node carrying a call or conference the command acts on did not take its media
    instructions in time (stopped, dead, or cut off); the command was rolled back, nothing changed."""

    status = 503

    def __init__(self, node_id: str, why: str) -> None:
        self.node_id = node_id
        super().__init__(ErrorItem("90113", "Node unavailable",
                                   f"The node carrying this call or conference ({node_id}) did not answer: {why}. "
                                   "Nothing was changed; retry shortly."))


class Draining(ApiError):
    """The node is draining (stopping, or asked to by an operator): it takes no new call while the calls it
    carries finish. Another node of the cluster takes it; a node on its own takes it once restarted."""

    status = 503

    def __init__(self, node_id: str) -> None:
        super().__init__(ErrorItem("90116", "Node draining",
                                   f"This node ({node_id}) is stopping and takes no new calls; "
                                   "send it to another node, or retry once it has restarted."))


class Overloaded(ApiError):
    """The node is past one of its limits (calls up, new calls per second, media tick lateness, calls in
    set-up): a new call is refused at once, nothing was created. ``reason`` names the limit."""

    status = 503

    def __init__(self, reason: str, detail: str, retry_after: int) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(ErrorItem("90115", "Node overloaded",
                                   f"The node takes no new call now: {detail}. Retry in {retry_after} s "
                                   "or on another node."))


class IllegalTransition(CallroomError):
    """A state machine received an event its transition table has no entry for."""

    def __init__(self, machine: str, state: object, event: object) -> None:
        self.machine = machine
        self.state = state
        self.event = event
        super().__init__(f"{machine}: no transition from {state!r} on {event!r}")


class AddressRefused(CallroomError):
    """The node will not connect to ``host``: it is, or resolves to, ``addresses`` that are not public and
    that no allowed network holds. The message (with the addresses) is for the node's log; an application is
    told less (``outbound.REFUSED_WHY``): what a name resolves to inside the node's network is not its business.
    """

    def __init__(self, host: str, addresses: list[str]) -> None:
        self.host = host
        self.addresses = addresses
        super().__init__(f"{host} is or resolves to {', '.join(addresses)}: not a public address, and not allowed")


class ProtocolError(CallroomError):
    """A wire message could not be parsed or violates its protocol."""


class SipParseError(ProtocolError):
    """A SIP message that does not parse; ``status`` is the response a request gets for it (400 unless a
    limit says otherwise: 513 for a message too large)."""

    status = 400


class SipTooLarge(SipParseError):
    """A SIP message over the size a datagram may have, or with more header values than we read."""

    status = 513


class SdpParseError(ProtocolError):
    pass


class SdpTooLarge(SdpParseError):
    """An SDP body with more lines or media sections than we read (the INVITE gets 488)."""


class RtpParseError(ProtocolError):
    pass


class SrtpNotAcceptable(ProtocolError):
    """An offer or answer whose media security we cannot agree to: ``RTP/SAVP`` where we speak plain RTP (or
    not over TLS), plain RTP where SRTP is required, or no ``a=crypto`` line we can use. The INVITE gets 488
    Not Acceptable Here, as a PBX answers it."""


class StreamMessageError(ProtocolError):
    """A media stream's WebSocket message that is not one of Telnyx's (``media/stream_wire.py``)."""


class MediaError(CallroomError):
    """Media that cannot be fetched, decoded, synthesised or written."""


class StoreError(CallroomError):
    """The store cannot do what was asked (unreachable database, schema behind, ...)."""


class Conflict(StoreError):
    """A write that a unique constraint refused (another transaction got there first). ``constraint`` names
    it, as the schema does (``store/schema.py``), so that a layer above can say what it means."""

    def __init__(self, constraint: str | None, detail: str) -> None:
        super().__init__(detail)
        self.constraint = constraint


NUL_TEXT = "text must not contain the NUL character (U+0000)"


class UnstorableText(StoreError):
    """Text the database cannot hold: PostgreSQL's text and json have no NUL character (U+0000). The API
    answers 422 (and the transaction changed nothing); SQLite stores such text as given."""


# MediaError subclasses raised by callroom.audio:
#
#   MediaError
#   ├── NotAudio                  bytes that are no audio at all (an HTML page, text, random bytes)
#   ├── EmptyMedia                no bytes, or a file without a single sample
#   ├── UnsupportedMediaFormat    audio, but a container or codec we do not decode (FLAC, Ogg, MP4, ...)
#   ├── MediaTooLong              longer than the caller's limit in seconds
#   ├── MediaTooLarge             more bytes than the fetcher's limit
#   ├── InvalidMediaUrl           not an absolute http(s) URL, or a redirect to one
#   ├── MediaUnreachable          connection failed, timed out, refused by the node's address policy
#   │                             (from AddressRefused), or too many redirects
#   ├── MediaHttpError            the server answered with a non-2xx status (``status``)
#   ├── SpeechRequestInvalid      a text-to-speech request the API should answer with 422 (``field``)
#   │   ├── UnknownVoice
#   │   ├── UnsupportedLanguage
#   │   └── InvalidSpeechPayload  empty, over 3,000 characters, or SSML that does not parse
#   └── SynthesisFailed           the speech engine is missing, crashed or timed out


class NotAudio(MediaError):
    pass


class EmptyMedia(MediaError):
    pass


class UnsupportedMediaFormat(MediaError):
    pass


class MediaTooLong(MediaError):
    pass


class MediaTooLarge(MediaError):
    pass


class InvalidMediaUrl(MediaError):
    pass


class MediaUnreachable(MediaError):
    pass


class MediaHttpError(MediaError):
    def __init__(self, url: str, status: int) -> None:
        self.url = url
        self.status = status
        super().__init__(f"{url} answered HTTP {status}")


class SpeechRequestInvalid(MediaError):
    """``field`` names the request field at fault: ``voice``, ``language`` or ``payload``."""

    field: str = "payload"


class UnknownVoice(SpeechRequestInvalid):
    field = "voice"


class UnsupportedLanguage(SpeechRequestInvalid):
    field = "language"


class InvalidSpeechPayload(SpeechRequestInvalid):
    field = "payload"


class SynthesisFailed(MediaError):
    pass


class StartupError(CallroomError):
    """A node cannot start (a port taken, a tool missing, its media process gone): the message is the one
    line ``callroom serve`` prints before it exits."""


class ConfigError(CallroomError):
    """A configuration file, option or environment variable that cannot be used (an unknown key, a value
    of the wrong type): the message names it."""
