"""Conferences and participants through the official SDK, as a conference-line developer uses them."""

from __future__ import annotations

import base64

import pytest
import telnyx

from tests.support.tenant import Tenant


def _create(tenant: Tenant, name: str, **kwargs: object) -> tuple[str, str]:
    host = tenant.dial("host")
    conf = tenant.client.conferences.create(call_control_id=host, name=name, **kwargs)  # type: ignore[arg-type]
    assert conf.data is not None
    return conf.data.id, host


def test_create_join_list_and_retrieve(tenant: Tenant) -> None:
    state = base64.b64encode(b"room-1").decode()
    host = tenant.dial("host")
    created = tenant.client.conferences.create(call_control_id=host, name="standup", client_state=state)
    assert created.data is not None
    conf = created.data
    assert conf.record_type == "conference" and conf.status == "in_progress" and conf.name == "standup"
    assert conf.connection_id == tenant.connection_id
    ev = tenant.event("conference.created", host)
    assert ev.payload["conference_id"] == conf.id and ev.payload["client_state"] == state
    assert ev.payload["occurred_at"]
    tenant.event("conference.participant.joined", host, conference_id=conf.id)

    guest = tenant.dial("guest")
    tenant.client.conferences.actions.join("standup", call_control_id=guest)  # by name
    tenant.event("conference.participant.joined", guest, conference_id=conf.id)

    participants = list(tenant.client.conferences.list_participants(conf.id))
    assert {p.call_control_id for p in participants} == {host, guest}
    assert all(p.record_type == "participant" and p.status == "joined" for p in participants)
    assert participants[0].conference.id == conf.id and participants[0].conference.name == "standup"

    got = tenant.client.conferences.retrieve(conf.id)
    assert got.data is not None and got.data.id == conf.id
    listed = list(tenant.client.conferences.list(filter={"name": "standup"}))
    assert [c.id for c in listed] == [conf.id]

    with pytest.raises(telnyx.UnprocessableEntityError) as in_use:
        tenant.client.conferences.create(call_control_id=tenant.dial("h2"), name="standup")
    assert in_use.value.body["errors"][0]["code"] == "90033"  # type: ignore[index]


def test_mute_hold_update_and_participant_filters(tenant: Tenant) -> None:
    conf_id, host = _create(tenant, "ops")
    a, b = tenant.dial("a"), tenant.dial("b")
    for leg in (a, b):
        tenant.client.conferences.actions.join(conf_id, call_control_id=leg)

    tenant.client.conferences.actions.mute(conf_id)  # no list: everyone
    assert all(p.muted for p in tenant.client.conferences.list_participants(conf_id))
    tenant.client.conferences.actions.unmute(conf_id, call_control_ids=[a])
    muted = list(tenant.client.conferences.list_participants(conf_id, filter={"muted": True}))
    assert {p.call_control_id for p in muted} == {host, b}

    tenant.client.conferences.actions.hold(conf_id, call_control_ids=[b])
    held = list(tenant.client.conferences.list_participants(conf_id, filter={"on_hold": True}))
    assert [p.call_control_id for p in held] == [b]
    with pytest.raises(telnyx.UnprocessableEntityError):
        tenant.client.conferences.actions.unhold(conf_id, call_control_ids=[])  # unhold needs the list
    tenant.client.conferences.actions.unhold(conf_id, call_control_ids=[b])
    assert not list(tenant.client.conferences.list_participants(conf_id, filter={"on_hold": True}))

    tenant.client.conferences.actions.update(
        conf_id, call_control_id=a, supervisor_role="whisper", whisper_call_control_ids=[b]
    )
    whispering = list(tenant.client.conferences.list_participants(conf_id, filter={"whispering": True}))
    assert [(p.call_control_id, p.whisper_call_control_ids) for p in whispering] == [(a, [b])]

    with pytest.raises(telnyx.UnprocessableEntityError) as stranger:
        tenant.client.conferences.actions.mute(conf_id, call_control_ids=[a, "v3:not-here"])
    assert stranger.value.body["errors"][0]["source"]["pointer"] == "/call_control_ids"  # type: ignore[index]
    # The bad request changed nothing: a is still unmuted.
    assert {p.call_control_id for p in tenant.client.conferences.list_participants(conf_id, filter={"muted": False})} \
        == {a}


def test_participant_by_id_and_label_and_patch(tenant: Tenant) -> None:
    conf_id, _host = _create(tenant, "labels")
    guest = tenant.dial("guest")
    tenant.client.conferences.actions.join(conf_id, call_control_id=guest, extra_body={"label": "alice"})
    by_label = tenant.client.conferences.retrieve_participant("alice", id=conf_id)
    assert by_label.data is not None and by_label.data.call_control_id == guest and by_label.data.label == "alice"
    by_id = tenant.client.conferences.retrieve_participant(by_label.data.id or "", id=conf_id)
    assert by_id.data is not None and by_id.data.call_control_id == guest
    patched = tenant.client.conferences.update_participant(
        "alice", id=conf_id, end_conference_on_exit=True, beep_enabled="on_exit"
    )
    assert patched.data is not None and patched.data.end_conference_on_exit is True


def test_not_started_conference_holds_everyone_until_moderator(tenant: Tenant) -> None:
    conf_id, _host = _create(tenant, "webinar", start_conference_on_create=False)
    got = tenant.client.conferences.retrieve(conf_id)
    assert got.data is not None and got.data.status == "init"
    attendee = tenant.dial("attendee")
    tenant.client.conferences.actions.join(conf_id, call_control_id=attendee)
    assert all(p.on_hold for p in tenant.client.conferences.list_participants(conf_id))

    moderator = tenant.dial("moderator")
    tenant.client.conferences.actions.join(conf_id, call_control_id=moderator, start_conference_on_enter=True)
    got = tenant.client.conferences.retrieve(conf_id)
    assert got.data is not None and got.data.status == "in_progress"
    assert not any(p.on_hold for p in tenant.client.conferences.list_participants(conf_id))


def test_host_exit_ends_and_hangs_up_everyone(tenant: Tenant) -> None:
    conf_id, host = _create(tenant, "town-hall")
    boss, worker = tenant.dial("boss"), tenant.dial("worker")
    tenant.client.conferences.actions.join(conf_id, call_control_id=boss, end_conference_on_exit=True)
    tenant.client.conferences.actions.join(conf_id, call_control_id=worker)
    tenant.phone_hangs_up(boss)
    ended = tenant.event("conference.ended", conference_id=conf_id)
    assert ended.payload["reason"] == "host_left"
    for leg in (host, worker):
        tenant.event("call.hangup", leg)
        tenant.event("conference.participant.left", leg, conference_id=conf_id)
    got = tenant.client.conferences.retrieve(conf_id)
    assert got.data is not None
    assert (got.data.status, got.data.end_reason) == ("completed", "host_left")
    assert got.data.ended_by is not None and got.data.ended_by.call_control_id == boss
    assert tenant.events(conference_id=conf_id)[-1] == "conference.ended"


def test_soft_end_parks_the_others(tenant: Tenant) -> None:
    conf_id, host = _create(tenant, "soft")
    chair = tenant.dial("chair")
    tenant.client.conferences.actions.join(conf_id, call_control_id=chair, soft_end_conference_on_exit=True)
    tenant.client.conferences.actions.leave(conf_id, call_control_id=chair)
    tenant.event("conference.ended", conference_id=conf_id)
    for leg in (host, chair):
        status = tenant.client.calls.retrieve_status(leg)
        assert status.data is not None and status.data.is_alive is True


def test_all_left_and_end_via_api(tenant: Tenant) -> None:
    conf_id, host = _create(tenant, "short")
    tenant.client.conferences.actions.leave(conf_id, call_control_id=host)
    left = tenant.event("conference.participant.left", host, conference_id=conf_id)
    assert left.payload["conference_id"] == conf_id
    assert tenant.event("conference.ended", conference_id=conf_id).payload["reason"] == "all_left"
    alive = tenant.client.calls.retrieve_status(host)
    assert alive.data is not None and alive.data.is_alive is True  # leave parks the leg
    with pytest.raises(telnyx.UnprocessableEntityError) as ended:
        tenant.client.conferences.actions.join(conf_id, call_control_id=host)
    assert ended.value.body["errors"][0]["code"] == "90019"  # type: ignore[index]

    conf2, host2 = _create(tenant, "ended-by-api")
    tenant.client.conferences.actions.end_conference(conf2)
    ended_by_api = tenant.event("conference.ended", conference_id=conf2)
    # The SDK's webhook model knows no reason for an end through the API: none is sent, so the webhook
    # still parses as conference.ended; the conference itself says ended_via_api.
    assert "reason" not in ended_by_api.payload
    assert ended_by_api.payload["call_leg_id"] == tenant.client.calls.retrieve_status(host2).data.call_leg_id  # type: ignore[union-attr]
    tenant.event("call.hangup", host2)
    got = tenant.client.conferences.retrieve(conf2)
    assert got.data is not None and got.data.end_reason == "ended_via_api"


def test_max_participants_is_exact(tenant: Tenant) -> None:
    conf_id, _ = _create(tenant, "pair", max_participants=2)
    tenant.client.conferences.actions.join(conf_id, call_control_id=tenant.dial("second"))
    third = tenant.dial("third")
    with pytest.raises(telnyx.UnprocessableEntityError) as full:
        tenant.client.conferences.actions.join(conf_id, call_control_id=third)
    assert full.value.body["errors"][0]["code"] == "90103"  # type: ignore[index]
    assert len(list(tenant.client.conferences.list_participants(conf_id))) == 2
    status = tenant.client.calls.retrieve_status(third)
    assert status.data is not None and status.data.is_alive is True


def test_list_order_pagination_and_status_filter(tenant: Tenant) -> None:
    ids = [_create(tenant, f"room-{i}", duration_minutes=10 + i)[0] for i in range(5)]
    pages = tenant.client.conferences.list(page_size=2)
    seen = [c.id for c in pages]  # auto-pagination across 3 pages
    assert seen == list(reversed(ids))  # descending expires_at
    first = tenant.client.conferences.list(page_size=2)
    assert first.meta is not None and first.meta.total_pages == 3 and first.meta.page_number == 1
    tenant.client.conferences.actions.end_conference(ids[0])
    done = list(tenant.client.conferences.list(filter={"status": "completed"}))
    assert [c.id for c in done] == [ids[0]]
    # A page past the end is empty; a page number no database OFFSET can hold is refused, not a 500.
    past = tenant.client.conferences.list(page_size=2, page_number=1_000_000_000)
    assert past.data == [] and past.meta is not None and past.meta.total_pages == 3
    for number in (0, 10**24):
        with pytest.raises(telnyx.UnprocessableEntityError) as bad:
            tenant.client.conferences.list(page_number=number)
        assert bad.value.body["errors"][0]["source"]["parameter"] == "page[number]"  # type: ignore[index]


def test_monitor_and_whisper_roles_on_join(tenant: Tenant) -> None:
    conf_id, _host = _create(tenant, "coaching")
    agent = tenant.dial("agent")
    tenant.client.conferences.actions.join(conf_id, call_control_id=agent)
    monitor = tenant.dial("monitor")
    tenant.client.conferences.actions.join(conf_id, call_control_id=monitor, supervisor_role="monitor")
    coach = tenant.dial("coach")
    tenant.client.conferences.actions.join(
        conf_id, call_control_id=coach, supervisor_role="whisper", whisper_call_control_ids=[agent]
    )
    roles = {p.call_control_id: p for p in tenant.client.conferences.list_participants(conf_id)}
    assert roles[coach].whisper_call_control_ids == [agent]
    with pytest.raises(telnyx.UnprocessableEntityError):
        tenant.client.conferences.actions.join(
            conf_id, call_control_id=tenant.dial("x"), supervisor_role="whisper",
            whisper_call_control_ids=["v3:nobody"],
        )
