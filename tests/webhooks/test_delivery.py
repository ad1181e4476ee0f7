"""Webhook delivery against a real receiver that fails, recovers, and has a failover URL."""

from __future__ import annotations

import socket
import time
import uuid

import httpx
import pytest
import telnyx

from callroom.outbound import REFUSED_WHY
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


def test_a_webhook_url_the_node_refuses_is_never_contacted_and_the_failure_is_recorded(strict_tenant: Tenant) -> None:
    """On a node that refuses loopback URLs (as ``callroom serve`` does unless told): a receiver on 127.0.0.1
    is never connected to, whether the URL names the address (refused when the application is written) or a
    name that resolves to it (refused at each connection); the failover URL, on an allowed address, gets the
    event, and the deliveries tell why the primary failed."""
    tenant = strict_tenant
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        with pytest.raises(telnyx.UnprocessableEntityError) as literal:
            tenant.client.call_control_applications.create(
                application_name="literal", webhook_event_url=f"http://127.0.0.1:{port}/hooks")
        [error] = literal.value.body["errors"]  # type: ignore[index]
        assert (error["code"], error["source"]["pointer"]) == ("10015", "/webhook_event_url")
        with pytest.raises(telnyx.UnprocessableEntityError) as per_call:
            tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+1", to="virtual:x",
                                     webhook_url=f"http://[::1]:{port}/call")
        assert per_call.value.body["errors"][0]["source"]["pointer"] == "/webhook_url"  # type: ignore[index]

        failover = f"/failover/{uuid.uuid4().hex}"
        app = tenant.client.call_control_applications.create(
            application_name=f"app-{uuid.uuid4().hex[:6]}", webhook_event_url=f"http://localhost:{port}/hooks",
            webhook_event_failover_url=tenant.receiver.url(failover))
        assert app.data is not None and app.data.id
        resp = tenant.client.calls.dial(connection_id=app.data.id, from_="+1", to="virtual:r;noanswer")
        assert resp.data is not None
        cid = resp.data.call_control_id
        got = tenant.receiver.wait_for(_for(failover, "call.initiated", cid))[0]  # type: ignore[arg-type]
        assert got.json["meta"]["attempt"] == 1  # the failover's first
        deadline = time.monotonic() + 5
        while True:  # the fates are written in batches, a moment after the receiver got the event
            [delivery] = httpx.get(f"{tenant.node.base_url}/webhook_deliveries",
                                   params={"filter[event_type]": "call.initiated", "filter[webhook][contains]": cid},
                                   headers={"Authorization": f"Bearer {tenant.api_key}"}).json()["data"]
            if delivery["status"] == "delivered" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        attempts = sorted(delivery["attempts"], key=lambda a: a["attempt"])  # listed newest first
        assert [(a["http"]["request"]["url"], a["error"]) for a in attempts[:3]] == [
            (f"http://localhost:{port}/hooks", REFUSED_WHY)] * 3
        assert attempts[3]["status"] == "delivered" and attempts[3]["http"]["request"]["url"].endswith(failover)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
