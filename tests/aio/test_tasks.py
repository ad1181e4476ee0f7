"""``Tasks``: held until they end, cancelled together."""

from __future__ import annotations

import asyncio

from callroom.aio.tasks import Tasks


async def test_a_task_is_held_until_it_ends_and_close_cancels_the_rest() -> None:
    tasks = Tasks()
    done = asyncio.Event()
    cancelled: list[str] = []

    async def quick() -> None:
        done.set()

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    tasks.spawn(quick(), name="quick")
    tasks.spawn(forever("a"))
    tasks.spawn(forever("b"))
    assert len(tasks) == 3
    await done.wait()
    await asyncio.sleep(0)
    assert len(tasks) == 2  # the finished one is let go
    await tasks.close()
    assert sorted(cancelled) == ["a", "b"] and len(tasks) == 0
