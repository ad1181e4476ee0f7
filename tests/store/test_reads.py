"""A command's batch of reads as the store answers it, on each backend: every kind of read, the account
boundary, and one round trip for a whole batch on PostgreSQL."""

from __future__ import annotations

from typing import Any

from callroom.model import reads as r
from callroom.model.records import MediaFile, MediaJob, MixMember, Recording
from callroom.model.states import CallState, ConferenceStatus, ParticipantStatus
from callroom.store import media_tx, reads
from callroom.store.engine import Store
from tests.store import factories as f
from tests.store.factories import NOW


def _world(store: Store) -> dict[str, Any]:
    """One account's calls, conference, queue, media, job and recording (and another account's)."""
    acct, other = f.uid(), f.uid()
    app = f.application(acct)
    partner = f.call(acct, connection_id=app.id, state=CallState.BRIDGED)
    agent = f.call(acct, connection_id=app.id, state=CallState.BRIDGED, bridged_with=partner.call_control_id)
    first = f.call(acct, state=CallState.QUEUED)
    second = f.call(acct, state=CallState.QUEUED)
    stranger = f.call(other)
    conf = f.conference(acct, name="standup", status=ConferenceStatus.IN_PROGRESS)
    done = f.conference(acct, name="standup", status=ConferenceStatus.COMPLETED, created_at=NOW + 50)
    here = f.participant(acct, conf.id, call_control_id=agent.call_control_id, status=ParticipantStatus.JOINED,
                         created_at=1.0, label="host")
    gone = f.participant(acct, conf.id, status=ParticipantStatus.LEFT, created_at=2.0)
    q = f.queue(acct, name="support")
    job = MediaJob(id=f.uid(), account_id=acct, kind="record", scope="call", created_at=NOW, updated_at=NOW,
                   call_control_id=agent.call_control_id)
    rec = Recording(id=job.id, account_id=acct, source="call", channels="single", format="wav", file_name="a.wav",
                    status="recording", recording_started_at=NOW, created_at=NOW, updated_at=NOW)
    media = MediaFile(account_id=acct, media_name="lobby", path="/m/lobby.wav", content_type="audio/wav",
                      size_bytes=4, created_at=NOW, updated_at=NOW)
    timer = f.timer(acct, kind="queue_timeout", ref=first.call_control_id, due_at=NOW)
    with store.transaction() as tx:
        tx.insert_application(app)
        for call in (partner, agent, first, second, stranger):
            tx.insert_call(call)
        tx.insert_conference(conf)
        tx.insert_conference(done)
        tx.insert_participant(here)
        tx.insert_participant(gone)
        tx.insert_queue(q)
        for call in (first, second):
            tx.insert_queue_entry(f.queue_entry(q, call_control_id=call.call_control_id))
        media_tx.insert_job(tx, job)
        media_tx.insert_recording(tx, rec)
        media_tx.put_media(tx, media)
        tx.add_timer(timer)
    with store.transaction() as tx:
        [timer] = tx.due_timers(NOW + 1)
    return {"acct": acct, "other": other, "app": app, "partner": partner, "agent": agent, "first": first,
            "second": second, "stranger": stranger, "conf": conf, "here": here, "gone": gone, "queue": q,
            "job": job, "rec": rec, "media": media, "timer": timer}


def test_every_kind_of_read(store: Store) -> None:
    w = _world(store)
    agent, q, conf = w["agent"], w["queue"], w["conf"]
    batch: list[r.Read] = [
        r.CallById(agent.call_control_id), r.CallById(w["stranger"].call_control_id, lock=False),
        r.BridgePartner(agent.call_control_id), r.QueueHeadCall("support"), r.ConferenceById(conf.id),
        r.ConferenceByName("standup"), r.MembersOf(conf.id), r.MixOf(conf.id),
        r.ParticipantOfCall(agent.call_control_id),
        r.ParticipantByIdOrLabel(conf.id, "host"), r.QueueByName("support"), r.QueueById(q.id),
        r.EntriesOfQueueNamed("support"), r.EntriesOfQueue(q.id), r.EntryOfCall(w["second"].call_control_id),
        r.AppById(w["app"].id), r.MediaByName("lobby"), r.JobById(w["job"].id),
        r.OpenJobs("record", call_control_id=agent.call_control_id), r.RecordingById(w["rec"].id),
        r.ClaimTimer.of(w["timer"]),
    ]  # fmt: skip
    with store.transaction() as tx:
        got = reads.answer(tx, w["acct"], batch)
    assert got[r.CallById(agent.call_control_id)] == agent
    assert got[r.CallById(w["stranger"].call_control_id, lock=False)] is None  # another account's
    assert got[r.BridgePartner(agent.call_control_id)] == w["partner"]
    assert got[r.QueueHeadCall("support")] == w["first"]
    assert got[r.ConferenceById(conf.id)] == conf
    assert got[r.ConferenceByName("standup")] == conf  # the active one, not the newer completed one
    assert got[r.MembersOf(conf.id)] == [w["here"]]
    here = w["here"]
    assert got[r.MixOf(conf.id)] == [MixMember(here.id, here.call_control_id, here.muted, here.on_hold,
                                               here.supervisor_role, here.whisper_call_control_ids,
                                               here.hold_audio_url, here.hold_media_name, here.node_id)]
    assert got[r.ParticipantOfCall(agent.call_control_id)] == w["here"]
    assert got[r.ParticipantByIdOrLabel(conf.id, "host")] == w["here"]
    assert got[r.QueueByName("support")] == q and got[r.QueueById(q.id)] == q
    named, by_id = got[r.EntriesOfQueueNamed("support")], got[r.EntriesOfQueue(q.id)]
    assert [e.call_control_id for e in named] == [w["first"].call_control_id, w["second"].call_control_id]
    assert named == by_id
    assert got[r.EntryOfCall(w["second"].call_control_id)] == by_id[1]
    assert got[r.AppById(w["app"].id)] == w["app"]
    assert got[r.MediaByName("lobby")] == w["media"]
    assert got[r.JobById(w["job"].id)] == w["job"]
    assert got[r.OpenJobs("record", call_control_id=agent.call_control_id)] == [w["job"]]
    assert got[r.RecordingById(w["rec"].id)] == w["rec"]
    assert got[r.ClaimTimer.of(w["timer"])] is True
    with store.transaction() as tx:  # claimed: a second claim finds nothing
        assert reads.answer(tx, w["acct"], [r.ClaimTimer.of(w["timer"])]) == {r.ClaimTimer.of(w["timer"]): False}


def test_another_account_reads_nothing(store: Store) -> None:
    w = _world(store)
    agent, q, conf = w["agent"], w["queue"], w["conf"]
    batch: list[r.Read] = [
        r.CallById(agent.call_control_id), r.BridgePartner(agent.call_control_id), r.QueueHeadCall("support"),
        r.ConferenceById(conf.id), r.ConferenceByName("standup"), r.QueueByName("support"), r.QueueById(q.id),
        r.EntriesOfQueueNamed("support"), r.AppById(w["app"].id), r.MediaByName("lobby"), r.JobById(w["job"].id),
        r.OpenJobs("record", call_control_id=agent.call_control_id), r.RecordingById(w["rec"].id),
    ]  # fmt: skip
    with store.transaction() as tx:
        got = reads.answer(tx, w["other"], batch)
    assert all(value in (None, []) for value in got.values()), got


def test_a_batch_is_one_round_trip(store: Store) -> None:
    w = _world(store)
    agent = w["agent"]
    with store.transaction() as tx:
        before = tx.conn.round_trips
        reads.answer(tx, w["acct"], [r.QueueByName("support"), r.EntriesOfQueueNamed("support"),
                                     r.CallById(agent.call_control_id), r.QueueHeadCall("support"),
                                     r.BridgePartner(agent.call_control_id)])  # fmt: skip
        if store.url.startswith("postgresql"):
            assert tx.conn.round_trips - before == 1
