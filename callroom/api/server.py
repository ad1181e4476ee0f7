"""How the node serves HTTP: uvicorn with its httptools protocol, plus a deadline and a size bound on every
request's head.

uvicorn bounds neither how long a request's head (request line and headers) may take to arrive nor how
large it may grow (llhttp, under httptools, has no limit of its own): a client that opens connections and
sends a byte of a head now and then holds each of them for good (slowloris), and one that sends an endless
header grows the process. ``GuardedHttpProtocol`` gives each head ``head_timeout`` seconds from its first
byte (the first head: from the connection's opening) and ``max_head_bytes``; past either it answers 408 or
431 with a Telnyx error body and closes the connection. The deadline covers the head only: a request's body
and the application's work on it are not timed here, and between requests uvicorn's keep-alive timeout
closes idle connections.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from socket import socket
from types import FrameType
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from callroom.api.limits import HEAD_TIMEOUT_SECS, MAX_HEAD_BYTES
from callroom.errors import ErrorItem

log = logging.getLogger(__name__)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a request head's deadline and size bound (see the module)."""

    head_timeout: float = HEAD_TIMEOUT_SECS
    max_head_bytes: int = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # the next bytes belong to a request's head
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)  # the chunk that ends the head resets this while it is parsed
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse(431, ErrorItem("90111", "Request head too large",
                                        f"The request line and headers may have at most {self.max_head_bytes:,} "
                                        "bytes."))

    # -- the parser's callbacks ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a later request on a kept-alive connection: its head starts now
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    # -- the bounds ------------------------------------------------------------------------------------------

    def _head_done(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse(408, ErrorItem("90110", "Request head timeout",
                                        f"The request line and headers must arrive within {self.head_timeout:g} s."))

    def _refuse(self, status: int, item: ErrorItem) -> None:
        """Answer ``status`` (unless a response to an earlier request is under way) and close the connection."""
        self._head_done()
        log.debug("%s from %s: %s", status, self.client, item.title)
        if self.cycle is None or self.cycle.response_complete:
            body = orjson.dumps({"errors": [item.to_json()]})
            head = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                     b"\r\nconnection: close\r\n\r\n"]
            self.transport.write(b"".join(head) + body)
        self.transport.close()


def guarded_protocol(head_timeout: float = HEAD_TIMEOUT_SECS,
                     max_head_bytes: int = MAX_HEAD_BYTES) -> type[GuardedHttpProtocol]:
    """The protocol class to give uvicorn (``http=``), with these bounds."""

    class Configured(GuardedHttpProtocol):
        pass

    Configured.head_timeout = head_timeout
    Configured.max_head_bytes = max_head_bytes
    return Configured


def uvicorn_config(app: Any, host: str, port: int, *, head_timeout: float = HEAD_TIMEOUT_SECS,
                   **options: Any) -> uvicorn.Config:
    """The uvicorn configuration every node runs with (``callroom serve``, the tests' nodes, the benches)."""
    return uvicorn.Config(app, host=host, port=port, http=guarded_protocol(head_timeout), **options)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopped the way a node stops: the first SIGTERM or SIGINT starts the node's drain
    (``drain``; callroom/drain.py) while the API keeps answering, and the server stops once it is over
    (``stop``, which the drain calls); a second signal cuts the drain's grace period short (``hurry``); a
    third stops the server at once. Unlike uvicorn's own handler it does not raise the signal again once
    the server has stopped, so a drained node exits 0 and prints no ``KeyboardInterrupt``."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], None], hurry: Callable[[], None]) -> None:
        super().__init__(config)
        self._drain, self._hurry = drain, hurry
        self._signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Sequence[socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(list(sockets) if sockets is not None else None)

    def stop(self) -> None:
        """Stop serving (after the drain): uvicorn closes its connections, then the node stops."""
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(sig).name
        if self._signals == 1 and self._loop is not None and self.started:
            log.warning("%s: draining (again to hurry, a third time to stop at once)", name)
            self._loop.call_soon_threadsafe(self._drain)
        elif self._signals == 2 and self._loop is not None and self.started:
            log.warning("%s: the drain's grace period is over", name)
            self._loop.call_soon_threadsafe(self._hurry)
        else:  # not serving yet, or a third signal
            self.should_exit = True
            self.force_exit = self._signals > 2
