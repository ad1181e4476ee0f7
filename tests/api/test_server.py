"""The node's HTTP server (callroom/api/server.py): a request's head must arrive whole, in time and within
its size bound, or the connection is answered 408 / 431 and closed; nothing else is timed."""

from __future__ import annotations

import json
import socket
import time

from callroom.api.limits import MAX_HEAD_BYTES
from tests.conftest import STRICT_HEAD_TIMEOUT
from tests.support.node import NodeThread


def _connect(node: NodeThread) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.port), timeout=STRICT_HEAD_TIMEOUT + 5)


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _response(sock: socket.socket) -> bytes:
    """One whole response (uvicorn writes its head and its body apart)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower()
    [error] = json.loads(body)["errors"]
    return int(head.split()[1]), error["code"]


def test_half_a_request_line_is_answered_408_and_closed_within_the_limit(strict_node: NodeThread) -> None:
    with _connect(strict_node) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v2/ca")
        answer = _until_closed(sock)
        waited = time.monotonic() - started
    assert STRICT_HEAD_TIMEOUT * 0.8 <= waited < STRICT_HEAD_TIMEOUT + 2
    assert _error(answer) == (408, "90110")


def test_a_connection_that_sends_nothing_is_closed_within_the_limit(strict_node: NodeThread) -> None:
    with _connect(strict_node) as sock:
        started = time.monotonic()
        answer = _until_closed(sock)
        assert STRICT_HEAD_TIMEOUT * 0.8 <= time.monotonic() - started < STRICT_HEAD_TIMEOUT + 2
    assert _error(answer) == (408, "90110")


def test_a_head_trickled_a_byte_at_a_time_does_not_extend_its_deadline(strict_node: NodeThread) -> None:
    head = b"GET /health HTTP/1.1\r\nhost: node\r\nx-padding: " + b"a" * 100
    with _connect(strict_node) as sock:
        started = time.monotonic()
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:  # closed under our feet: what should happen
            pass
        answer = _until_closed(sock)
        assert time.monotonic() - started < STRICT_HEAD_TIMEOUT + 2
    assert _error(answer) == (408, "90110")


def test_the_next_head_on_a_kept_alive_connection_has_its_own_deadline(strict_node: NodeThread) -> None:
    with _connect(strict_node) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: node\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(STRICT_HEAD_TIMEOUT * 0.6)  # idle within the keep-alive time: not part of any head
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: node\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nho")
        answer = _until_closed(sock)
        assert STRICT_HEAD_TIMEOUT * 0.8 <= time.monotonic() - started < STRICT_HEAD_TIMEOUT + 2
    assert _error(answer) == (408, "90110")


def test_a_slow_body_after_a_prompt_head_is_not_cut_off(strict_node: NodeThread) -> None:
    """Only the head is timed: a body that takes longer than the head's limit still gets its answer."""
    body = b'{"application_name": "slow", "webhook_event_url": "http://example.com/"}'
    with _connect(strict_node) as sock:
        sock.sendall(b"POST /v2/call_control_applications HTTP/1.1\r\nhost: node\r\n"
                     b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), len(body) // 4 + 1):
            time.sleep(STRICT_HEAD_TIMEOUT * 0.4)
            sock.sendall(body[i : i + len(body) // 4 + 1])
        answer = _response(sock)
    assert answer.startswith(b"HTTP/1.1 401"), answer  # answered (no API key), not closed


def test_a_head_over_its_size_bound_is_answered_431_and_closed(strict_node: NodeThread) -> None:
    header = b"x-filler: " + b"f" * 1000 + b"\r\n"
    with _connect(strict_node) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: node\r\n")
        try:
            for _ in range(MAX_HEAD_BYTES // len(header) + 2):
                sock.sendall(header)
        except OSError:
            pass
        answer = _until_closed(sock)
    assert _error(answer) == (431, "90111")


def test_a_head_within_its_bounds_is_served(strict_node: NodeThread) -> None:
    header = b"x-filler: " + b"f" * 1000 + b"\r\n"
    with _connect(strict_node) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: node\r\n" + header * 50)
        time.sleep(STRICT_HEAD_TIMEOUT * 0.5)
        sock.sendall(b"connection: close\r\n\r\n")
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer
