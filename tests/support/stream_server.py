"""A real WebSocket server for media streams, as an application's voice bot would run one: it records every
message the node sends on each connection, and the test tells it what to send back (audio, marks, clear),
or to stop reading for a while, or to drop the connection. It runs on its own event loop in a thread."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from websockets.asyncio.server import Server, ServerConnection, serve

from callroom.rtp.g711 import ulaw_decode, ulaw_encode


@dataclass
class Connection:
    ws: ServerConnection
    messages: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    closed: bool = False

    def events(self) -> list[str]:
        return [m["event"] for m in list(self.messages)]

    def media(self, track: str) -> list[bytes]:
        return [base64.b64decode(m["media"]["payload"]) for m in list(self.messages)
                if m["event"] == "media" and m["media"]["track"] == track]  # fmt: skip

    def audio(self, track: str) -> NDArray[np.int16]:
        """A track's PCMU audio, decoded, in the order of its chunks."""
        chunks = sorted((int(m["media"]["chunk"]), base64.b64decode(m["media"]["payload"]))
                        for m in list(self.messages) if m["event"] == "media" and m["media"]["track"] == track)
        return ulaw_decode(b"".join(p for _, p in chunks)) if chunks else np.zeros(0, dtype=np.int16)

    def marks(self) -> list[str]:
        return [m["mark"]["name"] for m in list(self.messages) if m["event"] == "mark"]


class StreamServer:
    def __init__(self, host: str = "127.0.0.1", small_buffer: bool = False) -> None:
        """``small_buffer``: a receive buffer of 4 kB, so that a pause in reading soon holds the node up."""
        self._small = small_buffer
        self.connections: list[Connection] = []
        self.reading = threading.Event()
        self.reading.set()
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host,), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        assert self._server is not None
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.url: str = f"ws://{host}:{self.port}/stream"

    def _run(self, host: str) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if self._small:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind((host, 0))
            self._server = await serve(self._handle, sock=sock, compression=None, max_size=None)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(ws, headers={k.lower(): v for k, v in ws.request.headers.raw_items()}
                          if ws.request is not None else {})  # fmt: skip
        self.connections.append(conn)
        try:
            while True:
                while not self.reading.is_set():
                    await asyncio.sleep(0.05)
                text = await ws.recv()
                conn.messages.append(json.loads(text))
        except Exception:
            conn.closed = True

    def connection(self, index: int = 0, timeout: float = 10.0) -> Connection:
        self.wait(lambda: len(self.connections) > index, timeout)
        return self.connections[index]

    def wait(self, predicate: Any, timeout: float = 10.0) -> None:
        done = threading.Event()

        async def poll() -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while loop.time() < end:
                if predicate():
                    done.set()
                    return
                await asyncio.sleep(0.02)

        asyncio.run_coroutine_threadsafe(poll(), self._loop).result(timeout + 5)
        assert done.is_set(), "the stream server did not see what was awaited"

    def send(self, conn: Connection, message: dict[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(conn.ws.send(json.dumps(message)), self._loop).result(5)

    def send_audio(self, conn: Connection, samples: NDArray[np.int16], chunk_ms: int = 20) -> None:
        """PCMU audio back to the call, in chunks of ``chunk_ms``."""
        step = 8 * chunk_ms
        for at in range(0, len(samples), step):
            payload = base64.b64encode(ulaw_encode(samples[at : at + step])).decode()
            self.send(conn, {"event": "media", "media": {"payload": payload}})

    def drop(self, conn: Connection) -> None:
        """Go away without a closing handshake (the TCP connection reset)."""

        async def abort() -> None:
            conn.ws.transport.abort()

        asyncio.run_coroutine_threadsafe(abort(), self._loop).result(5)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
