"""The bus for real: two ``Bus`` ends on the local NATS server, the wire's encoding, and a node that is not
there or does not answer in time (``cluster/bus.py``, ``cluster/wire.py``)."""

from __future__ import annotations

import asyncio
import os
import pickle
import time
import typing
import uuid
from collections.abc import AsyncIterator

import pytest

from callroom.cluster import messages as bus
from callroom.cluster import wire
from callroom.cluster.bus import Bus, NodeUnreachable
from callroom.model import media as m

NATS_URL = os.environ.get("CALLROOM_TEST_NATS_URL", "nats://127.0.0.1:4222")


def test_every_bus_message_survives_the_wire() -> None:
    mix = m.ConferenceMix("conf", (m.ConferenceMember("a", True, False, "whisper", ("b",), "url:x"),), beep="enter")
    samples: list[bus.BusMessage] = [
        bus.Apply((mix, m.Park("a"), m.Play("j", m.AudioSpec("tts", "hi", "female"), ("a",))), (("a", "n1"),)),
        bus.Link("relay:a@conf", "a", ("127.0.0.1", 20000)), bus.PhoneKeys("a", "12#", 80), bus.PhoneHangup("a"),
        bus.PhoneHeard("a", 0.5), bus.CallQuality("a"), bus.Done(False), bus.Linked("10.0.0.2", 20002),
        bus.PhoneAudio(b"\x01\x00" * 4), bus.Quality({"mos": 4.3}), bus.Failed("no"),
    ]  # fmt: skip
    assert {type(s) for s in samples} == set(typing.get_args(bus.BusRequest) + typing.get_args(bus.BusReply))
    for sample in samples:
        assert wire.decode(wire.encode(sample)) == sample


def test_bytes_that_name_anything_else_are_refused_not_run() -> None:
    with pytest.raises(wire.WireError, match=r"(posix|os)\.system"):
        wire.decode(pickle.dumps(os.system))
    with pytest.raises(wire.WireError):
        wire.decode(pickle.dumps(("not", "a", "message")))
    with pytest.raises(wire.WireError):
        wire.decode(b"\x80\x05garbage")


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Bus, Bus]]:
    cluster = uuid.uuid4().hex[:8]
    got: list[bus.BusRequest] = []

    async def serve_a(request: bus.BusRequest) -> bus.BusReply:
        got.append(request)
        return bus.Done()

    async def serve_b(request: bus.BusRequest) -> bus.BusReply:
        if isinstance(request, bus.PhoneHeard):
            await asyncio.sleep(request.seconds or 0)  # a slow node
            return bus.PhoneAudio(None)
        if isinstance(request, bus.PhoneHangup):
            raise RuntimeError("phone on fire")
        return bus.Linked("127.0.0.1", 20000)

    a, b = Bus(NATS_URL, cluster, "a", serve_a), Bus(NATS_URL, cluster, "b", serve_b)
    try:
        await a.start(connect_timeout=2)
        await b.start(connect_timeout=2)
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"NATS is unreachable at {NATS_URL}: {exc}")
        pytest.skip(f"NATS is unreachable: {exc}")
    a.got = got  # type: ignore[attr-defined]
    yield a, b
    await a.close()
    await b.close()


async def test_a_request_gets_its_reply(pair: tuple[Bus, Bus]) -> None:
    a, b = pair
    assert await b.ask("a", bus.Apply((m.Park("x"),))) == bus.Done()
    assert a.got == [bus.Apply((m.Park("x"),))]  # type: ignore[attr-defined]
    assert await a.ask("b", bus.Link("r", "x", ("127.0.0.1", 1))) == bus.Linked("127.0.0.1", 20000)


async def test_a_node_not_on_the_bus_is_unreachable_at_once(pair: tuple[Bus, Bus]) -> None:
    a, _ = pair
    started = time.monotonic()
    with pytest.raises(NodeUnreachable, match="not on the bus") as gone:
        await a.ask("nobody", bus.Apply(()), timeout=5)
    assert gone.value.node_id == "nobody"
    assert time.monotonic() - started < 2  # answered by NATS, not by the timeout


async def test_a_slow_node_times_out_and_a_failing_one_says_why(pair: tuple[Bus, Bus]) -> None:
    a, _ = pair
    with pytest.raises(NodeUnreachable, match="no reply within"):
        await a.ask("b", bus.PhoneHeard("x", 1.0), timeout=0.2)
    with pytest.raises(NodeUnreachable, match="phone on fire"):
        await a.ask("b", bus.PhoneHangup("x"))
    # a slow request holds up none behind it
    slow = asyncio.ensure_future(a.ask("b", bus.PhoneHeard("x", 0.5), timeout=2))
    started = time.monotonic()
    assert await a.ask("b", bus.Link("r", "x", ("127.0.0.1", 1))) == bus.Linked("127.0.0.1", 20000)
    assert time.monotonic() - started < 0.4
    assert await slow == bus.PhoneAudio(None)


async def test_clusters_on_one_server_do_not_hear_each_other(pair: tuple[Bus, Bus]) -> None:
    a, _ = pair

    async def serve(request: bus.BusRequest) -> bus.BusReply:
        return bus.Failed("wrong cluster")

    other = Bus(NATS_URL, "another-" + a.cluster, "b", serve)
    await other.start()
    try:
        assert await a.ask("b", bus.Link("r", "x", ("127.0.0.1", 1))) == bus.Linked("127.0.0.1", 20000)
    finally:
        await other.close()
