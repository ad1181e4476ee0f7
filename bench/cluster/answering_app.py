"""The call-set-up benchmark's application: it answers every incoming call and hangs it up ``hold`` seconds
after ``call.answered``, sending its commands to the nodes' APIs in turn, as through an HTTP load balancer.

It runs on the same two cores as the nodes it measures, so it is kept lean: plain HTTP/1.1 over asyncio
streams with kept-alive connections both ways (the webhooks it receives, the commands it sends), and no
framework. With uvicorn + Starlette to receive and httpx to send it spent about 0.5 of a core at 60 calls/s,
as much as the node under test; this spends a fraction of that. It checks what it needs of HTTP (status line,
Content-Length bodies) and nothing else: the nodes are the only peers it talks to.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import urllib.parse
from collections import Counter
from typing import Any

HOOK_PATH = "/hooks"
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One HTTP/1.1 message with a Content-Length body (or none): start line, headers (lower-case), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    start, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    return start, headers, await reader.readexactly(length) if length else b""


class _Api:
    """Kept-alive connections to one node's API."""

    def __init__(self, base: str, key: str) -> None:
        url = urllib.parse.urlsplit(base)
        self.host, self.port, self.prefix = url.hostname or "127.0.0.1", url.port or 80, url.path.rstrip("/")
        self.auth = f"Bearer {key}".encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, timeout: float = 10.0) -> int:
        """POST ``{}`` to ``path`` (under the API's ``/v2``); the response's status."""
        request = (b"POST " + (self.prefix + path).encode() + b" HTTP/1.1\r\nhost: " + self.host.encode()
                   + b"\r\nauthorization: " + self.auth
                   + b"\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")  # fmt: skip
        while True:
            reused = bool(self.idle)
            reader, writer = self.idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(request)
                start, headers, _ = await asyncio.wait_for(_read_message(reader), timeout)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                if reused:  # the server closed it while it was idle (its keep-alive timeout): a new one
                    continue
                raise
            except BaseException:
                writer.close()
                raise
            break
        if headers.get(b"connection", b"").lower() == b"close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return int(start.split(b" ", 2)[1])


class AnsweringApp:
    """Answers every incoming call, hangs it up ``hold`` seconds after it is answered; counts what it saw."""

    def __init__(self, apis: list[str], key: str, hold: float) -> None:
        self.apis = [_Api(base, key) for base in apis]
        self.hold = hold
        self.turn = itertools.cycle(range(len(apis)))
        self.counts: Counter[str] = Counter(
            {"initiated": 0, "answered": 0, "hangup": 0, "answer_failed": 0, "hangup_failed": 0})
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._served: set[asyncio.StreamWriter] = set()  # webhook connections open
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="answering-app")
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the answering application did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PATH}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        """Close every connection both ways, stop the thread and close its loop."""
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self.thread.join(10)
        self._loop.close()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        writers = [*self._served, *(writer for api in self.apis for _, writer in api.idle)]
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One webhook connection, kept alive: each request answered 200 at once, then acted on."""
        self._served.add(writer)
        try:
            while True:
                try:
                    _, _, body = await _read_message(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                try:
                    data = json.loads(body)["data"]
                    kind, cid = data["event_type"], data["payload"]["call_control_id"]
                except (ValueError, KeyError, TypeError):
                    writer.write(BAD)
                    return
                writer.write(OK)
                self._on(kind, cid)
        finally:
            self._served.discard(writer)
            writer.close()

    def _on(self, kind: str, cid: str) -> None:
        if kind == "call.initiated":
            self.counts["initiated"] += 1
            self._spawn(self._command(cid, "answer"))
        elif kind == "call.answered":
            self.counts["answered"] += 1
            self._spawn(self._later(cid))
        elif kind == "call.hangup":
            self.counts["hangup"] += 1

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _later(self, cid: str) -> None:
        await asyncio.sleep(self.hold)
        await self._command(cid, "hangup")

    async def _command(self, cid: str, action: str) -> None:
        api = self.apis[next(self.turn)]
        ok = False
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            ok = await api.post(f"/calls/{cid}/actions/{action}") == 200
        if not ok:
            self.counts[f"{action}_failed"] += 1
