"""A small HTTP/1.1 client for webhook requests: keep-alive connections per origin, no redirects, bounded
response head and body.

httpx costs 0.8-2.3 ms of CPU per request at the concurrency the dispatcher runs (its connection pool
serialises on locks); this client needs well under 0.2 ms, which is what makes thousands of signed
deliveries per second on one core possible. It does exactly what a webhook sender needs: one request,
read the status (and the first bytes of the body), never follow a ``Location``. A new connection goes only
to an address the node's ``AddressPolicy`` permits, the one it checked (``outbound.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from callroom.outbound import UNRESTRICTED, AddressPolicy

MAX_HEAD_BYTES = 16 * 1024
MAX_IDLE_PER_ORIGIN = 128


class HttpError(Exception):
    pass


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes  # at most ``max_body`` bytes
    location: str | None


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
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                # A kept-alive connection the server closed meanwhile: try once more on a fresh one.
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise HttpError("connection closed mid-response") from exc
        conn = await self._connect(origin)
        try:
            return await self._exchange(origin, conn, request, method, max_body)
        except asyncio.IncompleteReadError as exc:
            raise HttpError("connection closed before a complete response") from exc

    async def _exchange(self, origin: Origin, conn: _Conn, request: bytes, method: str, max_body: int) -> Reply:
        keep = False
        try:
            conn.writer.write(request)
            status, length, chunked, close, location = await self._read_head(conn.reader)
            keep = not close
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                body = b""
            elif chunked:
                body, complete = await self._read_chunked(conn.reader, max_body)
                keep = keep and complete
            elif length is not None:
                take = min(length, max_body)
                body = await conn.reader.readexactly(take)
                keep = keep and take == length
            else:
                body = await conn.reader.read(max_body)
                keep = False
            return Reply(status, body, location)
        except BaseException:
            keep = False
            raise
        finally:
            if keep:
                self._give_back(origin, conn)
            else:
                conn.close()

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int | None, bool, bool, str | None]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise HttpError("response head too large") from exc
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        try:
            status = int(parts[1])
        except ValueError as exc:
            raise HttpError(f"bad status line {lines[0][:80]!r}") from exc
        length: int | None = None
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        location: str | None = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError as exc:
                    raise HttpError("bad content-length") from exc
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                v = value.lower()
                close = b"close" in v or (close and b"keep-alive" not in v)
            elif name == b"location":
                location = value.decode("latin-1")[:2048]
        return status, length, chunked, close, location

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> tuple[bytes, bool]:
        """Up to ``max_body`` bytes; (body, whether the whole message was consumed)."""
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise HttpError("bad chunk size") from exc
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return bytes(out), True
            if len(out) + size > max_body:
                out += await reader.readexactly(max_body - len(out))
                return bytes(out), False
            out += await reader.readexactly(size)
            await reader.readexactly(2)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
