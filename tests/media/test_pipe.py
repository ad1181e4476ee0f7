"""The API -> media command channel: frames survive any split, and a full pipe never blocks the writer."""

from __future__ import annotations

import asyncio
import os

from callroom.media.pipe import FrameReader, PipeWriter, frame


def test_frames_come_out_whole_however_the_bytes_are_split() -> None:
    messages = [("ops", [1, 2, 3]), ("press", "cid", "123#", 80), ("batch", [("stop",)] * 50)]
    data = b"".join(frame(m) for m in messages)
    for step in (1, 3, 7, len(data)):
        reader = FrameReader()
        out = []
        for i in range(0, len(data), step):
            out += reader.feed(data[i : i + step])
        assert out == messages


def test_a_full_pipe_buffers_in_order_and_never_blocks() -> None:
    async def scenario() -> list[object]:
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        try:
            writer = PipeWriter(loop, w)
            big = "x" * 10_000
            for i in range(200):  # ~2 MB: far more than a pipe holds while nobody reads
                writer.write(("n", i, big))
            assert writer.pending > 0  # the rest waits in memory; the calls above returned at once
            os.set_blocking(r, False)
            reader = FrameReader()
            got: list[object] = []
            while len(got) < 200:
                try:
                    got += reader.feed(os.read(r, 1 << 16))
                except BlockingIOError:
                    await asyncio.sleep(0)  # let the loop write more as the pipe drains
            await writer.drain(1.0)
            assert writer.pending == 0
            return [m[1] for m in got]  # type: ignore[index]
        finally:
            os.close(r)
            os.close(w)

    assert asyncio.run(scenario()) == list(range(200))
