"""Talker detection: who has the floor of a conference, from each member's smoothed level per tick (the
mixer measures the levels; ``conference.floor.changed`` is reported from here). Pure, no I/O."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["FloorChange", "TalkerDetector"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class FloorChange(Generic[K]):
    previous: K | None
    current: K | None


class TalkerDetector(Generic[K]):
    """Decides who has the floor from per-tick levels (dBov), with hysteresis.

    A port is active when its level is at least ``min_level_dbov``. With the floor free, the loudest
    active port takes it after being loudest for ``hold_ticks`` ticks in a row. A challenger takes the
    floor from the holder after being louder by ``switch_margin_db`` for ``hold_ticks`` ticks; the
    holder loses it after ``hold_ticks`` inactive ticks (or at once if it disappears).
    """

    def __init__(self, min_level_dbov: float = -45.0, hold_ticks: int = 10,
                 switch_margin_db: float = 3.0) -> None:
        self.min_level_dbov = min_level_dbov
        self.hold_ticks = hold_ticks
        self.switch_margin_db = switch_margin_db
        self.current: K | None = None
        self._challenger: K | None = None
        self._challenger_ticks = 0
        self._quiet_ticks = 0

    def update(self, levels: Mapping[K, float]) -> FloorChange[K] | None:
        active = {p: v for p, v in levels.items() if v >= self.min_level_dbov}
        loudest = max(active, key=lambda p: active[p], default=None)
        cur = self.current
        if cur is not None and cur not in levels:
            return self._set(None)

        if cur is not None:
            self._quiet_ticks = 0 if cur in active else self._quiet_ticks + 1
            if self._quiet_ticks >= self.hold_ticks:
                return self._set(None)

        candidate: K | None = None
        if loudest is not None and loudest != cur and (
                cur is None or cur not in active or active[loudest] >= active[cur] + self.switch_margin_db):
            candidate = loudest
        if candidate is None:
            self._challenger, self._challenger_ticks = None, 0
            return None
        if candidate == self._challenger:
            self._challenger_ticks += 1
        else:
            self._challenger, self._challenger_ticks = candidate, 1
        if self._challenger_ticks >= self.hold_ticks:
            return self._set(candidate)
        return None

    def steady(self, loudest: float, current: float | None) -> bool:
        """Whether ``update`` would change nothing this tick (the usual case, told cheaply): ``loudest`` is the
        highest level among the ports, ``current`` the floor holder's (None: no holder, or not among them)."""
        if self._challenger is not None or self._challenger_ticks or self.switch_margin_db <= 0 or self.hold_ticks <= 0:
            return False
        if self.current is None:
            return loudest < self.min_level_dbov  # nobody active: nobody to challenge
        # the holder stays active and nobody is louder than it by the margin (so nobody else is the loudest)
        return (current is not None and self._quiet_ticks == 0 and current >= self.min_level_dbov
                and loudest < current + self.switch_margin_db)

    def _set(self, new: K | None) -> FloorChange[K] | None:
        old = self.current
        self.current = new
        self._challenger, self._challenger_ticks, self._quiet_ticks = None, 0, 0
        return FloorChange(old, new) if new != old else None
