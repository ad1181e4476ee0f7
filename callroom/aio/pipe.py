"""The channels between the API and media processes: frames of messages on pipes.

A frame is a 4-byte big-endian length, then a list of messages encoded by ``model/codec.py``: what one
side has to say in one turn of its loop goes as one frame, encoded once. ``FrameReader`` keeps a partial
frame until the rest arrives, so neither side reads a pipe with blocking calls. API -> media: the
``PipeWriter`` buffers what the pipe cannot take yet and lets the event loop write it when it can, so a
media process busy with its tick never stalls an API request. Media -> API: ``write_all``.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Sequence

from callroom.model.codec import decode, encode
from callroom.model.messages import Message

_HEADER = struct.Struct("!I")
PIPE_BUFFER_BYTES = 1024 * 1024  # the default /proc/sys/fs/pipe-max-size: what a read takes at most


def frame(messages: Sequence[Message]) -> bytes:
    data = encode(messages)
    return _HEADER.pack(len(data)) + data


class FrameReader:
    """Bytes in, the messages of whole frames out, in order (pure: the caller reads the pipe)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out: list[Message] = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            out += decode(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
        return out


def write_all(fd: int, messages: Sequence[Message]) -> None:
    """Write one frame to a blocking pipe (the media process's facts and replies: it may wait for the API
    to read, the API never waits for it)."""
    view = memoryview(frame(messages))
    while view:
        view = view[os.write(fd, view) :]


class PipeWriter:
    """Frames written to a non-blocking pipe from the event loop, in order, never blocking it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self._pending = bytearray()
        self._waiting = False  # registered with the loop for writability
        self.broken = False
        os.set_blocking(fd, False)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write(self, messages: Sequence[Message]) -> None:
        """One frame of ``messages``."""
        if self.broken:
            return
        self._pending += frame(messages)
        if not self._waiting:
            self._write_some()

    def _write_some(self) -> None:
        try:
            written = os.write(self._fd, self._pending)
        except BlockingIOError:
            written = 0
        except OSError:  # the reader has gone
            self.broken = True
            self._pending.clear()
            written = 0
        del self._pending[:written]
        if self._pending and not self._waiting:
            self._loop.add_writer(self._fd, self._write_some)
            self._waiting = True
        elif not self._pending and self._waiting:
            self._loop.remove_writer(self._fd)
            self._waiting = False

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until everything written has gone into the pipe."""
        deadline = self._loop.time() + timeout
        while self._pending and not self.broken and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
