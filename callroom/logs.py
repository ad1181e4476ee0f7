"""The node's log: lines an operator can follow a call by, as text or as JSON lines for a log collector.

Three loggers carry what happens, each line with the ids it concerns as fields (``extra``), so that
``grep v3:...`` in text or a query on ``call_control_id`` in a collector finds a call's whole life:

- ``callroom.access``: one line per API request: method, path, status, account, milliseconds
  (``--no-access-log`` turns it off);
- ``callroom.calls``: one line per event the node commits (each state change of a call, conference or
  queue is one: ``call.answered``, ``conference.participant.joined`` ...), with ``call_control_id``,
  ``call_session_id``, ``conference_id`` and ``queue`` where the event has them;
- ``callroom.sip.trace``: with ``--sip-trace``, every SIP message the node sends or receives, whole.

``--log-format json`` writes one JSON object per line (``ts``, ``level``, ``logger``, ``msg`` and the
fields); the media process, started by the node, writes the same way (``CALLROOM_LOG_FORMAT``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol

import orjson

FORMAT_ENV = "CALLROOM_LOG_FORMAT"
FORMATS = ("text", "json")
# The fields a text line shows after its message, in this order (a JSON line has every field it carries).
TEXT_FIELDS = ("call_control_id", "call_session_id", "conference_id", "queue", "account_id", "peer")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

access = logging.getLogger("callroom.access")
calls = logging.getLogger("callroom.calls")
sip_trace = logging.getLogger("callroom.sip.trace")


class TextFormatter(logging.Formatter):
    """``time level logger: message field=value ...``"""

    def __init__(self, prefix: str = "") -> None:
        super().__init__(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{k}={getattr(record, k)}" for k in TEXT_FIELDS if getattr(record, k, None) is not None]
        return f"{line} {' '.join(fields)}" if fields else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (seconds since the epoch), ``level``, ``logger``, ``msg``, the fields
    the line carries, ``process`` (api or media) and ``exc`` (a traceback's text) when there is one."""

    def __init__(self, process: str = "api") -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 6), "level": record.levelname, "logger": record.name,
                               "msg": record.getMessage(), "process": self.process}  # fmt: skip
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure(level: str | int, fmt: str = "text", *, process: str = "api") -> None:
    """The root logger's one handler (stderr), at ``level``, in ``fmt`` (text or json)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(process) if fmt == "json" else
                         TextFormatter("" if process == "api" else f"{process} "))  # fmt: skip
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    os.environ[FORMAT_ENV] = fmt  # the media process, started later, writes the same way


def format_from_env() -> str:
    fmt = os.environ.get(FORMAT_ENV, "text")
    return fmt if fmt in FORMATS else "text"


class Event(Protocol):
    account_id: str
    event_type: str
    payload: dict[str, Any]


def committed(events: Iterable[Event]) -> None:
    """One ``callroom.calls`` line per committed event."""
    if not calls.isEnabledFor(logging.INFO):
        return
    for event in events:
        payload = event.payload
        extra = {"account_id": event.account_id}
        for key in ("call_control_id", "call_session_id", "conference_id"):
            if payload.get(key):
                extra[key] = payload[key]
        queue = payload.get("queue") or payload.get("queue_name")
        if queue:
            extra["queue"] = queue
        calls.info(event.event_type, extra=extra)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class AccessLog:
    """ASGI middleware: one ``callroom.access`` line per HTTP request once its response has started (the
    account is the one the request's API key named, when it named one: ``scope["state"]["account_id"]``)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ms = round((time.perf_counter() - started) * 1000, 1)
            account = scope.get("state", {}).get("account_id")
            access.info("%s %s %s %.1f ms", scope["method"], scope["path"], status, ms,
                        extra={"method": scope["method"], "path": scope["path"], "status": status,
                               "account_id": account, "ms": ms})  # fmt: skip
