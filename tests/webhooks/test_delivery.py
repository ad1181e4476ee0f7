"""Webhook delivery against a real receiver that fails, recovers, and has a failover URL."""

from __future__ import annotations

import uuid

from tests.support.receiver import Received
from tests.support.tenant import Tenant


def _app(tenant: Tenant, primary: str, failover: str | None = None) -> str:
    app = tenant.client.call_control_applications.create(
        application_name=f"app-{uuid.uuid4().hex[:6]}",
        webhook_event_url=tenant.receiver.url(primary),
        webhook_event_failover_url=tenant.receiver.url(failover) if failover else None,
    )
    assert app.data is not None and app.data.id
    return app.data.id


def _for(path: str, event_type: str, cid: str) -> object:
    def match(r: Received) -> bool:
        return r.path == path and r.event_type == event_type and r.payload.get("call_control_id") == cid

    return match


def test_retries_until_the_receiver_recovers(tenant: Tenant) -> None:
    path = f"/flaky/{uuid.uuid4().hex}"
    failures = {"left": 2}

    def status(p: str) -> int:
        if p == path and failures["left"] > 0:
            failures["left"] -= 1
            return 503
        return 200

    tenant.receiver.status_for = status
    try:
        tenant.connection_id = _app(tenant, path)
        resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+1", to="virtual:r;noanswer")
        assert resp.data is not None
        cid = resp.data.call_control_id
        attempts = tenant.receiver.wait_for(_for(path, "call.initiated", cid), count=3)  # type: ignore[arg-type]
        assert [a.json["meta"]["attempt"] for a in attempts] == [1, 2, 3]
        assert len({a.json["data"]["id"] for a in attempts}) == 1  # the same event, retried
        for a in attempts:
            tenant.client.webhooks.unwrap(a.body, headers=a.headers, key=tenant.node.public_key)
    finally:
        tenant.receiver.status_for = lambda _p: 200


def test_failover_url_after_the_primary_gives_up(tenant: Tenant) -> None:
    primary, failover = f"/down/{uuid.uuid4().hex}", f"/backup/{uuid.uuid4().hex}"
    tenant.receiver.status_for = lambda p: 500 if p == primary else 200
    try:
        tenant.connection_id = _app(tenant, primary, failover)
        resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+1", to="virtual:f;noanswer")
        assert resp.data is not None
        cid = resp.data.call_control_id
        got = tenant.receiver.wait_for(_for(failover, "call.initiated", cid))[0]  # type: ignore[arg-type]
        assert got.json["meta"]["delivered_to"] == tenant.receiver.url(failover)
        tried = [r for r in tenant.receiver.requests if r.path == primary]
        assert len(tried) == 3
    finally:
        tenant.receiver.status_for = lambda _p: 200


def test_events_of_one_call_stay_in_order_while_a_delivery_is_retried(tenant: Tenant) -> None:
    path = f"/slow/{uuid.uuid4().hex}"
    failures = {"left": 2}

    def status(p: str) -> int:
        if p == path and failures["left"] > 0:
            failures["left"] -= 1
            return 500
        return 200

    tenant.receiver.status_for = status
    try:
        tenant.connection_id = _app(tenant, path)
        cid = tenant.dial("o")  # initiated is retried twice; answered must not overtake it
        tenant.client.calls.actions.hangup(cid)
        tenant.receiver.wait_for(_for(path, "call.hangup", cid))  # type: ignore[arg-type]
        delivered = [r.event_type for r in tenant.receiver.requests if r.path == path and r.body]
        # first two attempts of call.initiated failed; after that each event arrives once, in order
        assert delivered == ["call.initiated"] * 3 + ["call.answered", "call.hangup"]
    finally:
        tenant.receiver.status_for = lambda _p: 200
