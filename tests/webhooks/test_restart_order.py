"""``kill -9`` of a node while its webhooks cannot be delivered: the restarted node ends the calls the old
process left alive, and the events it writes for that (``call.hangup``, ``conference.ended``) queue behind
the events still pending from before the crash. Each call's webhooks arrive in ``call_sequence`` order
with ``call.hangup`` last; the conference's in ``conference_sequence`` order with ``conference.ended``
last. On SQLite and on PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import telnyx
from sqlalchemy import select

from callroom.store import schema as t
from callroom.store.engine import Store
from tests.support.node import free_port
from tests.support.postgres import fresh_database
from tests.support.process import kill_hard, serve
from tests.support.receiver import Received, WebhookReceiver

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database for the node processes: a SQLite file, or a fresh PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'callroom.db'}"
        return
    with fresh_database("callroom_restart") as url:
        yield url


def _outbox(database_url: str) -> dict[str, str]:
    """Every outbox row's status, by event id."""
    store = Store(database_url)
    try:
        with store.transaction() as tx:
            rows = tx.conn.execute(select(t.outbox.c.event_id, t.outbox.c.status))
            return {str(r[0]): str(r[1]) for r in rows}
    finally:
        store.dispose()


def _answered(base: str, key: str, cid: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        got = httpx.get(f"{base}/calls/{cid}", headers={"Authorization": f"Bearer {key}"}).json()["data"]
        if got["state"] != "ringing":
            return
        assert time.monotonic() < deadline, f"{cid} was not answered"
        time.sleep(0.02)


def _in_order(arrived: list[Received], field: str, last: str) -> None:
    """Each event once (the first arrival of each id), numbered 1, 2, ... by ``field``, ``last`` last."""
    seen: set[str] = set()
    firsts = []
    for r in arrived:
        if r.json["data"]["id"] not in seen:
            seen.add(r.json["data"]["id"])
            firsts.append(r)
    numbers = [r.payload[field] for r in firsts]
    kinds = [r.event_type for r in firsts]
    assert numbers == list(range(1, len(numbers) + 1)), f"{field}s arrived as {numbers}: {kinds}"
    assert kinds[-1] == last, kinds


def test_recovery_events_queue_behind_the_pending_events_of_their_call(
    tmp_path: Path, receiver: WebhookReceiver, database_url: str
) -> None:
    path = f"/after-crash/{uuid.uuid4().hex}"
    refusing = True
    receiver.status_for = lambda p: 503 if p == path and refusing else 200
    port = free_port()
    options: dict[str, Any] = {"database_url": database_url}
    try:
        with serve(tmp_path, port, "--sip-port", "0", **options) as proc:
            key = (tmp_path / "initial-api-key").read_text().strip()
            base = f"http://127.0.0.1:{port}/v2"
            client = telnyx.Telnyx(api_key=key, base_url=base, max_retries=0)
            app = client.call_control_applications.create(application_name="crash",
                                                          webhook_event_url=receiver.url(path))
            assert app.data is not None and app.data.id
            calls = []
            for i in range(4):
                resp = client.calls.dial(connection_id=app.data.id, from_="+1", to=f"virtual:p{i};answer_after=0")
                assert resp.data is not None
                calls.append(resp.data.call_control_id)
            for cid in calls:
                _answered(base, key, cid)
            conf = client.conferences.create(call_control_id=calls[0], name="crash")
            assert conf.data is not None
            conf_id = conf.data.id
            client.conferences.actions.join(conf_id, call_control_id=calls[1])
            kill_hard(proc)  # every event so far is pending: the receiver refused each attempt

        before = _outbox(database_url)
        assert before and set(before.values()) == {"pending"}, before  # none delivered, none given up yet
        refusing = False
        with serve(tmp_path, port, "--sip-port", "0", **options):
            def ours(r: Received) -> bool:
                return r.path == path and r.status == 200

            for cid in calls:
                receiver.wait_for(lambda r, cid=cid: ours(r) and r.event_type == "call.hangup"  # type: ignore[misc]
                                  and r.payload["call_control_id"] == cid, timeout=30)
            receiver.wait_for(lambda r: ours(r) and r.event_type == "conference.ended", timeout=30)
            deadline = time.monotonic() + 15
            while set(_outbox(database_url).values()) != {"delivered"} and time.monotonic() < deadline:
                time.sleep(0.1)
        arrived = [r for r in receiver.delivered(path) if r.status == 200]
        assert {r.json["data"]["id"] for r in arrived} == set(_outbox(database_url))  # nothing lost
        assert set(before) < set(_outbox(database_url))  # the restart ended the calls: new events
        for cid in calls:
            of_call = [r for r in arrived if "call_sequence" in r.payload and r.payload["call_control_id"] == cid]
            _in_order(of_call, "call_sequence", "call.hangup")
        of_conference = [r for r in arrived if "conference_sequence" in r.payload
                         and r.payload.get("conference_id") == conf_id]
        _in_order(of_conference, "conference_sequence", "conference.ended")
    finally:
        receiver.status_for = lambda _p: 200
