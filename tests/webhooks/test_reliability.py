"""Delivery against a real receiver: redirects, client and server errors, timeouts, recovery, the GET
method, order per call under concurrency, the delivery records, replay, metrics and key rotation."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
import telnyx

from callroom.webhooks.signing import PREVIOUS_SIGNATURE_HEADER, WebhookSigner
from tests.support.node import NodeThread
from tests.support.receiver import Received, WebhookReceiver
from tests.support.tenant import Tenant


def _app(tenant: Tenant, primary: str, failover: str | None = None, timeout_secs: int | None = None) -> str:
    app = tenant.client.call_control_applications.create(
        application_name=f"app-{uuid.uuid4().hex[:6]}",
        webhook_event_url=tenant.receiver.url(primary),
        webhook_event_failover_url=tenant.receiver.url(failover) if failover else None,
        webhook_timeout_secs=timeout_secs,
    )
    assert app.data is not None and app.data.id
    return app.data.id


def _initiated(cid: str, path_prefix: str) -> object:
    def match(r: Received) -> bool:
        return (r.path.startswith(path_prefix) and r.body != "" and r.event_type == "call.initiated"
                and r.payload.get("call_control_id") == cid)

    return match


@pytest.fixture
def restore(receiver: WebhookReceiver) -> object:
    yield None
    receiver.status_for = lambda _p: 200
    receiver.status_for_body = None
    receiver.delay_for = lambda _p: 0.0
    receiver.headers_for = lambda _p: {}
    receiver.body_for = lambda _p: b""


def test_redirect_client_error_timeout_server_error_then_recovery(tenant: Tenant, restore: object) -> None:
    primary, failover = f"/bad/{uuid.uuid4().hex}", f"/fo/{uuid.uuid4().hex}"
    elsewhere = f"/elsewhere/{uuid.uuid4().hex}"
    calls = {"primary": 0, "failover": 0}
    lock = threading.Lock()

    def on(path: str) -> tuple[int, float]:
        with lock:
            if path == primary:
                calls["primary"] += 1
                return [(302, 0.0), (404, 0.0), (200, 1.5)][min(calls["primary"], 3) - 1]  # 3rd: too late
            if path == failover:
                calls["failover"] += 1
                return (500, 0.0) if calls["failover"] == 1 else (200, 0.0)
        return 200, 0.0

    plan: dict[str, tuple[int, float]] = {}

    def status(path: str) -> int:
        return plan.pop(path, (200, 0.0))[0] if path in plan else on(path)[0]

    def delay(path: str) -> float:
        if path not in (primary, failover):
            return 0.0
        plan[path] = on(path)
        return plan[path][1]

    port = tenant.receiver.port
    tenant.receiver.delay_for = delay
    tenant.receiver.status_for = status
    tenant.receiver.headers_for = lambda p: {"location": f"http://localhost:{port}{elsewhere}"} if p == primary else {}
    tenant.receiver.body_for = lambda p: b"x" * 200_000 if p == failover else b""
    tenant.connection_id = _app(tenant, primary, failover, timeout_secs=1)
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+1", to="virtual:r;noanswer")
    assert resp.data is not None
    cid = resp.data.call_control_id
    got = tenant.receiver.wait_for(lambda r: r.path == failover and r.status == 200, timeout=15)[0]
    assert got.event_type == "call.initiated" and got.payload["call_control_id"] == cid
    event_id = got.json["data"]["id"]
    tenant.receiver.wait_for(lambda r: r.path == primary, count=3)  # the slow one is recorded when it ends
    tried = [r for r in tenant.receiver.requests if r.path in (primary, failover) and r.json["data"]["id"] == event_id]
    tried.sort(key=lambda r: (r.path == failover, r.json["meta"]["attempt"]))
    assert [(r.path == failover, r.json["meta"]["attempt"], r.status) for r in tried] == [
        (False, 1, 302), (False, 2, 404), (False, 3, 200), (True, 1, 500), (True, 2, 200)
    ]
    assert not [r for r in tenant.receiver.requests if r.path == elsewhere]  # the redirect was not followed
    for r in tried:
        tenant.client.webhooks.unwrap(r.body, headers=r.headers, key=tenant.node.public_key)

    # The delivery record: every attempt with its status code (or error) and timings, newest first.
    deadline = time.monotonic() + 5
    while True:
        record = tenant.client.webhook_deliveries.retrieve(event_id).data
        assert record is not None
        if record.status == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert record.status == "delivered" and record.webhook is not None
    assert record.webhook.event_type == "call.initiated" and record.attempts is not None
    codes = [a.http.response.status if a.http and a.http.response else None for a in reversed(record.attempts)]
    assert codes == [302, 404, None, 500, 200]
    statuses = [a.status for a in reversed(record.attempts)]
    assert statuses == ["failed"] * 4 + ["delivered"]
    last = record.attempts[0]
    assert last.http is not None and last.http.response is not None and last.http.response.body is not None
    assert 0 < len(last.http.response.body) <= 1024  # a 200 kB answer: read only a bounded prefix
    assert last.started_at is not None and last.finished_at is not None and last.started_at <= last.finished_at
    assert record.started_at is not None and record.finished_at is not None
    third = record.attempts[2].model_dump()
    assert "timeout" in third["error"]
    listed = tenant.client.webhook_deliveries.list(
        filter={"status": {"eq": "delivered"}, "event_type": "call.initiated"}
    )
    assert event_id in [d.id for d in listed.data]


def test_a_given_up_event_stays_visible_and_replay_sends_it_again(tenant: Tenant, restore: object) -> None:
    path = f"/down/{uuid.uuid4().hex}"
    tenant.receiver.status_for = lambda p: 503 if p == path else 200
    tenant.connection_id = _app(tenant, path)
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+1", to="virtual:g;noanswer")
    assert resp.data is not None
    cid = resp.data.call_control_id
    tenant.receiver.wait_for(_initiated(cid, path), count=3)  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while True:
        failed = list(tenant.client.webhook_deliveries.list(filter={"status": {"eq": "failed"}}))
        if failed or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(d.webhook.event_type if d.webhook else None, len(d.attempts or [])) for d in failed] == [
        ("call.initiated", 3)
    ]
    assert failed[0].finished_at is not None
    # Another account sees none of it.
    other = telnyx.Telnyx(api_key=tenant.node.new_key(f"other-{uuid.uuid4().hex[:6]}"),
                          base_url=tenant.node.base_url, max_retries=0)
    assert list(other.webhook_deliveries.list()) == []
    with pytest.raises(telnyx.NotFoundError):
        other.webhook_deliveries.retrieve(str(failed[0].id))

    tenant.receiver.status_for = lambda _p: 200
    tenant.client.calls.actions.hangup(cid)
    tenant.receiver.wait_for(lambda r: r.path == path and r.body != "" and r.event_type == "call.hangup")
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    before, t0 = len(tenant.receiver.requests), time.time()
    replay = httpx.post(f"{tenant.node.base_url}/webhook_deliveries/replay", headers=headers,
                        json={"call_control_id": cid, "from_sequence": 1})
    assert replay.status_code == 202, replay.text
    ids = replay.json()["data"]["event_ids"]
    assert len(ids) == 2
    again = tenant.receiver.wait_for(
        lambda r: r.at >= t0 and r.path == path and r.json["data"]["id"] in ids and r.status == 200, count=2
    )
    fresh = [r for r in tenant.receiver.requests[before:] if r.path == path]
    assert [r.event_type for r in fresh] == ["call.initiated", "call.hangup"]  # in order, same event ids
    assert [r.json["data"]["id"] for r in fresh] == ids
    assert [r.payload["call_sequence"] for r in fresh] == [1, 2]
    assert {r.json["data"]["id"] for r in again} == set(ids)
    only_last = httpx.post(f"{tenant.node.base_url}/webhook_deliveries/replay", headers=headers,
                           json={"call_control_id": cid, "from_sequence": 2})
    assert only_last.json()["data"]["event_ids"] == ids[1:]
    bad = httpx.post(f"{tenant.node.base_url}/webhook_deliveries/replay", headers=headers,
                     json={"call_control_id": "v3:nope", "from_sequence": 1})
    assert bad.status_code == 404


def test_get_method_sends_the_signed_payload_as_a_query_parameter(tenant: Tenant, restore: object) -> None:
    path = f"/get/{uuid.uuid4().hex}"
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+1", to="virtual:q;noanswer",
                                    webhook_url=tenant.receiver.url(path), webhook_url_method="GET")
    assert resp.data is not None
    got = tenant.receiver.wait_for(lambda r: r.path.startswith(path + "?"))[0]
    assert got.method == "GET" and got.body == ""
    payload = got.query["payload"][0]
    event = tenant.client.webhooks.unwrap(payload, headers=got.headers, key=tenant.node.public_key)
    assert event.data is not None and event.data.event_type == "call.initiated"  # type: ignore[union-attr]
    assert event.data.payload.call_control_id == resp.data.call_control_id  # type: ignore[union-attr]


def test_each_calls_events_arrive_in_order_under_concurrency(tenant: Tenant, restore: object) -> None:
    path = f"/busy/{uuid.uuid4().hex}"
    rng = random.Random(7)
    lock = threading.Lock()
    seen = {"n": 0}

    def status(p: str, body: str) -> int:
        # Every third first attempt fails, and every fifth second attempt: retries interleave with other
        # calls' events. No event fails three times, so none is given up and every one must arrive.
        if p != path or not body:
            return 200
        attempt = json.loads(body)["meta"]["attempt"]
        with lock:
            seen["n"] += 1
            if attempt == 1 and seen["n"] % 3 == 0:
                return 503
            if attempt == 2 and seen["n"] % 5 == 0:
                return 503
            return 200

    tenant.receiver.status_for_body = status
    tenant.receiver.delay_for = lambda p: rng.random() * 0.01 if p == path else 0.0
    tenant.connection_id = _app(tenant, path)
    tenant.path = path
    cids: list[str] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+1",
                                            to=f"virtual:c{i};answer_after=0")
            assert resp.data is not None
            with lock:
                cids.append(resp.data.call_control_id)
            time.sleep(0.05)
            tenant.client.calls.actions.hangup(resp.data.call_control_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    tenant.receiver.wait_for(lambda r: r.path == path and r.status == 200 and r.event_type == "call.hangup",
                             count=len(cids), timeout=20)
    per_call: dict[str, list[Received]] = defaultdict(list)
    for r in tenant.receiver.delivered(path):
        if r.status == 200:
            per_call[r.payload["call_control_id"]].append(r)
    assert set(per_call) == set(cids)
    for cid in cids:
        got = per_call[cid]
        assert [r.event_type for r in got] == ["call.initiated", "call.answered", "call.hangup"], cid
        assert [r.payload["call_sequence"] for r in got] == [1, 2, 3]
    arrivals = sorted(r.at for rs in per_call.values() for r in rs)
    assert arrivals[-1] - arrivals[0] < 10
    assert any(r.status == 503 for r in tenant.receiver.requests if r.path == path)


def test_metrics_in_prometheus_text(tenant: Tenant) -> None:
    tenant.dial("m")
    text = httpx.get(f"{tenant.node.root_url}/metrics").text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if not line.startswith("#")}
    assert values["callroom_webhook_deliveries_total"] >= 2
    assert values['callroom_webhook_delivery_latency_seconds_bucket{le="+Inf"}'] == values[
        "callroom_webhook_delivery_latency_seconds_count"]
    assert "callroom_webhook_failures_total" in values and "callroom_webhook_retries_total" in values
    assert "callroom_webhook_queue_depth" in values


def test_key_rotation_signs_with_both_keys_during_the_grace_period(tmp_path: Path, receiver: WebhookReceiver) -> None:
    node = NodeThread(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    try:
        key = node.new_key("rotation")
        client = telnyx.Telnyx(api_key=key, base_url=node.base_url, max_retries=0)
        path = f"/rot/{uuid.uuid4().hex}"
        app = client.call_control_applications.create(application_name="r", webhook_event_url=receiver.url(path))
        assert app.data is not None and app.data.id
        old_public = node.public_key
        old, new = WebhookSigner.rotate(node.node.store, grace_secs=3600)
        assert old == old_public and new != old
        deadline = time.monotonic() + 5
        while True:
            keys = httpx.get(f"{node.base_url}/public_key").json()["data"]
            if keys["public_key"] == new or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [(k["public_key"], k["status"]) for k in keys["public_keys"]] == [(new, "current"), (old, "previous")]
        resp = client.calls.dial(connection_id=app.data.id, from_="+1", to="virtual:k;noanswer")
        assert resp.data is not None
        got = receiver.wait_for(lambda r: r.path == path)[0]
        client.webhooks.unwrap(got.body, headers=got.headers, key=new)
        with pytest.raises(ValueError):
            client.webhooks.unwrap(got.body, headers=got.headers, key=old)
        as_before = {**got.headers, "telnyx-signature-ed25519": got.headers[PREVIOUS_SIGNATURE_HEADER]}
        client.webhooks.unwrap(got.body, headers=as_before, key=old)
    finally:
        node.stop()
