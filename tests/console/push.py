"""A console's push channel read as a browser reads it: ``/console/events`` with the key in a header,
server-sent events parsed as they arrive, in a thread of their own."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx


class PushReader:
    def __init__(self, root_url: str, api_key: str) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=None))
        self._stream = self._client.stream("GET", f"{root_url}/console/events",
                                           headers={"Authorization": f"Bearer {api_key}"})
        self.response = self._stream.__enter__()
        self.response.raise_for_status()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        kind, data = "message", ""
        try:
            for line in self.response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
                elif line == "" and data:
                    self.events.put((kind, json.loads(data)))
                    kind, data = "message", ""
        except (httpx.HTTPError, RuntimeError):
            return

    def wait(self, test: Callable[[str, dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """The first event (from now on) that passes ``test``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no such pushed event in time")
            try:
                kind, body = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if test(kind, body):
                return body

    def seen(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._stream.__exit__(None, None, None)
        self._client.close()
