"""What the console shows that Telnyx's API has no listing for: an account's live calls, with where each
is (conference, queue, bridge)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from callroom.model.states import CallState
from callroom.store import schema as t
from callroom.store.tx import Tx

LIVE_CALLS_LIMIT = 500

_COLUMNS = ("call_control_id", "call_session_id", "connection_id", "direction", "from_", "to", "state",
            "created_at", "answered_at", "bridged_with", "conference_id", "queue_id", "client_state", "node_id")


def live_calls(tx: Tx, account_id: str, limit: int = LIVE_CALLS_LIMIT) -> list[dict[str, Any]]:
    """The account's calls that have not ended, oldest first (at most ``limit``)."""
    c = t.calls.c
    stmt = (select(*[getattr(c, name) for name in _COLUMNS])
            .where(c.account_id == account_id, c.state != CallState.ENDED.value)
            .order_by(c.created_at).limit(limit))
    return [dict(row._mapping) for row in tx.conn.execute(stmt)]
