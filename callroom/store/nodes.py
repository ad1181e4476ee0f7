"""The nodes of a cluster as the store keeps them: each node's row and heartbeat, and the claim of a dead
node by one survivor (the row lock decides which: exactly one gets it).

A node is *up* while its heartbeat is fresh (*draining* if it takes no new calls meanwhile), *stopped*
when it stopped cleanly (its calls ended by itself), *dead* once a survivor found its heartbeat older than
the time to live and claimed it; that survivor ends the dead node's calls and delivers its pending
webhooks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from callroom.model.states import CallState, ConferenceStatus
from callroom.store import schema as t
from callroom.store.sql import prebuilt
from callroom.store.tx import Tx

UP, STOPPED, DEAD = "up", "stopped", "dead"


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    status: str
    started_at: float
    heartbeat_at: float
    api_url: str | None
    sip_host: str | None
    sip_port: int | None
    load: dict[str, Any]
    reaped_by: str | None
    reaped_at: float | None
    draining_since: float | None = None


def register(tx: Tx, node_id: str, now: float, *, api_url: str | None, sip_host: str | None,
             sip_port: int | None) -> None:  # fmt: skip
    """The node starts (or starts again with its id): up, with a fresh heartbeat."""
    values = {"status": UP, "started_at": now, "heartbeat_at": now, "api_url": api_url, "sip_host": sip_host,
              "sip_port": sip_port, "load": {}, "reaped_by": None, "reaped_at": None,
              "draining_since": None}  # fmt: skip
    found = tx.conn.execute(select(t.nodes.c.node_id).where(t.nodes.c.node_id == node_id).with_for_update()).first()
    if found is None:
        tx.conn.execute(insert(t.nodes).values(node_id=node_id, **values))
    else:
        tx.conn.execute(update(t.nodes).where(t.nodes.c.node_id == node_id).values(**values))


@dataclass(frozen=True, slots=True)
class Beat:
    alive: bool  # False: the node was declared dead meanwhile (it must not go on as if it were up)
    draining_since: float | None  # set: the node is asked to drain (or drains already)


def beat(tx: Tx, node_id: str, now: float, load: dict[str, Any]) -> Beat:
    """The node is alive (and hears whether it is asked to drain)."""
    c = t.nodes.c
    stmt = prebuilt("node_beat", lambda: update(t.nodes).where(c.node_id == bindparam("id"), c.status == UP)
                    .values(heartbeat_at=bindparam("now"), load=bindparam("load")).returning(c.draining_since))
    row = tx.conn.execute(stmt, {"id": node_id, "now": now, "load": load}).first()
    return Beat(row is not None, float(row[0]) if row is not None and row[0] is not None else None)


def freshest_up(tx: Tx, now: float, ttl: float) -> str | None:
    """The up node with the freshest heartbeat (within ``ttl``), if any."""
    c = t.nodes.c
    stmt = (select(c.node_id).where(c.status == UP, c.heartbeat_at >= now - ttl)
            .order_by(c.heartbeat_at.desc()).limit(1))  # fmt: skip
    found = tx.conn.execute(stmt).scalar()
    return str(found) if found is not None else None


def drain(tx: Tx, node_id: str, now: float) -> bool:
    """Mark ``node_id`` draining (it takes no new calls from now on, and stops once its calls have ended).
    False if no such node is up."""
    c = t.nodes.c
    stmt = (update(t.nodes).where(c.node_id == node_id, c.status == UP)
            .values(draining_since=func.coalesce(c.draining_since, now)))
    return int(tx.conn.execute(stmt).rowcount) == 1


def live_calls_of(tx: Tx, node_id: str) -> int:
    c = t.calls.c
    return int(tx.conn.execute(select(func.count()).where(c.node_id == node_id, t.LIVE_CALL)).scalar_one())


def recordings_under_way(tx: Tx, node_id: str) -> int:
    """Recordings not yet saved of the calls on ``node_id`` and of the conferences it mixes (on a node of its
    own, conferences have no home: all of them)."""
    jobs, calls, confs = t.media_jobs.c, t.calls.c, t.conferences.c
    of_calls = select(calls.call_control_id).where(calls.node_id == node_id).scalar_subquery()
    of_confs = select(confs.id).where((confs.node_id == node_id) | confs.node_id.is_(None)).scalar_subquery()
    stmt = select(func.count()).where(
        jobs.kind == "record", jobs.status != "done",
        jobs.call_control_id.in_(of_calls) | jobs.conference_id.in_(of_confs),
    )
    return int(tx.conn.execute(stmt).scalar_one())


def stopped(tx: Tx, node_id: str, now: float) -> None:
    c = t.nodes.c
    tx.conn.execute(update(t.nodes).where(c.node_id == node_id).values(status=STOPPED, heartbeat_at=now))


def claim_dead(tx: Tx, survivor: str, now: float, ttl: float) -> list[str]:
    """The nodes whose heartbeat is older than ``ttl`` seconds, now dead and claimed by ``survivor`` (a node
    another survivor claimed first is not among them)."""
    c = t.nodes.c
    stmt = prebuilt("claim_dead_nodes", lambda: update(t.nodes).where(
        c.status == UP, c.heartbeat_at < bindparam("cutoff"), c.node_id != bindparam("me"),
    ).values(status=DEAD, reaped_by=bindparam("me"), reaped_at=bindparam("now")).returning(c.node_id))
    return [str(r[0]) for r in tx.conn.execute(stmt, {"cutoff": now - ttl, "me": survivor, "now": now})]


def orphaned(tx: Tx, survivor: str, limit: int = 500) -> list[tuple[str, str]]:
    """(account, call_control_id) of live calls whose node is dead and was claimed by ``survivor``, or by a
    node that is itself no longer up (its reaper died before finishing), or that stopped (its media went
    with it; any survivor ends them, once: each end takes the call's lock)."""
    calls, nodes = t.calls.c, t.nodes.c
    reaper = t.nodes.alias("reaper")
    stmt = (select(calls.account_id, calls.call_control_id)
            .join(t.nodes, nodes.node_id == calls.node_id)
            .outerjoin(reaper, reaper.c.node_id == nodes.reaped_by)
            .where(and_(nodes.status.in_((DEAD, STOPPED)), t.LIVE_CALL,
                        (nodes.reaped_by == survivor) | (reaper.c.status != UP) | reaper.c.node_id.is_(None)))
            .limit(limit))  # fmt: skip
    return [(str(a), str(cid)) for a, cid in tx.conn.execute(stmt)]


def homeless_conferences(tx: Tx, limit: int = 500) -> list[tuple[str, str, str]]:
    """(account, conference id, home) of live conferences whose home node is no longer up (dead or stopped)."""
    confs, nodes = t.conferences.c, t.nodes.c
    stmt = (select(confs.account_id, confs.id, confs.node_id).join(t.nodes, nodes.node_id == confs.node_id)
            .where(and_(confs.status != ConferenceStatus.COMPLETED.value, nodes.status != UP)).limit(limit))
    return [(str(a), str(conf), str(home)) for a, conf, home in tx.conn.execute(stmt)]


def conferences_homed_on(tx: Tx, node_id: str, limit: int = 500) -> list[tuple[str, str]]:
    """(account, conference id) of live conferences mixed on ``node_id``."""
    c = t.conferences.c
    stmt = (select(c.account_id, c.id).where(and_(c.node_id == node_id, c.status != ConferenceStatus.COMPLETED.value))
            .limit(limit))  # fmt: skip
    return [(str(a), str(conf)) for a, conf in tx.conn.execute(stmt)]


def statuses(tx: Tx) -> dict[str, str]:
    c = t.nodes.c
    return {str(n): str(s) for n, s in tx.conn.execute(select(c.node_id, c.status))}


def listing(tx: Tx) -> list[NodeRow]:
    return [NodeRow(**dict(r._mapping)) for r in tx.conn.execute(select(t.nodes).order_by(t.nodes.c.node_id))]


def live_calls_by_node(tx: Tx) -> dict[str, int]:
    c = t.calls.c
    rows = tx.conn.execute(select(c.node_id, func.count()).where(t.LIVE_CALL).group_by(c.node_id))
    return {str(node): int(n) for node, n in rows}


CLUSTER_SETTING = "cluster_name"


def cluster_name(tx: Tx) -> str:
    """The cluster's name on the bus: made by the first node of a database, read by every other (nodes
    starting at once agree: the first insert wins, the others' do nothing)."""
    dialect_insert = pg_insert if tx.conn.dialect.name == "postgresql" else sqlite_insert
    tx.conn.execute(dialect_insert(t.settings).values(key=CLUSTER_SETTING, value=uuid.uuid4().hex[:12])
                    .on_conflict_do_nothing())  # fmt: skip
    return str(tx.conn.execute(select(t.settings.c.value).where(t.settings.c.key == CLUSTER_SETTING)).scalar_one())


def ended_by_the_cluster(tx: Tx, node_id: str, since: float) -> list[str]:
    """The calls of ``node_id`` the cluster ended since ``since`` (while it was taken for dead)."""
    c = t.calls.c
    stmt = select(c.call_control_id).where(and_(c.node_id == node_id, c.state == CallState.ENDED.value,
                                                c.ended_at >= since))  # fmt: skip
    return [str(r[0]) for r in tx.conn.execute(stmt)]


def reaped_at(tx: Tx, node_id: str) -> float | None:
    c = t.nodes.c
    value = tx.conn.execute(select(c.reaped_at).where(c.node_id == node_id)).scalar()
    return float(value) if value is not None else None
