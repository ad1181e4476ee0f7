"""The channels between the API and media processes: frames survive any split, a full pipe never blocks
the API's writer, and a reply larger than the socket's buffer reaches a non-blocking reader whole."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

from callroom.media.pipe import FrameReader, PipeWriter, frame, write_all


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


def test_a_message_larger_than_the_socket_buffer_arrives_whole_at_a_non_blocking_reader() -> None:
    # The media process answers over a socket pair; the API end is non-blocking and reads what is there.
    # A reply bigger than the socket's buffer arrives in pieces, with reads in between that find nothing.
    api, media = socket.socketpair()
    with api, media:
        api.setblocking(False)
        big = [bytes([i % 251]) * 100_000 for i in range(8)]  # 800 kB, several socket buffers
        def write_big() -> None:
            for i, b in enumerate(big):
                write_all(media.fileno(), ("reply", i, b))

        writer = threading.Thread(target=write_big)
        writer.start()
        reader = FrameReader()
        got: list[object] = []
        while len(got) < len(big):
            try:
                got += reader.feed(os.read(api.fileno(), 1 << 16))
            except BlockingIOError:  # the rest is not written yet
                threading.Event().wait(0.001)
        writer.join()
        assert got == [("reply", i, b) for i, b in enumerate(big)]


def test_every_instruction_and_fact_crosses_the_pipe_unchanged() -> None:
    import dataclasses
    import typing

    from callroom.model import media as m

    def sample(cls: type) -> object:
        values: dict[str, object] = {}
        hints = typing.get_type_hints(cls)
        for i, f in enumerate(dataclasses.fields(cls)):
            hint = str(hints[f.name])
            if "tuple" in hint:
                values[f.name] = ("a", "b") if "str" in hint else ()
            elif "bool" in hint:
                values[f.name] = True
            elif "int" in hint or "float" in hint:
                values[f.name] = 7 + i
            elif "AudioSpec" in hint:
                values[f.name] = m.AudioSpec("tts", "hello", voice="female")
            else:
                values[f.name] = f"{f.name}-{i}"
        return cls(**values)

    ops = [sample(cls) for cls in typing.get_args(m.MediaOp) + typing.get_args(m.MediaFact)]
    members = tuple(m.ConferenceMember(f"v3:{i}", i % 2 == 0, False, "none", ("v3:0",), None) for i in range(3))
    ops.append(m.ConferenceMix("conf", members, False, "enter", "url:http://127.0.0.1/a.wav"))
    assert len(ops) == 24
    reader = FrameReader()
    assert reader.feed(frame(("ops", ops))) == [("ops", ops)]
