"""The console's push channel and the node's operations figures, through a real node: an account's
events reach its consoles within a second and no other account's; who has the floor is pushed; /metrics
carries the call, conference, queue, SIP and media figures."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import _tenant
from tests.console.push import PushReader
from tests.support.tenant import Tenant


def _webhook(event_type: str, **payload: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda kind, body: (kind == "webhook" and body["event_type"] == event_type
                               and all(body["payload"].get(k) == v for k, v in payload.items()))


def test_an_accounts_events_reach_its_console_within_a_second(tenant: Tenant) -> None:
    mine = PushReader(tenant.node.root_url, tenant.api_key)
    try:
        hello = mine.wait(lambda kind, _body: kind == "hello")
        assert "floors" in hello
        started = time.monotonic()
        cid = tenant.dial("pushed")
        body = mine.wait(_webhook("call.answered", call_control_id=cid), timeout=2.0)
        assert body["payload"]["connection_id"] == tenant.connection_id
        assert time.monotonic() - started < 2.0
    finally:
        mine.close()


def test_no_console_sees_another_accounts_events(tenant: Tenant) -> None:
    neighbour = _tenant(tenant.node, tenant.receiver)
    theirs = PushReader(tenant.node.root_url, neighbour.api_key)
    mine = PushReader(tenant.node.root_url, tenant.api_key)
    try:
        theirs.wait(lambda kind, _body: kind == "hello")
        mine.wait(lambda kind, _body: kind == "hello")
        cid = tenant.dial("private")
        tenant.client.conferences.create(call_control_id=cid, name="private-room")
        mine.wait(_webhook("conference.created"))
        neighbour_cid = neighbour.dial("theirs")
        theirs.wait(_webhook("call.answered", call_control_id=neighbour_cid))
        leaked = [b for k, b in theirs.seen() if k in ("webhook", "floor")
                  and (b.get("payload", {}).get("call_control_id") == cid or b.get("call_control_id") == cid)]
        assert leaked == []
        assert all(b["payload"].get("connection_id") in (None, neighbour.connection_id)
                   for k, b in theirs.seen() if k == "webhook")
    finally:
        theirs.close()
        mine.close()


def test_the_talker_is_pushed(tenant: Tenant) -> None:
    mine = PushReader(tenant.node.root_url, tenant.api_key)
    try:
        quiet = tenant.dial("listener", "answer_after=0")
        conf = tenant.client.conferences.create(call_control_id=quiet, name="talkers")
        assert conf.data is not None
        talker = tenant.dial("talker", "answer_after=0;tone=500")
        tenant.client.conferences.actions.join(conf.data.id, call_control_id=talker)
        body = mine.wait(lambda kind, b: kind == "floor" and b["call_control_id"] == talker, timeout=5.0)
        assert body["conference_id"] == conf.data.id
    finally:
        mine.close()


def test_metrics_carry_calls_conferences_queues_sip_and_media(tenant: Tenant) -> None:
    cid = tenant.dial("counted")
    tenant.client.conferences.create(call_control_id=cid, name="counted-room")
    caller = tenant.dial("waiting")
    tenant.client.calls.actions.enqueue(caller, queue_name="counted-queue")
    tenant.event("call.enqueued", caller)
    deadline = time.monotonic() + 5
    while True:
        text = httpx.get(f"{tenant.node.root_url}/metrics").text
        values = dict(re.findall(r"^(callroom_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", text, re.M))
        if float(values.get("callroom_media_legs", 0)) >= 2 and float(values.get("callroom_queued_callers", 0)) >= 1:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    assert float(values['callroom_calls_active{state="conferenced"}']) >= 1
    assert float(values['callroom_calls_active{state="queued"}']) >= 1
    assert float(values["callroom_conferences_active"]) >= 1
    assert float(values["callroom_calls_created_total"]) >= 2
    assert float(values["callroom_media_ticks_total"]) > 0
    assert 'callroom_media_tick_lateness_seconds{stat="p99"}' in values
    assert "callroom_webhook_backlog" in values
    assert "# TYPE callroom_sip_responses_sent_total counter" in text
