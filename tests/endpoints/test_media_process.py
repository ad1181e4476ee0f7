"""The API side of the media process's pipe: what one turn of the event loop sends goes as one frame, in
order, consecutive instructions merged, and the sender never waits for the pipe."""

from __future__ import annotations

import asyncio
import os
import struct

from callroom.aio.pipe import FrameReader, PipeWriter
from callroom.endpoints.media_process import MediaProcess
from callroom.model import media as m
from callroom.model.messages import Instructions, Message, PressKeys


def test_a_burst_of_one_loop_turn_is_one_frame_in_order() -> None:
    async def scenario() -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        try:
            media = MediaProcess(None, on_fact=lambda _f: None, on_sip_incoming=lambda _c: None,
                                 on_sip_fact=lambda _f: None)
            # The pipe MediaProcess.start() would open to a media process, without the process.
            media._loop = loop
            media._commands = PipeWriter(loop, w)
            for i in range(50):
                media.apply([m.Park(f"v3:{i}")])
            media.send(PressKeys("v3:1", "1#", 100))
            media.apply([m.Release("v3:2")])
            os.set_blocking(r, False)
            try:
                early = os.read(r, 1)
            except BlockingIOError:
                early = b""
            assert early == b""  # nothing is written until the loop turns
            await asyncio.sleep(0)
            data = os.read(r, 1 << 20)
            return len(data), data
        finally:
            os.close(r)
            os.close(w)

    size, data = asyncio.run(scenario())
    (length,) = struct.unpack_from("!I", data)
    assert length + 4 == size  # one frame
    got: list[Message] = FrameReader().feed(data)
    assert got == [Instructions(tuple(m.Park(f"v3:{i}") for i in range(50))), PressKeys("v3:1", "1#", 100),
                   Instructions((m.Release("v3:2"),))]
