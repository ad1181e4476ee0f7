"""Running one command inside a transaction: its batches of reads, then its writes.

The command is a generator (``control.world.Steps``): each batch it yields is answered at once
(``reads.answer``: one round trip on PostgreSQL) and put in its world; when it returns, what it decided is
written (``writes.write``), to travel with the COMMIT. The store decides nothing: it reads what it is asked
and writes what it is told.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from callroom.model import reads as r
from callroom.model.effects import Effects
from callroom.store import outbox, reads, writes
from callroom.store.tx import Tx

T = TypeVar("T")


class CommandWorld(Protocol):
    """What the runner needs of a command's world (``control.world.World``)."""

    account_id: str
    now: float
    node_id: str

    def take(self, results: dict[r.Read, Any]) -> None: ...
    def effects(self) -> Effects: ...


def run(tx: Tx, world: CommandWorld, steps: Any) -> tuple[Any, Effects, list[outbox.Appended]]:
    """Drive ``steps`` (a generator of read batches, returning the command's result) to its end against
    ``tx``, then write its effects. Returns the result, the effects and the outbox rows of their webhooks."""
    try:
        batch = next(steps)
        while True:
            world.take(reads.answer(tx, world.account_id, batch))
            batch = steps.send(None)
    except StopIteration as stop:
        result = stop.value
    effects = world.effects()
    return result, effects, writes.write(tx, world.account_id, world.now, effects, world.node_id)
