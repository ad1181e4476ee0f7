"""A whole node on PostgreSQL (transactions run cooperatively on the event loop), driven through the SDK:
the call-centre and conference flows that the SQLite node runs, with concurrent requests; and text with a
NUL character, which PostgreSQL cannot hold, refused alike on both stores."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
import telnyx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from callroom.store.reach import normalise_url
from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import Tenant

pytestmark = pytest.mark.postgres

PG_URL = os.environ.get("CALLROOM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def pg_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    admin = create_engine(normalise_url(PG_URL), poolclass=NullPool, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    name = f"callroom_node_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL is unreachable: {exc}")
    url = normalise_url(PG_URL).rsplit("/", 1)[0] + f"/{name}"
    node = NodeThread(url, tmp_path_factory.mktemp("pgnode"))
    try:
        yield node
    finally:
        node.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_tenant(pg_node: NodeThread, receiver: WebhookReceiver) -> Tenant:
    name = f"pg-{uuid.uuid4().hex[:8]}"
    key = pg_node.new_key(name)
    client = telnyx.Telnyx(api_key=key, base_url=pg_node.base_url, public_key=pg_node.public_key, max_retries=0)
    path = f"/pg/{name}"
    app = client.call_control_applications.create(application_name=name, webhook_event_url=receiver.url(path))
    assert app.data is not None and app.data.id
    return Tenant(client, pg_node, receiver, key, path, app.data.id)


def test_call_centre_on_postgres(pg_tenant: Tenant) -> None:
    t = pg_tenant
    callers = [t.call_in(from_=f"virtual:pg{i}") for i in range(4)]
    for cid in callers:
        t.client.calls.actions.enqueue(cid, queue_name="pg-support")
    assert [c.queue_position for c in t.client.queues.calls.list("pg-support")] == [1, 2, 3, 4]
    agents = [t.dial(f"agent{i}") for i in range(3)]
    errors: list[BaseException] = []

    def take(agent: str) -> None:
        try:
            t.dequeue(agent, "pg-support")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(a,)) for a in agents]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for c in callers[:3]:
        assert t.event("call.dequeued", c).payload["reason"] == "bridged"
    partner = {p["call_control_id"]: p["connected_to"] for p in t.virtual_phones()}
    assert {partner[a] for a in agents} == {f"bridge:{c}" for c in callers[:3]}  # three different callers
    remaining = list(t.client.queues.calls.list("pg-support"))
    assert [(c.call_control_id, c.queue_position) for c in remaining] == [(callers[3], 1)]


def test_conference_on_postgres(pg_tenant: Tenant) -> None:
    t = pg_tenant
    host = t.dial("host")
    conf = t.client.conferences.create(call_control_id=host, name="pg-room")
    assert conf.data is not None
    guests = [t.dial(f"g{i}") for i in range(3)]
    for g in guests:
        t.client.conferences.actions.join(conf.data.id, call_control_id=g)
    t.client.conferences.actions.mute(conf.data.id, call_control_ids=guests[:2])
    muted = {p.call_control_id for p in t.client.conferences.list_participants(conf.data.id, filter={"muted": True})}
    assert muted == set(guests[:2])
    with pytest.raises(telnyx.UnprocessableEntityError) as in_use:
        t.client.conferences.create(call_control_id=t.dial("other"), name="pg-room")
    assert in_use.value.body["errors"][0]["code"] == "90033"  # type: ignore[index]
    t.client.conferences.actions.end_conference(conf.data.id)
    assert "reason" not in t.event("conference.ended", conference_id=conf.data.id).payload
    t.check_typed()



def test_webhooks_follow_an_application_changed_between_commands(pg_tenant: Tenant) -> None:
    # A command on a call reads the call's application ahead (in the same round trip as another read):
    # the read is the command's own, so a change committed before the command is what it sees.
    t = pg_tenant
    caller = t.call_in(from_="virtual:moved")
    moved = f"{t.path}/moved"
    t.client.call_control_applications.update(t.connection_id, application_name="moved",
                                              webhook_event_url=t.receiver.url(moved))
    t.client.calls.actions.enqueue(caller, queue_name="pg-moved")
    got = t.receiver.wait_for(lambda r: r.path == moved and r.event_type == "call.enqueued")[0]
    assert got.payload["call_control_id"] == caller
    assert all(r.event_type != "call.enqueued" for r in t._mine())


def test_queue_commands_read_ahead_the_other_call_and_both_applications(pg_tenant: Tenant) -> None:
    # An enqueue reads the call it leaves (a bridge partner) with its own; a dequeue reads the caller at the
    # head with the agent, and both calls' applications, before either call has been read.
    t = pg_tenant
    other_path = f"{t.path}/other-app"
    other = t.client.call_control_applications.create(application_name="other",
                                                      webhook_event_url=t.receiver.url(other_path))
    assert other.data is not None and other.data.id is not None
    resp = t.client.calls.dial(connection_id=other.data.id, from_="+15550001111", to="virtual:caller;answer_after=0")
    assert resp.data is not None
    caller = resp.data.call_control_id
    t.receiver.wait_for(lambda r: r.path == other_path and r.event_type == "call.answered")
    first_agent = t.dial("first", park_after_unbridge="self")
    t.client.calls.actions.bridge(first_agent, call_control_id_to_bridge_with=caller)
    t.event("call.bridged", first_agent)
    t.client.calls.actions.enqueue(caller, queue_name="pg-ahead")  # leaves its bridge with the first agent
    second_agent = t.dial("second")
    t.dequeue(second_agent, "pg-ahead")
    to_other = [r.event_type for r in t.receiver.wait_for(
        lambda r: r.path == other_path and r.event_type == "call.bridged", count=2)]
    assert to_other == ["call.bridged", "call.bridged"]  # the caller's webhooks, to the caller's application
    dequeued = t.receiver.wait_for(lambda r: r.path == other_path and r.event_type == "call.dequeued")[0]
    assert dequeued.payload["call_control_id"] == caller and dequeued.payload["reason"] == "bridged"
    partner = {p["call_control_id"]: p["connected_to"] for p in t.virtual_phones()}
    assert partner[second_agent] == f"bridge:{caller}"
    assert partner[first_agent] != f"bridge:{caller}"  # parked when the caller left for the queue
    assert t.event("call.bridged", second_agent).payload["call_control_id"] == second_agent


def test_participants_listed_by_id_or_name_and_never_to_another_account(
    pg_tenant: Tenant, pg_node: NodeThread, receiver: WebhookReceiver
) -> None:
    # The page is read ahead with the conference when the path names it by id: the same answer as by name,
    # and nothing of it for another account that names the same id.
    t = pg_tenant
    host = t.dial("lh")
    conf = t.client.conferences.create(call_control_id=host, name="pg-listed")
    assert conf.data is not None
    t.client.conferences.actions.join(conf.data.id, call_control_id=t.dial("lg"))
    by_id = [p.call_control_id for p in t.client.conferences.list_participants(conf.data.id)]
    by_name = [p.call_control_id for p in t.client.conferences.list_participants("pg-listed")]
    assert by_id == by_name and len(by_id) == 2
    other_key = pg_node.new_key(f"other-{uuid.uuid4().hex[:8]}")
    other = telnyx.Telnyx(api_key=other_key, base_url=pg_node.base_url, max_retries=0)
    with pytest.raises(telnyx.NotFoundError):
        list(other.conferences.list_participants(conf.data.id))


def _nul_checks(t: Tenant) -> None:
    """A NUL character (U+0000) anywhere in a request answers 422 and changes nothing."""
    headers = {"Authorization": f"Bearer {t.api_key}"}
    base = t.node.base_url
    bodies = [
        ("/call_control_applications", {"application_name": "a\x00b", "webhook_event_url": "https://x.test/h"},
         "/application_name"),
        ("/queues", {"queue_name": "ok-name", "extra": ["fine", {"key\x00": 1}]}, "/extra/1"),
        ("/calls", {"connection_id": t.connection_id, "from": "+15550001111", "to": "virtual:nul;answer_after=0",
                    "conference_config": {"conference_name": "nul-room", "label": "joiner\x00"}},
         "/conference_config/label"),
    ]
    for path, body, pointer in bodies:
        resp = httpx.post(f"{base}{path}", json=body, headers=headers)
        assert resp.status_code == 422, resp.text
        error = resp.json()["errors"][0]
        assert (error["code"], error["source"]["pointer"]) == ("10015", pointer)
    assert [q.name for q in t.client.queues.list()] == []
    # In a path or a query: PostgreSQL cannot hold it, so it is refused there; SQLite finds nothing.
    for url in (f"{base}/conferences/a%00b", f"{base}/queues/a%00b", f"{base}/conferences?filter%5Bname%5D=a%00b"):
        resp = httpx.get(url, headers=headers)
        assert resp.status_code in (404, 422) or (resp.status_code == 200 and resp.json()["data"] == []), resp.text


def test_a_nul_character_is_refused_on_postgres(pg_tenant: Tenant) -> None:
    _nul_checks(pg_tenant)
    resp = httpx.get(f"{pg_tenant.node.base_url}/queues/a%00b",
                     headers={"Authorization": f"Bearer {pg_tenant.api_key}"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["code"] == "10015"


def test_a_nul_character_is_refused_on_sqlite(tenant: Tenant) -> None:
    _nul_checks(tenant)
