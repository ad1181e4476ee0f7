"""The API side of the media process's pipe: what one turn of the event loop sends goes as one frame, in
order, consecutive instructions merged, and the sender never waits for the pipe."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time

import pytest

from callroom.aio.pipe import FrameReader, PipeWriter
from callroom.endpoints.media_process import READY_TIMEOUT_SECS, MediaProcess
from callroom.errors import StartupError
from callroom.model import media as m
from callroom.model.messages import Instructions, Message, PressKeys, SipConfig


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


def test_a_media_process_that_cannot_bind_its_sip_port_says_so_at_once() -> None:
    """``callroom serve`` tries the SIP port before it loads the node (``preflight.py``); a port taken after
    that try is still said, by the media process, as soon as its bind fails: not once the wait for it runs
    out (``READY_TIMEOUT_SECS``)."""

    async def scenario(port: int) -> str:
        media = MediaProcess(SipConfig(port=port), on_fact=lambda _f: None, on_sip_incoming=lambda _c: None,
                             on_sip_fact=lambda _f: None)
        try:
            with pytest.raises(StartupError) as raised:
                await media.start()
        finally:
            await media.stop()
        return str(raised.value)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        started = time.monotonic()
        reason = asyncio.run(scenario(port))
        elapsed = time.monotonic() - started
    assert reason.startswith(f"cannot listen for SIP on udp 127.0.0.1:{port}: "), reason
    # Spawning the process and importing its modules take seconds on a busy machine; a wait for the ready
    # timeout would take READY_TIMEOUT_SECS.
    assert elapsed < READY_TIMEOUT_SECS / 2, elapsed
