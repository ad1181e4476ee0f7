"""The request limits (callroom/api/limits.py): JSON nesting, text fields, body sizes."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import httpx
import pytest

from callroom.api import limits
from callroom.audio.encode import encode_wav
from callroom.errors import ValidationFailed
from tests.audio.signals import tone16
from tests.support.tenant import Tenant


def _nested(depth: int) -> bytes:
    """A JSON object whose objects and arrays nest ``depth`` levels deep (the object itself is level 1)."""
    return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_json_as_deep_as_the_limit_is_parsed() -> None:
    assert limits.load_json(_nested(limits.MAX_JSON_DEPTH))["a"] is not None
    assert limits.load_json(json.dumps({"a": "[" * 50}).encode()) == {"a": "[" * 50}  # brackets in text
    wide = {"items": [[{"k": [1]}] for _ in range(5000)]}  # many brackets, little depth
    assert limits.load_json(json.dumps(wide).encode()) == wide


@pytest.mark.parametrize("depth", [limits.MAX_JSON_DEPTH + 1, 900, 1000, 200_000])
def test_json_deeper_than_the_limit_is_refused_with_the_body_pointed_at(depth: int) -> None:
    with pytest.raises(ValidationFailed) as refused:
        limits.load_json(_nested(depth))
    [item] = refused.value.items
    assert (item.code, item.pointer) == ("10015", "/")
    assert f"more than {limits.MAX_JSON_DEPTH} levels deep" in item.detail


def test_invalid_json_is_still_a_value_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        limits.load_json(b"{not json")
    with pytest.raises(ValueError):
        limits.load_json(b'{"a": "\xff"}')


# -- the limits on a real node -------------------------------------------------------------------------------


def _state(chars: int) -> str:
    """Valid Base64 of exactly ``chars`` characters (a multiple of 4)."""
    return base64.b64encode(b"s" * (chars // 4 * 3)).decode()


def _post(tenant: Tenant, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{tenant.node.base_url}{path}", json=body,
                      headers={"Authorization": f"Bearer {tenant.api_key}"}, timeout=10)


def test_client_state_is_bounded(tenant: Tenant) -> None:
    """10 MB of client_state was stored on the call and sent in every one of its webhooks."""
    dial = {"connection_id": tenant.connection_id, "from": "+15550001111", "to": "virtual:cs;noanswer"}
    accepted = _post(tenant, "/calls", {**dial, "client_state": _state(limits.MAX_CLIENT_STATE)})
    assert accepted.status_code == 200, accepted.text
    for chars in (limits.MAX_CLIENT_STATE + 4, 600_000):
        refused = _post(tenant, "/calls", {**dial, "client_state": _state(chars)})
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert (error["code"], error["source"]) == ("10015", {"pointer": "/client_state"})
    answer = _post(tenant, "/calls/v3:nobody/actions/answer", {"client_state": _state(limits.MAX_CLIENT_STATE + 4)})
    assert answer.status_code == 422 and answer.json()["errors"][0]["source"] == {"pointer": "/client_state"}


LONG_ID = "v3:" + "x" * limits.MAX_ID
TOO_MANY = [f"v3:{i}" for i in range(limits.MAX_IDS + 1)]
URL = "http://example.com/" + "x" * limits.MAX_URL
FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("/calls", {"from": "+1", "to": "virtual:a", "connection_id": LONG_ID}, "/connection_id"),
    ("/calls", {"connection_id": "c", "from": "+1" * limits.MAX_ADDRESS, "to": "virtual:a"}, "/from"),
    ("/calls", {"connection_id": "c", "from": "+1", "to": "v" * (limits.MAX_ADDRESS + 1)}, "/to"),
    ("/calls", {"connection_id": "c", "from": "+1", "to": ["v" * (limits.MAX_ADDRESS + 1)]}, "/to/0"),
    ("/calls", {"connection_id": "c", "from": "+1", "to": "virtual:a", "command_id": "c" * 256}, "/command_id"),
    ("/calls", {"connection_id": "c", "from": "+1", "to": "virtual:a", "webhook_url": URL}, "/webhook_url"),
    ("/calls", {"connection_id": "c", "from": "+1", "to": "virtual:a", "link_to": LONG_ID}, "/link_to"),
    ("/calls", {"connection_id": "c", "from": "+1", "to": "virtual:a",
                "conference_config": {"conference_name": "n" * 256}}, "/conference_config/conference_name"),
    ("/calls", {"connection_id": "c", "from": "+1", "to": "virtual:a",
                "conference_config": {"hold_media_name": ".."}}, "/conference_config/hold_media_name"),
    ("/conferences", {"call_control_id": LONG_ID, "name": "n"}, "/call_control_id"),
    ("/conferences", {"call_control_id": "v3:a", "name": "n" * 256}, "/name"),
    ("/conferences/c/actions/join", {"call_control_id": "v3:a", "label": "l" * 256}, "/label"),
    ("/conferences/c/actions/join", {"call_control_id": "v3:a", "whisper_call_control_ids": TOO_MANY},
     "/whisper_call_control_ids"),
    ("/conferences/c/actions/mute", {"call_control_ids": ["v3:a", LONG_ID]}, "/call_control_ids/1"),
    ("/conferences/c/actions/hold", {"media_name": "a/b"}, "/media_name"),
    ("/conferences/c/actions/play", {"media_name": "..", "call_control_ids": ["v3:a"]}, "/media_name"),
    ("/calls/v3:a/actions/speak", {"payload": "p" * (limits.MAX_SPEECH + 1), "voice": "female"}, "/payload"),
    ("/calls/v3:a/actions/speak", {"payload": "p", "voice": "v" * 256}, "/voice"),
    ("/calls/v3:a/actions/enqueue", {"queue_name": "q" * 256}, "/queue_name"),
    ("/calls/v3:a/actions/record_stop", {"recording_id": "r" * (limits.MAX_ID + 1)}, "/recording_id"),
    ("/call_control_applications", {"application_name": "a", "webhook_event_url": URL}, "/webhook_event_url"),
    ("/call_control_applications", {"application_name": "a" * 256, "webhook_event_url": "http://example.com/"},
     "/application_name"),
    ("/call_control_applications", {"application_name": "a", "webhook_event_url": "http://example.com/",
                                    "tags": ["t"] * (limits.MAX_TAGS + 1)}, "/tags"),
    ("/call_control_applications", {"application_name": "a", "webhook_event_url": "http://example.com/",
                                    "inbound": {"sip_subdomain": "s" * 256}}, "/inbound/sip_subdomain"),
]


@pytest.mark.parametrize(("path", "body", "pointer"), FIELDS, ids=[p for _, _, p in FIELDS])
def test_free_text_fields_are_bounded(tenant: Tenant, path: str, body: dict[str, Any], pointer: str) -> None:
    resp = _post(tenant, path, body)
    assert resp.status_code == 422, resp.text
    found = [e for e in resp.json()["errors"] if e.get("source", {}).get("pointer") == pointer]
    assert found and found[0]["code"] == "10015", resp.text
    assert "at most" in found[0]["detail"] or "plain file name" in found[0]["detail"]  # the bound, no other fault


def _exchange(tenant: Tenant, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request over a socket of its own, exactly as given: (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", tenant.node.port), timeout=10) as sock:
        sock.sendall(head.replace("KEY", tenant.api_key).encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536) or b"\r\n\r\n"
        raw_head, _, rest = answer.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(rest) < int(headers.get("content-length", "0")):
            rest += sock.recv(65536)
        return int(lines[0].split()[1]), headers, rest


def _too_large(status: int, headers: dict[str, str], body: bytes, limit: int) -> None:
    assert status == 413, body
    assert headers.get("connection") == "close"
    [error] = json.loads(body)["errors"]
    assert error["code"] == "90109" and f"{limit:,} bytes" in error["detail"]


def test_a_json_body_over_the_limit_is_answered_413_unread(tenant: Tenant) -> None:
    head = ("POST /v2/calls HTTP/1.1\r\nhost: node\r\nauthorization: Bearer KEY\r\n"
            f"content-type: application/json\r\ncontent-length: {limits.MAX_BODY_BYTES + 1}\r\n")
    _too_large(*_exchange(tenant, head), limits.MAX_BODY_BYTES)  # not a byte of the body was sent


def test_a_chunked_body_over_the_limit_is_answered_413(tenant: Tenant) -> None:
    piece = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(limits.MAX_BODY_BYTES // len(piece) + 1))
    head = ("POST /v2/calls HTTP/1.1\r\nhost: node\r\nauthorization: Bearer KEY\r\n"
            "content-type: application/json\r\ntransfer-encoding: chunked\r\n")
    _too_large(*_exchange(tenant, head, chunks + b"0\r\n\r\n"), limits.MAX_BODY_BYTES)


def test_the_media_upload_may_be_larger_but_not_without_bound(tenant: Tenant) -> None:
    wav = encode_wav([tone16(440, 70.0)])  # ~1.1 MB: over the JSON limit, well within the upload's
    assert len(wav) > limits.MAX_BODY_BYTES
    up = httpx.post(f"{tenant.node.base_url}/media", headers={"Authorization": f"Bearer {tenant.api_key}"},
                    files={"media": ("long.wav", wav, "audio/wav")}, timeout=30)
    assert up.status_code == 200, up.text
    head = ("POST /v2/media HTTP/1.1\r\nhost: node\r\nauthorization: Bearer KEY\r\n"
            f"content-type: multipart/form-data; boundary=b\r\ncontent-length: {limits.MAX_UPLOAD_BODY_BYTES + 1}\r\n")
    _too_large(*_exchange(tenant, head), limits.MAX_UPLOAD_BODY_BYTES)
    put = ("PUT /v2/media/long.wav HTTP/1.1\r\nhost: node\r\nauthorization: Bearer KEY\r\n"
           f"content-type: application/json\r\ncontent-length: {limits.MAX_BODY_BYTES + 1}\r\n")
    _too_large(*_exchange(tenant, put), limits.MAX_BODY_BYTES)  # only the upload route takes more
