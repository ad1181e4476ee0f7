"""The channels between the API and media processes: frames survive any split, a full pipe never blocks
the API's writer, and a reply larger than the socket's buffer reaches a non-blocking reader whole."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import numpy as np

from callroom.aio.pipe import FrameReader, PipeWriter, frame, write_all
from callroom.model import media as m
from callroom.model.messages import HeardReply, Instructions, Message, PressKeys, Stop


def test_frames_come_out_whole_however_the_bytes_are_split() -> None:
    frames: list[list[Message]] = [[Instructions((m.Park("1"), m.Park("2"), m.Park("3")))],
                                   [PressKeys("cid", "123#", 80)], [Stop()] * 50]
    data = b"".join(frame(f) for f in frames)
    for step in (1, 3, 7, len(data)):
        reader = FrameReader()
        out = []
        for i in range(0, len(data), step):
            out += reader.feed(data[i : i + step])
        assert out == [message for f in frames for message in f]


def test_a_full_pipe_buffers_in_order_and_never_blocks() -> None:
    async def scenario() -> list[object]:
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        try:
            writer = PipeWriter(loop, w)
            big = "x" * 10_000
            for i in range(200):  # ~2 MB: far more than a pipe holds while nobody reads
                writer.write([PressKeys(f"v3:{i}", big, i)])
            assert writer.pending > 0  # the rest waits in memory; the calls above returned at once
            os.set_blocking(r, False)
            reader = FrameReader()
            got: list[Message] = []
            while len(got) < 200:
                try:
                    got += reader.feed(os.read(r, 1 << 16))
                except BlockingIOError:
                    await asyncio.sleep(0)  # let the loop write more as the pipe drains
            await writer.drain(1.0)
            assert writer.pending == 0
            return [message.duration_ms for message in got if isinstance(message, PressKeys)]
        finally:
            os.close(r)
            os.close(w)

    assert asyncio.run(scenario()) == list(range(200))


def test_a_message_larger_than_the_socket_buffer_arrives_whole_at_a_non_blocking_reader() -> None:
    # The media process answers over a socket pair; the API end is non-blocking and reads what is there.
    # A reply bigger than the socket's buffer arrives in pieces, with reads in between that find nothing.
    api, media = socket.socketpair()
    with api, media:
        api.setblocking(False)
        big = [bytes([i % 251]) * 100_000 for i in range(8)]  # 800 kB, several socket buffers
        def write_big() -> None:
            for i, b in enumerate(big):
                write_all(media.fileno(), [HeardReply(i, np.frombuffer(b, dtype=np.int16))])

        writer = threading.Thread(target=write_big)
        writer.start()
        reader = FrameReader()
        got: list[Message] = []
        while len(got) < len(big):
            try:
                got += reader.feed(os.read(api.fileno(), 1 << 16))
            except BlockingIOError:  # the rest is not written yet
                threading.Event().wait(0.001)
        writer.join()
        assert [(r.request_id, r.samples.tobytes()) for r in got if isinstance(r, HeardReply) and r.samples is not None
                ] == list(enumerate(big))
