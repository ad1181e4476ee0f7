"""Telnyx's media streaming messages (the JSON text frames of a stream's WebSocket), as small dataclasses.

The node sends ``connected``, ``start`` (the call and the media format), ``media`` (a base64 payload of
20 ms of one track, without RTP headers), ``dtmf``, ``mark`` (a mark the server sent, played), ``error``
and ``stop``; a server with bidirectional audio sends ``media`` (audio to play), ``mark`` and ``clear``.
``parse`` reads any of them strictly (``StreamMessageError`` names what is wrong); ``to_json`` writes one;
``parse(m.to_json()) == m`` for every message.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from callroom.errors import StreamMessageError

VERSION = "1.0.0"


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


AUTH_TOKEN = "x-telnyx-streaming-auth-token"  # the connected frame's field and the handshake's header


@dataclass(frozen=True, slots=True)
class Connected:
    version: str = VERSION
    auth_token: str | None = None  # the stream's stream_auth_token

    def to_json(self) -> str:
        out = {"event": "connected", "version": self.version}
        if self.auth_token is not None:
            out[AUTH_TOKEN] = self.auth_token
        return _dumps(out)


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str  # PCMU | PCMA | L16
    sample_rate: int
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Start:
    sequence_number: int
    stream_id: str
    call_control_id: str
    call_session_id: str
    from_: str
    to: str
    media_format: MediaFormat
    client_state: str | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        start: dict[str, Any] = {
            "call_control_id": self.call_control_id, "call_session_id": self.call_session_id,
            "from": self.from_, "to": self.to, "client_state": self.client_state,
            "custom_parameters": self.custom_parameters,
            "media_format": {"encoding": self.media_format.encoding, "sample_rate": self.media_format.sample_rate,
                             "channels": self.media_format.channels},
        }  # fmt: skip
        return _dumps({"event": "start", "sequence_number": str(self.sequence_number), "stream_id": self.stream_id,
                       "start": start})


@dataclass(frozen=True, slots=True)
class Media:
    """20 ms (or, from a server, any length) of audio. From the node: ``track`` inbound | outbound, ``chunk``
    counting the track's frames from 1, ``timestamp`` milliseconds since the stream started."""

    payload: bytes
    track: str | None = None
    chunk: int | None = None
    timestamp: int | None = None
    sequence_number: int | None = None
    stream_id: str | None = None

    def to_json(self) -> str:
        media: dict[str, Any] = {}
        if self.track is not None:
            media["track"] = self.track
        if self.chunk is not None:
            media["chunk"] = str(self.chunk)
        if self.timestamp is not None:
            media["timestamp"] = str(self.timestamp)
        media["payload"] = base64.b64encode(self.payload).decode("ascii")
        return _dumps(_envelope("media", self.sequence_number, self.stream_id) | {"media": media})


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    sequence_number: int | None = None
    stream_id: str | None = None

    def to_json(self) -> str:
        return _dumps(_envelope("dtmf", self.sequence_number, self.stream_id) | {"dtmf": {"digit": self.digit}})


@dataclass(frozen=True, slots=True)
class Mark:
    name: str
    sequence_number: int | None = None
    stream_id: str | None = None

    def to_json(self) -> str:
        return _dumps(_envelope("mark", self.sequence_number, self.stream_id) | {"mark": {"name": self.name}})


@dataclass(frozen=True, slots=True)
class Clear:
    def to_json(self) -> str:
        return _dumps({"event": "clear"})


@dataclass(frozen=True, slots=True)
class Error:
    code: int
    title: str
    detail: str
    sequence_number: int | None = None
    stream_id: str | None = None

    def to_json(self) -> str:
        return _dumps(_envelope("error", self.sequence_number, self.stream_id)
                      | {"payload": {"code": self.code, "title": self.title, "detail": self.detail}})


@dataclass(frozen=True, slots=True)
class Stop:
    call_control_id: str
    sequence_number: int | None = None
    stream_id: str | None = None

    def to_json(self) -> str:
        return _dumps(_envelope("stop", self.sequence_number, self.stream_id)
                      | {"stop": {"call_control_id": self.call_control_id}})


StreamMessage = Connected | Start | Media | Dtmf | Mark | Clear | Error | Stop


def _envelope(event: str, sequence_number: int | None, stream_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"event": event}
    if sequence_number is not None:
        out["sequence_number"] = str(sequence_number)
    if stream_id is not None:
        out["stream_id"] = stream_id
    return out


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise StreamMessageError(f"{key!r} must be an object")
    return value


def _text(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise StreamMessageError(f"{key!r} must be a string")
    return value


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise StreamMessageError(f"{key!r} must be a number")
    try:
        return int(value)
    except ValueError as exc:
        raise StreamMessageError(f"{key!r} must be a number") from exc


def _stream_id(data: dict[str, Any]) -> str | None:
    value = data.get("stream_id")
    if value is not None and not isinstance(value, str):
        raise StreamMessageError("'stream_id' must be a string")
    return value


def parse(text: str | bytes) -> StreamMessage:
    """One message of either direction; ``StreamMessageError`` when it is not JSON, not an object, of an
    unknown event or missing what its event needs."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StreamMessageError("not JSON") from exc
    if not isinstance(data, dict):
        raise StreamMessageError("not a JSON object")
    event = data.get("event")
    seq, sid = _int(data, "sequence_number"), _stream_id(data)
    match event:
        case "connected":
            token = data.get(AUTH_TOKEN)
            return Connected(_text(data, "version", VERSION), token if isinstance(token, str) else None)
        case "start":
            start = _object(data, "start")
            fmt = _object(start, "media_format")
            params = start.get("custom_parameters") or {}
            if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
                raise StreamMessageError("'custom_parameters' must be an object of strings")
            state = start.get("client_state")
            return Start(seq or 0, _text(data, "stream_id"), _text(start, "call_control_id"),
                         _text(start, "call_session_id", ""), _text(start, "from", ""), _text(start, "to", ""),
                         MediaFormat(_text(fmt, "encoding"), _int(fmt, "sample_rate") or 0, _int(fmt, "channels") or 1),
                         state if isinstance(state, str) else None, dict(params))  # fmt: skip
        case "media":
            media = _object(data, "media")
            try:
                payload = base64.b64decode(_text(media, "payload"), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise StreamMessageError("'payload' must be base64") from exc
            track = media.get("track")
            if track is not None and not isinstance(track, str):
                raise StreamMessageError("'track' must be a string")
            return Media(payload, track, _int(media, "chunk"), _int(media, "timestamp"), seq, sid)
        case "dtmf":
            return Dtmf(_text(_object(data, "dtmf"), "digit"), seq, sid)
        case "mark":
            return Mark(_text(_object(data, "mark"), "name"), seq, sid)
        case "clear":
            return Clear()
        case "error":
            body = _object(data, "payload")
            return Error(_int(body, "code") or 0, _text(body, "title", ""), _text(body, "detail", ""), seq, sid)
        case "stop":
            return Stop(_text(_object(data, "stop"), "call_control_id"), seq, sid)
    raise StreamMessageError(f"unknown event {event!r}")
