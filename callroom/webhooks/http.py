"""A small HTTP/1.1 client for webhook requests: keep-alive connections per origin, no redirects, bounded
response head and body.

httpx costs 0.8-2.3 ms of CPU per request at the concurrency the dispatcher runs (its connection pool
serialises on locks); this client needs well under 0.2 ms, which is what makes thousands of signed
deliveries per second on one core possible. It does exactly what a webhook sender needs: one request,
read the status (and the first bytes of the body), never follow a ``Location``. A new connection goes only
to an address the node's ``AddressPolicy`` permits, the one it checked (``outbound.py``).

A receiver is any server an account names, so its response is parsed strictly (``parse_head``, the chunked
reader): whatever it sends ends in a ``Reply`` or an ``HttpError``, and no connection goes back to the pool
unless its response was read to the end as framed. h11 would parse it for us, but costs ~70 us of CPU more
per request than this whole client (~13 us), which halved the deliveries one core makes (``bench/webhooks``);
``tests/webhooks/test_http_responses.py`` holds this parser to h11's verdicts instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from callroom.outbound import UNRESTRICTED, AddressPolicy

MAX_HEAD_BYTES = 16 * 1024  # a response's head (status line and headers, and any 1xx responses before it)
MAX_IDLE_PER_ORIGIN = 128


class HttpError(Exception):
    pass


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes  # at most ``max_body`` bytes
    location: str | None


@dataclass(slots=True, frozen=True)
class Head:
    """A response's status line and the headers this client acts on."""

    status: int
    length: int | None  # Content-Length
    chunked: bool
    close: bool  # the server closes the connection after this response
    location: str | None


_TEXT = rb"[\t\x20-\x7e\x80-\xff]*"  # what a reason phrase or a field value may hold (no CR, LF, NUL, ...)
_STATUS_LINE = rb"HTTP/1\.([01]) ([0-9]{3})(?: " + _TEXT + rb")?"
_FIELD_LINE = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:" + _TEXT  # no space before the colon
_HEAD = re.compile(_STATUS_LINE + rb"\r\n(?:" + _FIELD_LINE + rb"\r\n)*\r\n")  # a whole head, checked at once
_OBS_FOLD = re.compile(rb"\r\n[ \t]+(?=[^\r])")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;" + _TEXT + rb")?\r\n")


def parse_head(head: bytes) -> Head:
    """A response head, from its status line to the empty line that ends it (``\\r\\n\\r\\n`` included).

    Strict where a mistake would misframe the body or the next response on the connection (a malformed
    status line or header line, a Content-Length that is not a number or says two things, a
    Transfer-Encoding other than chunked, both of them together): ``HttpError``. An obsolete folded
    header line continues the previous one (RFC 9112 section 5.2)."""
    match = _HEAD.fullmatch(head)
    if match is None and (b"\r\n " in head or b"\r\n\t" in head):
        status, _, fields = head.partition(b"\r\n")  # a line folded onto the status line stays refused
        head = status + b"\r\n" + _OBS_FOLD.sub(b" ", fields)
        match = _HEAD.fullmatch(head)
    if match is None or match[2] < b"100":
        lines = head[:-4].split(b"\r\n")
        if match is None and re.fullmatch(_STATUS_LINE, lines[0]):
            bad = next((line for line in lines[1:] if not re.fullmatch(_FIELD_LINE, line)), b"")
            raise HttpError(f"bad header line {bad[:80]!r}")
        raise HttpError(f"bad status line {lines[0][:80]!r}")
    length: int | None = None
    chunked = False
    close = match[1] == b"0"  # HTTP/1.0
    location: str | None = None
    for line in head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"content-length":
            for item in value.split(b","):  # "5, 5" (a list of one value) is allowed
                item = item.strip(b" \t")
                if not item.isdigit() or len(item) > 18 or (length is not None and int(item) != length):
                    raise HttpError(f"bad content-length {value.strip()[:40]!r}")
                length = int(item)
        elif name == b"transfer-encoding":
            if chunked or value.strip(b" \t").lower() != b"chunked":
                raise HttpError(f"unsupported transfer-encoding {value.strip()[:40]!r}")
            chunked = True
        elif name == b"connection":
            tokens = [t.strip(b" \t") for t in value.lower().split(b",")]
            close = b"close" in tokens or (close and b"keep-alive" not in tokens)
        elif name == b"location":
            location = value.strip(b" \t").decode("latin-1")[:2048]
    if chunked and length is not None:
        raise HttpError("both content-length and transfer-encoding")
    return Head(int(match[2]), length, chunked, close, location)


@dataclass(slots=True, frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@functools.lru_cache(maxsize=1024)  # an application's URL, parsed for each of its webhooks otherwise
def split_url(url: str) -> tuple[Origin, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"unsupported URL {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise HttpError(f"bad port in {url!r}") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port), target


def with_query(target: str, params: dict[str, str]) -> str:
    return target + ("&" if "?" in target else "?") + urlencode(params)


class _Stale(Exception):
    """A kept-alive connection ended before a byte of the response came: the server closed it meanwhile."""


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class WebhookHttp:
    """Keep-alive connections per origin; ``request`` raises ``HttpError``/``OSError`` on failure, and
    ``AddressRefused`` when ``policy`` refuses the host's address(es) (nothing is sent then).

    The caller bounds the time of a whole request (``asyncio.timeout``); a cancelled request closes its
    connection instead of returning it to the pool."""

    def __init__(self, user_agent: str = "telnyx-webhooks", ssl_context: ssl.SSLContext | None = None,
                 policy: AddressPolicy = UNRESTRICTED) -> None:
        self.user_agent = user_agent
        self.policy = policy
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Conn]] = {}
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, origin: Origin) -> _Conn:
        ctx = self._ssl_context() if origin.scheme == "https" else None
        # The addresses checked are the addresses connected to (a second lookup could answer otherwise);
        # TLS still names and verifies the host.
        addresses = await self.policy.resolve(origin.host, origin.port) if self.policy.refuse_internal else [
            origin.host]
        failure: OSError | None = None
        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    address, origin.port, ssl=ctx, limit=MAX_HEAD_BYTES, server_hostname=origin.host if ctx else None
                )
            except OSError as exc:
                failure = exc
                continue
            return _Conn(reader, writer)
        raise failure or OSError(f"{origin.host}: no address")

    def _take_idle(self, origin: Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _give_back(self, origin: Origin, conn: _Conn) -> None:
        idle = self._idle.setdefault(origin, [])
        if self._closed or len(idle) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
        else:
            idle.append(conn)

    async def request(
        self, method: str, url: str, body: bytes, headers: dict[str, str], max_body: int = 8192
    ) -> Reply:
        origin, target = split_url(url)
        head_lines = [f"{method} {target} HTTP/1.1", f"host: {origin.host_header}", f"user-agent: {self.user_agent}"]
        if method != "GET" or body:
            head_lines.append(f"content-length: {len(body)}")
        head_lines.extend(f"{k}: {v}" for k, v in headers.items())
        request = ("\r\n".join(head_lines) + "\r\n\r\n").encode("latin-1") + body
        conn = self._take_idle(origin)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, request, method, max_body)
            except _Stale:  # the server closed it meanwhile: once more, on a fresh one
                pass
        conn = await self._connect(origin)
        try:
            return await self._exchange(origin, conn, request, method, max_body)
        except _Stale as exc:
            raise HttpError("connection closed before a response") from exc

    async def _exchange(self, origin: Origin, conn: _Conn, request: bytes, method: str, max_body: int) -> Reply:
        keep = False
        try:
            conn.writer.write(request)
            head = await self._read_head(conn.reader)
            keep = not head.close
            if method == "HEAD" or head.status in (204, 304):
                body = b""
            elif head.chunked:
                body, complete = await self._read_chunked(conn.reader, max_body)
                keep = keep and complete
            elif head.length is not None:
                take = min(head.length, max_body)
                body = await conn.reader.readexactly(take)
                keep = keep and take == head.length
            else:
                body = await conn.reader.read(max_body)
                keep = False
            return Reply(head.status, body, head.location)
        except asyncio.IncompleteReadError as exc:
            keep = False
            raise HttpError("connection closed mid-response") from exc
        except asyncio.LimitOverrunError as exc:  # a chunk's size line or a trailer
            keep = False
            raise HttpError("response line too long") from exc
        except BaseException:
            keep = False
            raise
        finally:
            if keep:
                self._give_back(origin, conn)
            else:
                conn.close()

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> Head:
        """The final response's head: interim (1xx) responses before it are passed over, and all of them
        together may be ``MAX_HEAD_BYTES`` long. ``_Stale`` if the connection ends before the first byte."""
        seen = 0
        while True:
            try:
                data = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError as exc:
                raise HttpError("response head too large") from exc
            except asyncio.IncompleteReadError as exc:
                if seen or exc.partial:
                    raise
                raise _Stale from exc
            except ConnectionError as exc:
                if seen:
                    raise
                raise _Stale from exc
            seen += len(data)
            if seen > MAX_HEAD_BYTES:
                raise HttpError("response head too large")
            head = parse_head(data)
            if head.status >= 200:
                return head
            if head.status == 101:  # never asked for
                raise HttpError("unexpected 101 Switching Protocols")

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> tuple[bytes, bool]:
        """Up to ``max_body`` bytes; (body, whether the whole message was consumed)."""
        out = bytearray()
        while True:
            size_line = _CHUNK_SIZE.fullmatch(await reader.readuntil(b"\r\n"))
            if size_line is None:
                raise HttpError("bad chunk size")
            size = int(size_line[1], 16)
            if size == 0:
                trailers = 0
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    trailers += len(line)
                    if trailers > MAX_HEAD_BYTES:
                        raise HttpError("response trailers too large")
                return bytes(out), True
            if len(out) + size > max_body:
                out += await reader.readexactly(max_body - len(out))
                return bytes(out), False
            out += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise HttpError("bad chunk: no CRLF after its data")

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
