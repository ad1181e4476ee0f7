"""``/v2/cluster`` (callroom's own): the nodes of this node's cluster, their health, calls and load."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from callroom.api.common import Account, Ctl, data
from callroom.cluster.membership import TIME_TO_LIVE_SECS
from callroom.control.service import ReadCtx
from callroom.store import nodes
from callroom.timefmt import iso

router = APIRouter()


def cluster_view(q: ReadCtx, now: float, ttl: float) -> dict[str, Any]:
    """Every node's row as the cluster sees it now: ``health`` is up / draining (up, taking no new calls) /
    late (no heartbeat for more than two heartbeats) / dead (past the time to live, or claimed by a survivor)
    / stopped."""
    rows = nodes.listing(q.tx)
    calls = nodes.live_calls_by_node(q.tx)
    out = []
    for row in rows:
        age = now - row.heartbeat_at
        health = row.status
        if row.status == nodes.UP:
            health = "dead" if age > ttl else ("late" if age > ttl / 2 else "up")
            if health == "up" and row.draining_since is not None:
                health = "draining"
        out.append({
            "node_id": row.node_id, "health": health, "status": row.status, "heartbeat_age_secs": round(age, 3),
            "started_at": iso(row.started_at), "api_url": row.api_url,
            "sip": f"{row.sip_host}:{row.sip_port}" if row.sip_host and row.sip_port else None,
            "live_calls": calls.get(row.node_id, 0), "load": row.load, "reaped_by": row.reaped_by,
            "draining_since": iso(row.draining_since) if row.draining_since is not None else None,
        })  # fmt: skip
    return {"record_type": "cluster", "node_id": q.node_id, "nodes": out}


@router.get("/cluster")
async def cluster(account: Account, ctl: Ctl) -> dict[str, Any]:
    """The cluster as this node sees it (any API key may ask: nodes carry no account's data)."""
    return data(await ctl.aread(account, lambda q: cluster_view(q, time.time(), TIME_TO_LIVE_SECS)))
