"""A lean HTTP/1.1 keep-alive client for the load generator.

httpx costs ~1.3 ms of CPU per request, so one benchmark core could not offer more than ~700 requests/s
and the load generator, not the node, would be what is measured. This client does only what the
benchmark needs: one connection per worker, one request in flight on it, ``Content-Length`` bodies
(the node never answers chunked to these requests), JSON in and out. ~40 us of CPU per request.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast


class HTTPError(Exception):
    """The connection failed or the response could not be read."""


class Response:
    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, but is one

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._try_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HTTPError(f"connection lost: {exc!r}"))

    def _try_complete(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
                break
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        self.waiter.set_result(Response(status, body))


class Connection:
    """One keep-alive connection; ``request`` may be awaited by one task at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host = host
        self.port = port
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._proto: _Protocol | None = None

    async def _connected(self) -> _Protocol:
        if self._proto is None or self._proto.closed:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(_Protocol, self.host, self.port)
            self._proto = proto
        return self._proto

    async def request(self, method: str, path: str, json_body: Any = None) -> Response:
        proto = await self._connected()
        body = b"" if json_body is None else json.dumps(json_body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._fixed}"
            + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if json_body is not None else "")
            + "\r\n"
        )
        proto.waiter = asyncio.get_running_loop().create_future()
        assert proto.transport is not None
        proto.transport.write(head.encode() + body)
        try:
            return await proto.waiter
        finally:
            proto.waiter = None

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
