"""A real HTTP webhook receiver for tests: records every request with its exact raw body and headers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    path: str
    method: str
    body: str
    headers: dict[str, str]
    at: float
    status: int = 200  # what the receiver answered
    query: dict[str, list[str]] = field(default_factory=dict)  # the parsed query string

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def event_type(self) -> str:
        return str(self.json["data"]["event_type"])

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.json["data"]["payload"]
        return payload


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A sender that goes away mid-connection (a killed node, a timeout) is not an error here."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class WebhookReceiver:
    """Listens on ``host`` (127.0.0.1); ``status_for(path)`` decides what each request is answered with."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[Received] = []
        self._cond = threading.Condition()
        self.status_for: Callable[[str], int] = lambda _path: 200
        # When set, decides instead of ``status_for`` and also sees the request body.
        self.status_for_body: Callable[[str, str], int] | None = None
        self.delay_for: Callable[[str], float] = lambda _path: 0.0
        # Extra response headers (e.g. a Location) and a response body, per path.
        self.headers_for: Callable[[str], dict[str, str]] = lambda _path: {}
        self.body_for: Callable[[str], bytes] = lambda _path: b""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode()
                self._record(body)

            def do_GET(self) -> None:
                self._record("")

            def _record(self, body: str) -> None:
                delay = receiver.delay_for(self.path)
                if delay:
                    time.sleep(delay)
                decide_by_body = receiver.status_for_body
                status = decide_by_body(self.path, body) if decide_by_body else receiver.status_for(self.path)
                item = Received(self.path, self.command, body, {k.lower(): v for k, v in self.headers.items()},
                                time.time(), status, parse_qs(urlsplit(self.path).query))
                with receiver._cond:
                    receiver.requests.append(item)
                    receiver._cond.notify_all()
                reply = receiver.body_for(self.path)
                try:
                    self.send_response(status)
                    for name, value in receiver.headers_for(self.path).items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply)))
                    self.end_headers()
                    if reply:
                        self.wfile.write(reply)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _QuietServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/webhooks") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self, path: str | None = None) -> list[Received]:
        """Requests answered 2xx (the ones an application would act on)."""
        with self._cond:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(
        self,
        predicate: Callable[[Received], bool],
        timeout: float = 10.0,
        count: int = 1,
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.requests if _safe(predicate, r)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(r.path, _event_type(r)) for r in self.requests]
                    raise AssertionError(f"timed out waiting for {count} matching webhooks; received {seen}")
                self._cond.wait(left)

    def event(self, event_type: str, call_control_id: str | None = None, timeout: float = 10.0,
              **payload: Any) -> Received:
        def match(r: Received) -> bool:
            if _event_type(r) != event_type:
                return False
            p = r.payload
            if call_control_id is not None and p.get("call_control_id") != call_control_id:
                return False
            return all(p.get(k) == v for k, v in payload.items())

        return self.wait_for(match, timeout)[0]

    def events(self, call_control_id: str | None = None, conference_id: str | None = None) -> list[str]:
        out = []
        for r in self.delivered():
            if not r.body:
                continue
            p = r.payload
            if call_control_id is not None and p.get("call_control_id") != call_control_id:
                continue
            if conference_id is not None and p.get("conference_id") != conference_id:
                continue
            out.append(r.event_type)
        return out


def _event_type(r: Received) -> str | None:
    try:
        return r.event_type
    except Exception:
        return None


def _safe(predicate: Callable[[Received], bool], r: Received) -> bool:
    try:
        return predicate(r)
    except Exception:
        return False
