"""What the webhook HTTP client (callroom/webhooks/http.py) accepts from a receiver and what it refuses.

A receiver is any server an account names, so its answers are untrusted: whatever it sends, a request ends
in a ``Reply`` or an ``HttpError`` (never another exception, which the dispatcher would not count as an
attempt), reads at most ``MAX_HEAD_BYTES`` of head and ``max_body`` of body, and never leaves a connection
in the pool whose next response could be misread. The heads refused here are refused by h11, a reference
HTTP/1.1 parser, as well, unless marked stricter on purpose; the heads accepted are read alike by both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Protocol

import h11
import pytest

from callroom.webhooks.http import MAX_HEAD_BYTES, Head, HttpError, WebhookHttp, parse_head

# -- the head, alone --------------------------------------------------------------------------------------

ACCEPTED: list[tuple[bytes, Head]] = [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", Head(200, 2, False, False, None)),
    (b"HTTP/1.1 204\r\n\r\n", Head(204, None, False, False, None)),  # no reason phrase
    (b"HTTP/1.1 200 \r\nContent-Length:7\r\n\r\n", Head(200, 7, False, False, None)),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n", Head(200, 5, False, False, None)),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", Head(200, None, True, False, None)),
    (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n", Head(200, None, False, True, None)),
    (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", Head(200, 0, False, True, None)),
    (b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n", Head(200, 0, False, False, None)),
    (b"HTTP/1.1 302 Found\r\nLocation:  http://elsewhere/x \r\ncontent-length: 0\r\n\r\n",
     Head(302, 0, False, False, "http://elsewhere/x")),
    (b"HTTP/1.1 200 OK\r\nx-long: a\r\n b\r\n\tc\r\ncontent-length: 1\r\n\r\n", Head(200, 1, False, False, None)),
    (b"HTTP/1.1 599 Whatever \xe9\r\nx-empty:\r\n\r\n", Head(599, None, False, False, None)),
    (b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n", Head(103, None, False, False, None)),
]

REFUSED: list[tuple[bytes, str]] = [
    (b"HTTP/1.1 OK\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 +200 OK\r\n\r\n", "bad status line"),
    (b"HTTP/1.1  200 OK\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 099 Low\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 200 OK\x00\r\n\r\n", "bad status line"),
    (b"HTTP/1.x 200 OK\r\n\r\n", "bad status line"),
    (b"http/1.1 200 OK\r\n\r\n", "bad status line"),
    (b"ICY 200 OK\r\n\r\n", "bad status line"),
    (b"<html>hello</html>\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\ncontent-length : 5\r\n\r\n", "bad header line"),  # smuggling's favourite
    (b"HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\nx: a\rb\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\n folded first\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "bad content-length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n", "bad content-length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n", "bad content-length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 5_0\r\n\r\n", "bad content-length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length:\r\n\r\n", "bad content-length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n", "bad content-length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n", "bad content-length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: \xd9\xa5\r\n\r\n", "bad content-length"),  # not ASCII digits
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n", "unsupported transfer-encoding"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\n\r\n", "unsupported transfer-encoding"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
     "unsupported transfer-encoding"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n", "both content-length"),
]

STRICTER_THAN_H11 = {
    # h11 takes any HTTP/d.d; a webhook request is HTTP/1.1, so any other answer is not to be trusted
    b"HTTP/1.x 200 OK\r\n\r\n",
    # h11 joins repeated Transfer-Encoding headers; two of them say nothing a receiver would mean
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
    # h11 lets Transfer-Encoding override Content-Length; RFC 9112 section 6.3 says such a message "ought to
    # be handled as an error" (it is how responses are split and requests smuggled)
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
}


def _h11_reads(head: bytes) -> h11.Response | h11.InformationalResponse | None:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/hooks", headers=[("host", "node"), ("content-length", "0")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(head)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    assert isinstance(event, h11.Response | h11.InformationalResponse), event
    return event


@pytest.mark.parametrize(("head", "expected"), ACCEPTED, ids=[repr(h[:40]) for h, _ in ACCEPTED])
def test_a_well_formed_head_is_read_as_h11_reads_it(head: bytes, expected: Head) -> None:
    assert parse_head(head) == expected
    reference = _h11_reads(head)
    assert reference is not None and reference.status_code == expected.status


@pytest.mark.parametrize(("head", "why"), REFUSED, ids=[repr(h[:60]) for h, _ in REFUSED])
def test_a_malformed_head_is_refused(head: bytes, why: str) -> None:
    with pytest.raises(HttpError, match=why):
        parse_head(head)
    if head not in STRICTER_THAN_H11:
        assert _h11_reads(head) is None, "h11 takes this head: is refusing it right?"


def test_a_content_length_too_long_to_be_true_is_refused() -> None:
    # int() of thousands of digits would raise ValueError (or take quadratic time): refused by its length
    for digits in (19, 5000):
        with pytest.raises(HttpError, match="bad content-length"):
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: " + b"9" * digits + b"\r\n\r\n")


# -- whole responses, from a scripted receiver ------------------------------------------------------------


@dataclass
class Script:
    """A receiver on 127.0.0.1 that reads each request (head and Content-Length body) and answers it with
    the next of ``answers``: raw bytes, then ``True`` to close the connection after them. ``None`` in place
    of bytes closes the connection without answering."""

    answers: list[tuple[bytes | None, bool]]
    connections: int = 0
    requests: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                answer, close = self.answers.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class Serve(Protocol):
    """Starts a scripted receiver; returns it, a client and the URL to send to."""

    def __call__(self, *answers: tuple[bytes | None, bool]) -> Awaitable[tuple[Script, WebhookHttp, str]]: ...


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []
    clients: list[WebhookHttp] = []

    async def start(*answers: tuple[bytes | None, bool]) -> tuple[Script, WebhookHttp, str]:
        script = Script(list(answers))
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        servers.append(server)
        client = WebhookHttp()
        clients.append(client)
        return script, client, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks"

    yield start
    for client in clients:
        await client.aclose()
    for server in servers:
        server.close()
        await server.wait_closed()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def _post(client: WebhookHttp, url: str) -> tuple[int, bytes]:
    reply = await asyncio.wait_for(client.request("POST", url, b'{"a": 1}', {"content-type": "application/json"}), 5)
    return reply.status, reply.body


async def test_a_head_over_the_limit_is_refused(serve: Serve) -> None:
    big = b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * MAX_HEAD_BYTES + b"\r\ncontent-length: 0\r\n\r\n"
    _, client, url = await serve((big, False))
    with pytest.raises(HttpError, match="response head too large"):
        await _post(client, url)


async def test_interim_responses_are_passed_over_but_count_towards_the_head_limit(serve: Serve) -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n"
    script, client, url = await serve((hints + hints + OK, False), (OK, False))
    assert await _post(client, url) == (200, b"ok")
    assert await _post(client, url) == (200, b"ok")  # the same connection, its next response read right
    assert script.connections == 1

    _, client, url = await serve((hints * (MAX_HEAD_BYTES // len(hints) + 1) + OK, False))
    with pytest.raises(HttpError, match="response head too large"):
        await _post(client, url)


async def test_a_switch_of_protocols_nobody_asked_for_is_refused(serve: Serve) -> None:
    _, client, url = await serve((b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n", False))
    with pytest.raises(HttpError, match="101"):
        await _post(client, url)


async def test_a_body_over_max_body_is_cut_and_its_connection_not_reused(serve: Serve) -> None:
    long = b"HTTP/1.1 500 Oops\r\ncontent-length: 20000\r\n\r\n" + b"e" * 20000
    script, client, url = await serve((long, False), (OK, False))
    reply = await client.request("POST", url, b"{}", {}, max_body=8192)
    assert (reply.status, reply.body) == (500, b"e" * 8192)
    assert await _post(client, url) == (200, b"ok")
    assert script.connections == 2  # the unread rest of the first body never reaches the second request


async def test_a_chunked_body_is_decoded_and_its_connection_reused(serve: Serve) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n")
    script, client, url = await serve((chunked, False), (OK, False))
    assert await _post(client, url) == (200, b"hello world")
    assert await _post(client, url) == (200, b"ok")
    assert script.connections == 1


async def test_a_chunked_body_over_max_body_is_cut_and_its_connection_not_reused(serve: Serve) -> None:
    chunk = b"1000\r\n" + b"c" * 0x1000 + b"\r\n"
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n"
    script, client, url = await serve((chunked, False), (OK, False))
    reply = await client.request("POST", url, b"{}", {}, max_body=8192)
    assert (reply.status, reply.body) == (200, b"c" * 8192)
    assert await _post(client, url) == (200, b"ok")
    assert script.connections == 2


@pytest.mark.parametrize(("chunks", "why"), [
    (b"zz\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
    (b"-5\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
    (b"0x5\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
    (b"+5\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
    (b"\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
    (b"5\r\nhelloXY0\r\n\r\n", "no CRLF after its data"),
    (b"5\r\nhel", "connection closed mid-response"),
    (b"0\r\n" + (b"x-trailer: " + b"t" * 1000 + b"\r\n") * 17 + b"\r\n", "trailers too large"),
], ids=["not hex", "negative", "0x", "plus", "empty", "no CRLF", "cut off", "trailers"])
async def test_a_malformed_chunked_body_is_refused(serve: Serve, chunks: bytes, why: str) -> None:
    _, client, url = await serve((b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks, True))
    with pytest.raises(HttpError, match=why):
        await _post(client, url)


async def test_a_negative_content_length_is_an_http_error(serve: Serve) -> None:
    # it once reached StreamReader.readexactly(-1): a ValueError, which the dispatcher does not count
    _, client, url = await serve((b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", True))
    with pytest.raises(HttpError, match="bad content-length"):
        await _post(client, url)


async def test_a_body_cut_off_is_an_http_error(serve: Serve) -> None:
    _, client, url = await serve((b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", True))
    with pytest.raises(HttpError, match="connection closed mid-response"):
        await _post(client, url)


async def test_a_body_without_length_is_read_until_close(serve: Serve) -> None:
    script, client, url = await serve((b"HTTP/1.0 200 OK\r\n\r\nall of it", True), (OK, False))
    assert await _post(client, url) == (200, b"all of it")
    assert await _post(client, url) == (200, b"ok")
    assert script.connections == 2


async def test_a_kept_alive_connection_the_receiver_dropped_is_replaced_once(serve: Serve) -> None:
    # the second request reaches the old connection, which the receiver closes without answering
    script, client, url = await serve((OK, False), (None, False), (OK, False))
    assert await _post(client, url) == (200, b"ok")
    assert await _post(client, url) == (200, b"ok")
    assert (script.connections, script.requests) == (2, 3)


async def test_no_answer_on_a_fresh_connection_is_an_http_error(serve: Serve) -> None:
    _, client, url = await serve((None, False))
    with pytest.raises(HttpError, match="connection closed before a response"):
        await _post(client, url)
