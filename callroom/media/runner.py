"""Running the media engine on its own thread and event loop (uvloop where available).

The API's event loop posts instructions with ``post``; the engine posts facts back to the API loop.
Everything on the media side (RTP sockets, SIP transport, the tick) lives on the media loop, so
database or HTTP work on the API loop never delays a tick. (A process per core, or a media node on
another host, is the same interface over a pipe or a bus.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from callroom.control import media_ops as m
from callroom.media.engine import MediaEngine

log = logging.getLogger(__name__)

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


class MediaThread:
    def __init__(self, on_fact: Callable[[m.MediaFact], None]) -> None:
        self.engine = MediaEngine(on_fact)
        self.loop = _new_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="callroom-media", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        try:
            self.loop.run_until_complete(self.engine.run())
            self.loop.run_until_complete(self.engine.aclose())
        finally:
            self.loop.close()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the media loop, soon, in order with other posts."""
        self.loop.call_soon_threadsafe(fn, *args)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 5.0) -> T:
        """Run ``fn(*args)`` on the media loop and wait for its result (not from the media loop)."""
        fut: Future[T] = Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def submit(self, coro_fn: Callable[[], Any]) -> Future[Any]:
        """Run a coroutine on the media loop; returns a concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.engine.stop)
        self._thread.join(10)
