"""A tiny HTTP/1.1 server on 127.0.0.1 for fetch tests: one handler per path, hits counted."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]


class LocalHttpServer:
    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.finished: dict[str, asyncio.Event] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        path = ""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            self.hits[path] += 1
            handler = self.routes.get(path, status(404, b"not found"))
            await handler(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)
            self.finished.setdefault(path, asyncio.Event()).set()


def _head(code: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {code} X"] + [f"{k}: {v}" for k, v in {**headers, "Connection": "close"}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status(
    code: int,
    body: bytes = b"",
    content_type: str = "text/plain",
    delay: float = 0.0,
    headers: dict[str, str] | None = None,
) -> Handler:
    async def handle(writer: asyncio.StreamWriter) -> None:
        if delay:
            await asyncio.sleep(delay)
        all_headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        writer.write(_head(code, all_headers) + body)
        await writer.drain()

    return handle


def redirect(location: str, code: int = 302) -> Handler:
    return status(code, headers={"Location": location})


def endless(declared_length: int | None = None) -> Handler:
    """Streams zeros until the client goes away (or 2 GB, as a backstop)."""

    async def handle(writer: asyncio.StreamWriter) -> None:
        headers = {"Content-Type": "audio/wav"}
        if declared_length is not None:
            headers["Content-Length"] = str(declared_length)
        writer.write(_head(200, headers))
        chunk = bytes(64 * 1024)
        for _ in range(2**31 // len(chunk)):
            writer.write(chunk)
            await writer.drain()

    return handle


def dribble(body: bytes, pause: float) -> Handler:
    """Declares the body, then sends a byte every ``pause`` seconds."""

    async def handle(writer: asyncio.StreamWriter) -> None:
        writer.write(_head(200, {"Content-Type": "audio/wav", "Content-Length": str(len(body))}))
        for i in range(len(body)):
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(pause)

    return handle
