"""Time formatting at the edges: records hold Unix seconds, the wire holds ISO 8601 UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """``2026-01-02T03:04:05.678901Z`` for a Unix time, ``None`` for ``None``."""
    if ts is None:
        return None
    # isoformat is faster than strftime and, with microseconds forced, gives the same text
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds")[:-6] + "Z"
