"""Time formatting at the edges: records hold Unix seconds, the wire holds ISO 8601 UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def iso(ts: float | None) -> str | None:
    """``2026-01-02T03:04:05.678901Z`` for a Unix time, ``None`` for ``None``."""
    if ts is None:
        return None
    return _iso(ts)


@lru_cache(maxsize=8192)
def _iso(ts: float) -> str:
    # The same instants are rendered again and again (a participant's joined_at in every listing, a
    # call's start time in every webhook of it): remembering the recent ones saves ~3 % of an API
    # request's CPU. isoformat is faster than strftime and, with microseconds forced, gives the same text.
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds")[:-6] + "Z"
