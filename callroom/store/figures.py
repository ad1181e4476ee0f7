"""The counts behind the node's operations figures (``/metrics``, the console's front page): live calls of a
node by state, the conferences it mixes, the callers waiting in queues; and which account a conference
belongs to (the media process names conferences only). Read-only, a few indexed counts per sample."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select

from callroom.model.states import ConferenceStatus
from callroom.store import schema as t
from callroom.store.tx import Tx


@dataclass(frozen=True, slots=True)
class Counts:
    calls_by_state: dict[str, int] = field(default_factory=dict)  # this node's calls that have not ended
    conferences: int = 0  # conferences not completed whose home is this node (or no node: a single node's)
    queued: int = 0  # callers waiting in queues, every node's


def counts(tx: Tx, node_id: str) -> Counts:
    calls = t.calls.c
    by_state = tx.conn.execute(
        select(calls.state, func.count()).where(calls.node_id == node_id, t.LIVE_CALL).group_by(calls.state)
    ).all()
    conf = t.conferences.c
    conferences = tx.conn.execute(
        select(func.count()).select_from(t.conferences).where(
            conf.status != ConferenceStatus.COMPLETED.value, or_(conf.node_id == node_id, conf.node_id.is_(None)))
    ).scalar()
    queued = tx.conn.execute(
        select(func.count()).select_from(t.queue_entries).where(t.queue_entries.c.is_alive.is_(True))
    ).scalar()
    return Counts({str(state): int(n) for state, n in by_state}, int(conferences or 0), int(queued or 0))


def conference_accounts(tx: Tx, conference_ids: Collection[str]) -> dict[str, str]:
    """conference id -> account id, for those of ``conference_ids`` that exist."""
    if not conference_ids:
        return {}
    conf = t.conferences.c
    rows = tx.conn.execute(select(conf.id, conf.account_id).where(conf.id.in_(list(conference_ids)))).all()
    return {str(cid): str(account) for cid, account in rows}
