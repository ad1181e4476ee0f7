"""The tasks an I/O adapter starts and owns.

The event loop keeps only weak references to its tasks: one nobody holds may be collected half-way. An
adapter keeps its own in a ``Tasks`` until they end, and cancels what is left when it closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any


class Tasks:
    def __init__(self) -> None:
        self._live: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter(list(self._live))

    def spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]:
        """Run ``coro`` as a task held here until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._live.add(task)
        task.add_done_callback(self._live.discard)
        return task

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel every live task; returns them (to wait for, if the caller can)."""
        tasks = list(self._live)
        for task in tasks:
            task.cancel()
        return tasks

    async def close(self) -> None:
        """Cancel every live task and wait until they have all ended."""
        await asyncio.gather(*self.cancel(), return_exceptions=True)
