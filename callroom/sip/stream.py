"""SIP over a byte stream (TCP, TLS; RFC 3261 §18.3), sans I/O: where one message ends and the next begins.

On a stream a message ends where its Content-Length says (the header is mandatory there). ``StreamFramer``
takes bytes as they come and gives whole messages, holding the peer to the limits a datagram has: a
message of at most ``MAX_MESSAGE`` bytes (head and body), at most ``MAX_HEADER_LINES`` header lines; a
stream that breaks them, or whose head has no usable Content-Length, cannot be framed again and raises
``StreamError``: the adapter closes the connection. Keep-alives (RFC 5626 §3.5.1) between messages: a
CRLF CRLF ping is answered with a CRLF pong (``pongs_due``); lone CRLFs are skipped.
"""

from __future__ import annotations

import re

from callroom.errors import ProtocolError
from callroom.sip.message import MAX_HEADER_VALUES, MAX_MESSAGE

MAX_HEADER_LINES = MAX_HEADER_VALUES  # lines of a head (a datagram's limit counts values: never fewer lines)
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*$", re.IGNORECASE | re.MULTILINE)
PONG = b"\r\n"


class StreamError(ProtocolError):
    """A stream whose messages cannot be told apart any more (the connection must close)."""


class StreamFramer:
    def __init__(self, max_message: int = MAX_MESSAGE, max_header_lines: int = MAX_HEADER_LINES) -> None:
        self.max_message = max_message
        self.max_header_lines = max_header_lines
        self._buffer = bytearray()
        self.pongs_due = 0  # keep-alive pings seen and not answered yet (the adapter sends PONG and resets it)

    def feed(self, data: bytes) -> list[bytes]:
        """The whole messages that ``data`` completes, in order."""
        self._buffer += data
        out: list[bytes] = []
        while (message := self._next()) is not None:
            out.append(message)
        return out

    def _next(self) -> bytes | None:
        buf = self._buffer
        while buf[:2] == b"\r\n":  # keep-alives between messages
            if buf[:4] == b"\r\n\r\n":
                self.pongs_due += 1
                del buf[:4]
            elif len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                return None  # the rest of a ping may be coming
            else:
                del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.max_message:
                raise StreamError(f"no end of a message head within {self.max_message} bytes")
            if buf.count(b"\n") > self.max_header_lines + 1:
                raise StreamError(f"more than {self.max_header_lines} header lines")
            return None
        head = bytes(buf[:end])
        if head.count(b"\n") > self.max_header_lines:
            raise StreamError(f"more than {self.max_header_lines} header lines")
        lengths = _CONTENT_LENGTH.findall(head.replace(b"\r\n", b"\n"))
        if len(lengths) != 1:
            raise StreamError("a message on a stream needs one Content-Length" if not lengths else
                              "more than one Content-Length")
        total = end + 4 + int(lengths[0])
        if total > self.max_message:
            raise StreamError(f"a message of {total} bytes (at most {self.max_message})")
        if len(buf) < total:
            return None
        message = bytes(buf[:total])
        del buf[:total]
        return message

    @property
    def buffered(self) -> int:
        return len(self._buffer)
