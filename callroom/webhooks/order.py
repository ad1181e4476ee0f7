"""How far each order key's events are known to be settled, so that the dispatcher can tell without
asking the store that a key's next event may be sent.

The events of one order key (a call, a conference) are numbered 1, 2, ... (``call_sequence`` /
``conference_sequence``) in the order of their outbox ids. An event may be sent only once every older
event of its key is settled: delivered or given up, here or by any other process sharing the outbox.
Number 1 has nothing before it; number n may go at once when n - 1 was settled here. Anything else (a
key's first event since this process started, a gap left by events another process wrote, a replay) is
a question for the store: are pending rows of the key older than this one left?

Bounded: at most ``capacity`` keys are remembered, the least recently settled forgotten first. Forgetting
a key costs one store query when its next event comes, never order.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_CAPACITY = 50_000


class Settled:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._upto: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._upto)

    def may_send(self, key: str, number: int | None) -> bool:
        """Whether event ``number`` of ``key`` may be sent without asking the store."""
        if number is None:
            return False
        return number == 1 or self._upto.get(key) == number - 1

    def settle(self, key: str, number: int) -> None:
        """Every event of ``key`` numbered up to ``number`` is settled (0: none before number 1)."""
        self._upto[key] = number
        self._upto.move_to_end(key)
        while len(self._upto) > self.capacity:
            self._upto.popitem(last=False)

    def forget(self, key: str) -> None:
        """Settled events of ``key`` became pending again (a replay): ask the store next time."""
        self._upto.pop(key, None)
