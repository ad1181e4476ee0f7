"""Conference commands without a database: joins, flags, leaving and ending, and the batches they read in."""

from __future__ import annotations

from callroom.control import conference_flags, conferences
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import Conference
from callroom.model.states import CallState, ConferenceStatus, ParticipantStatus
from tests.control.memory import Memory, new_call


def _conference(mem: Memory, people: int = 3, **request: object) -> tuple[Conference, list[str]]:
    calls = [new_call(mem).call_control_id for _ in range(people)]
    conf, _ = mem.run(lambda w: conferences.create(w, conferences.CreateRequest(
        call_control_id=calls[0], name="standup", **request)))  # type: ignore[arg-type]
    for cid in calls[1:]:
        mem.run(lambda w, cid=cid: conferences.join(w, conf.id, cid, conferences.JoinOptions()))
    mem.webhooks.clear()
    return conf, calls


def _mix(effects_media: list[m.MediaOp]) -> m.ConferenceMix:
    [mix] = [op for op in effects_media if isinstance(op, m.ConferenceMix)]
    return mix


def test_create_joins_the_creator_and_the_name_is_taken_while_it_lives() -> None:
    mem = Memory()
    conf, [host, guest, _] = _conference(mem)
    assert mem.call(host).state is CallState.CONFERENCED and conf.status is ConferenceStatus.IN_PROGRESS
    other = new_call(mem)
    refused = mem.refused(lambda w: conferences.create(w, conferences.CreateRequest(
        call_control_id=other.call_control_id, name="standup")))
    assert [i.code for i in refused.items] == ["90033"]
    refused = mem.refused(lambda w: conferences.join(w, conf.id, guest, conferences.JoinOptions()))
    assert [i.code for i in refused.items] == ["90104"]  # already in it: the call table's refusal


def test_join_reads_the_conference_its_members_and_the_call_in_one_batch() -> None:
    mem = Memory()
    conf, _ = _conference(mem, people=1)
    call = new_call(mem)
    _, effects = mem.run(lambda w: conferences.join(w, conf.id, call.call_control_id,
                                                    conferences.JoinOptions(mute=True)))
    assert len(mem.batches) == 1
    assert set(mem.batches[0]) == {r.ConferenceById(conf.id), r.MembersOf(conf.id),
                                   r.CallById(call.call_control_id), r.BridgePartner(call.call_control_id)}
    assert {x.call_control_id: x.muted for x in _mix(effects.media).members}[call.call_control_id] is True
    assert mem.events() == ["conference.participant.joined"]


def test_a_full_conference_refuses_one_more() -> None:
    mem = Memory()
    conf, _ = _conference(mem, people=2, max_participants=2)
    extra = new_call(mem)
    refused = mem.refused(lambda w: conferences.join(w, conf.id, extra.call_control_id, conferences.JoinOptions()))
    assert [i.code for i in refused.items] == ["90103"]


def test_mute_some_reads_once_and_writes_one_statement() -> None:
    mem = Memory()
    conf, calls = _conference(mem)
    _, effects = mem.run(lambda w: conference_flags.set_flags(w, conf.id, [calls[1]], muted=True))
    # read unlocked; the conference is locked with the writes, then one statement
    assert mem.batches == [(r.ConferenceById(conf.id, lock=False), r.MixOf(conf.id))]
    assert [type(w).__name__ for w in effects.writes] == ["LockConference", "SetParticipantFlags"]
    # the media plane hears what changed, not the whole mix (whose other members were not locked)
    assert effects.media == [m.MemberFlags(conf.id, (calls[1],), muted=True)]
    _, effects = mem.run(lambda w: conference_flags.set_flags(w, conf.id, None, muted=False))
    (everyone,) = effects.media
    assert isinstance(everyone, m.MemberFlags) and sorted(everyone.call_control_ids) == sorted(calls)
    assert (everyone.muted, everyone.on_hold) == (False, None)


def test_flag_refusals() -> None:
    mem = Memory()
    conf, calls = _conference(mem)
    refused = mem.refused(lambda w: conference_flags.set_flags(w, conf.id, [calls[0], "v3:nobody"], muted=True))
    assert [(i.code, i.pointer) for i in refused.items] == [("90105", "/call_control_ids")]
    refused = mem.refused(lambda w: conference_flags.set_flags(w, "no-such", None, muted=True))
    assert refused.status == 404 and [i.code for i in refused.items] == ["90058"]
    mem.run(lambda w: conferences.end_via_api(w, conf.id))
    refused = mem.refused(lambda w: conference_flags.set_flags(w, conf.id, None, muted=True))
    assert [i.code for i in refused.items] == ["90019"]


def test_hold_with_stored_audio_reads_the_file_once_named() -> None:
    from callroom.model.records import MediaFile

    mem = Memory()
    mem.media.append(MediaFile(account_id="acct", media_name="lobby", path="/m/lobby.wav", content_type="audio/wav",
                               size_bytes=4, created_at=0.0, updated_at=0.0))
    conf, calls = _conference(mem)
    _, effects = mem.run(lambda w: conference_flags.set_flags(w, conf.id, [calls[0]], on_hold=True,
                                                              hold_media_name="lobby"))
    assert len(mem.batches) == 2 and mem.batches[1] == (r.MediaByName("lobby"),)
    assert effects.media == [m.MemberFlags(conf.id, (calls[0],), on_hold=True, hold_audio="file:/m/lobby.wav")]


def test_the_last_to_leave_ends_it_and_a_host_ends_it_for_everyone() -> None:
    mem = Memory()
    conf, calls = _conference(mem, people=2)
    mem.run(lambda w: conferences.leave(w, conf.id, calls[0], None))
    assert mem.call(calls[0]).state is CallState.PARKED
    mem.run(lambda w: conferences.leave(w, conf.id, calls[1], None))
    assert mem.conferences[0].status is ConferenceStatus.COMPLETED and mem.conferences[0].end_reason == "all_left"
    assert mem.events() == ["conference.participant.left", "conference.participant.left", "conference.ended"]

    mem = Memory()
    host = new_call(mem).call_control_id
    conf, _ = mem.run(lambda w: conferences.create(w, conferences.CreateRequest(
        call_control_id=host, name="town", creator=conferences.JoinOptions(end_conference_on_exit=True))))
    guests = [new_call(mem).call_control_id for _ in range(2)]
    for cid in guests:
        mem.run(lambda w, cid=cid: conferences.join(w, conf.id, cid, conferences.JoinOptions()))
    mem.run(lambda w: conferences.leave(w, conf.id, host, None))
    assert mem.conferences[0].end_reason == "host_left"
    assert [mem.call(cid).state for cid in guests] == [CallState.ENDED, CallState.ENDED]
    assert all(p.status is ParticipantStatus.LEFT for p in mem.participants)
