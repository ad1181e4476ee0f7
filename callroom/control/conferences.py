"""Conferences and their participants: create, join, leave, roles, and how a conference ends.

Rules (see README "Behaviour"): a conference created with ``start_conference_on_create=false`` stays
``init`` and everyone in it is held until a participant joins with ``start_conference_on_enter=true``.
It ends when the last participant leaves (``all_left``), when a participant with
``end_conference_on_exit`` leaves (``host_left``, everyone hung up) or ``soft_end_conference_on_exit``
(``host_left``, everyone parked), through the API (``ended_via_api``) or at its expiry
(``time_exceeded``: ``duration_minutes``, at most 4 hours).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from callroom.control import queues
from callroom.control.guards import active_conference, answered, conference, reject
from callroom.control.legs import check, finish, hangup_source_for_local, leave_bridge, move, park
from callroom.control.webhooks import emit_conference, emit_participant
from callroom.control.world import Steps, World
from callroom.errors import CommandRejected, NotFound
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import (
    CONFERENCE_MAX_LIFETIME_SECS,
    Call,
    Conference,
    MediaFile,
    MixMember,
    Participant,
    new_uuid,
)
from callroom.model.states import (
    CONFERENCE_TRANSITIONS,
    PARTICIPANT_TRANSITIONS,
    CallEvent,
    CallState,
    ConferenceEvent,
    ConferenceStatus,
    DequeueReason,
    ParticipantEvent,
    ParticipantStatus,
    next_state,
)


@dataclass(slots=True)
class CreateRequest:
    call_control_id: str
    name: str
    beep_enabled: str = "never"
    client_state: str | None = None
    comfort_noise: bool = True
    duration_minutes: int | None = None
    hold_audio_url: str | None = None
    hold_media_name: str | None = None
    max_participants: int = 250
    region: str = "US"
    start_conference_on_create: bool = True
    creator: JoinOptions | None = None  # how the creating leg joins (dial's conference_config); default plain


@dataclass(slots=True)
class JoinOptions:
    beep_enabled: str | None = None
    client_state: str | None = None
    end_conference_on_exit: bool = False
    soft_end_conference_on_exit: bool = False
    hold: bool = False
    hold_audio_url: str | None = None
    hold_media_name: str | None = None
    mute: bool = False
    start_conference_on_enter: bool = False
    supervisor_role: str = "none"
    whisper_call_control_ids: list[str] = field(default_factory=list)
    label: str | None = None


def join_options(body: dict[str, Any]) -> JoinOptions:
    return JoinOptions(
        beep_enabled=body.get("beep_enabled"),
        client_state=body.get("client_state"),
        end_conference_on_exit=bool(body.get("end_conference_on_exit", False)),
        soft_end_conference_on_exit=bool(body.get("soft_end_conference_on_exit", False)),
        hold=bool(body.get("hold", False)),
        hold_audio_url=body.get("hold_audio_url"),
        hold_media_name=body.get("hold_media_name"),
        mute=bool(body.get("mute", False)),
        start_conference_on_enter=bool(body.get("start_conference_on_enter", False)),
        supervisor_role=body.get("supervisor_role") or "none",
        whisper_call_control_ids=list(body.get("whisper_call_control_ids") or []),
        label=body.get("label"),
    )


# -- commands --------------------------------------------------------------------------------------------


def create(w: World, req: CreateRequest) -> Steps[Conference]:
    cid = req.call_control_id
    yield from w.load(r.ConferenceByName(req.name), r.CallById(cid), r.BridgePartner(cid))
    if w.result(r.ConferenceByName(req.name)) is not None:
        raise CommandRejected(
            "90033", "Conference name already in use", f"An active conference named {req.name!r} exists.", "/name"
        )
    call = answered(w, cid, pointer="/call_control_id")
    check(call, CallEvent.JOIN)
    conf = yield from _create(w, req, call)
    return conf


def _create(w: World, req: CreateRequest, call: Call) -> Steps[Conference]:
    lifetime = CONFERENCE_MAX_LIFETIME_SECS
    if req.duration_minutes is not None:
        lifetime = min(lifetime, req.duration_minutes * 60)
    conf = Conference(
        id=new_uuid(), account_id=w.account_id, name=req.name,
        status=ConferenceStatus.IN_PROGRESS if req.start_conference_on_create else ConferenceStatus.INIT,
        connection_id=call.connection_id, creator_call_control_id=call.call_control_id,
        creator_call_session_id=call.call_session_id, created_at=w.now, updated_at=w.now, expires_at=w.now + lifetime,
        region=req.region, beep_enabled=req.beep_enabled, comfort_noise=req.comfort_noise,
        max_participants=req.max_participants, hold_audio_url=req.hold_audio_url,
        hold_media_name=req.hold_media_name, client_state=req.client_state, node_id=call.node_id,
    )  # fmt: skip
    w.insert(conf)
    w.command_result = conf.id
    w.schedule("conference_expiry", conf.id, conf.expires_at)
    emit_conference(w, "conference.created", conf, call_leg_id=call.call_leg_id)
    yield from join_into(w, conf, call, req.creator or JoinOptions(client_state=req.client_state))
    return conf


def join(w: World, id_or_name: str, call_control_id: str, opts: JoinOptions) -> Steps[Participant]:
    """The ``join`` action: the conference (by id or name, locked, with its members), then the call."""
    conf = yield from active_conference(w, id_or_name, with_members=True,
                                        also=(r.CallById(call_control_id), r.BridgePartner(call_control_id)))
    yield from w.load(r.MembersOf(conf.id), r.CallById(call_control_id), r.BridgePartner(call_control_id))
    call = answered(w, call_control_id, pointer="/call_control_id")
    p = yield from join_into(w, conf, call, opts)
    return p


def join_into(w: World, conf: Conference, call: Call, opts: JoinOptions) -> Steps[Participant]:
    """``call`` joins ``conf`` (whose members are read): it leaves its queue or bridge first."""
    if not conf.is_active:
        raise CommandRejected("90019", "Conference has already ended", "This conference has already ended.")
    check(call, CallEvent.JOIN)
    present = w.members(conf.id)
    if len(present) >= conf.max_participants:
        raise reject("90103", f"The conference already has its maximum of {conf.max_participants} participants.")
    unknown = unknown_ids(present, opts.whisper_call_control_ids)
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.",
                     "/whisper_call_control_ids")
    if call.state is CallState.QUEUED:
        yield from queues.remove(w, call, DequeueReason.BRIDGED)
    yield from leave_bridge(w, call)
    if opts.client_state is not None:
        call.client_state = opts.client_state
    move(call, CallEvent.JOIN)
    call.conference_id = conf.id
    w.update(call)
    p = Participant(
        id=new_uuid(), conference_id=conf.id, account_id=w.account_id, call_control_id=call.call_control_id,
        call_leg_id=call.call_leg_id, call_session_id=call.call_session_id, connection_id=call.connection_id,
        # Answered legs carry media already: the participant is connected at once.
        status=next_state("participant", PARTICIPANT_TRANSITIONS, ParticipantStatus.JOINING,
                          ParticipantEvent.CONNECTED),
        created_at=w.now, updated_at=w.now, label=opts.label, muted=opts.mute, on_hold=opts.hold,
        supervisor_role=opts.supervisor_role, whisper_call_control_ids=list(opts.whisper_call_control_ids),
        end_conference_on_exit=opts.end_conference_on_exit,
        soft_end_conference_on_exit=opts.soft_end_conference_on_exit,
        start_conference_on_enter=opts.start_conference_on_enter, beep_enabled=opts.beep_enabled,
        hold_audio_url=opts.hold_audio_url, hold_media_name=opts.hold_media_name, node_id=call.node_id,
    )  # fmt: skip
    w.insert(p)
    emit_participant(w, "conference.participant.joined", conf, call)
    if conf.status is ConferenceStatus.INIT and opts.start_conference_on_enter:
        conf.status = next_state("conference", CONFERENCE_TRANSITIONS, conf.status, ConferenceEvent.START)
    conf.updated_at = w.now
    w.update(conf)
    yield from push_mix(w, conf, beep="enter" if _beeps(conf, p, "on_enter") else None)
    return p


def join_from_dial(w: World, call: Call, config: dict[str, Any]) -> Steps[None]:
    """A leg dialled with ``conference_config`` answered: join (or start) the named conference."""
    conf: Conference | None = None
    yield from w.load(r.BridgePartner(call.call_control_id))
    if config.get("id"):
        conf_id = str(config["id"])
        yield from w.load(r.ConferenceById(conf_id), r.MembersOf(conf_id))
        conf = w.result(r.ConferenceById(conf_id))
    elif config.get("conference_name"):
        name = str(config["conference_name"])
        yield from w.load(r.ConferenceByName(name))
        conf = w.result(r.ConferenceByName(name))
        if conf is None:
            yield from _create(w, CreateRequest(
                call_control_id=call.call_control_id, name=name,
                beep_enabled=str(config.get("beep_enabled") or "never"),
                start_conference_on_create=bool(config.get("start_conference_on_create", True)),
                hold_audio_url=config.get("hold_audio_url"), hold_media_name=config.get("hold_media_name"),
                creator=join_options(config),  # muted, held, ending it on exit... as it would join
            ), call)  # fmt: skip
            return
        yield from w.load(r.MembersOf(conf.id))
    if conf is None or not conf.is_active:
        finish(w, call, cause="normal_clearing", source=hangup_source_for_local(call))
        return
    yield from join_into(w, conf, call, join_options(config))


def leave(w: World, id_or_name: str, call_control_id: str, beep_enabled: str | None) -> Steps[None]:
    """The ``leave`` action: the leg goes back to parked, alive."""
    conf = yield from active_conference(w, id_or_name, with_members=True,
                                        also=(r.CallById(call_control_id), r.ParticipantOfCall(call_control_id)))
    yield from w.load(r.MembersOf(conf.id), r.CallById(call_control_id), r.ParticipantOfCall(call_control_id))
    p = participant(w, conf, call_control_id, "/call_control_id")
    call = answered(w, call_control_id, pointer="/call_control_id")
    if beep_enabled is not None:
        p.beep_enabled = beep_enabled
    _participant_left(w, conf, p, call)
    call.conference_id = None
    park(w, call, CallEvent.LEAVE)
    yield from _after_leave(w, conf, p, call)


def leg_hung_up(w: World, call: Call) -> Steps[None]:
    """``call`` (a participant) is ending; called by ``hangup.end_leg`` before the leg is marked ended."""
    assert call.conference_id is not None
    conf_id = call.conference_id
    yield from w.load(r.ConferenceById(conf_id), r.MembersOf(conf_id), r.ParticipantOfCall(call.call_control_id))
    conf: Conference | None = w.result(r.ConferenceById(conf_id))
    p: Participant | None = w.result(r.ParticipantOfCall(call.call_control_id))
    if conf is None or p is None:
        return
    _participant_left(w, conf, p, call)
    yield from _after_leave(w, conf, p, call)


def take_out(w: World, call: Call) -> Steps[None]:
    """``call`` (a participant) leaves to go elsewhere (a transfer of it answered): ``conference.participant.left``
    (the conference may end), and the leg is parked until it moves on."""
    yield from leg_hung_up(w, call)
    call.conference_id = None
    park(w, call, CallEvent.LEAVE)


def _participant_left(w: World, conf: Conference, p: Participant, call: Call) -> None:
    p.status = next_state("participant", PARTICIPANT_TRANSITIONS, p.status, ParticipantEvent.LEAVE)
    p.left_at = w.now
    p.updated_at = w.now
    w.update(p)
    w.participant_left(p)
    emit_participant(w, "conference.participant.left", conf, call)


def _after_leave(w: World, conf: Conference, p: Participant, call: Call) -> Steps[None]:
    if not conf.is_active:
        return
    if p.end_conference_on_exit:
        yield from end(w, conf, "host_left", hang_up=True, ended_by=call)
    elif p.soft_end_conference_on_exit:
        yield from end(w, conf, "host_left", hang_up=False, ended_by=call)
    elif not w.members(conf.id):
        yield from end(w, conf, "all_left", hang_up=False, ended_by=None)
    else:
        yield from push_mix(w, conf, beep="exit" if _beeps(conf, p, "on_exit") else None)


def end_via_api(w: World, conference_id: str) -> Steps[None]:
    conf = yield from active_conference(w, conference_id, by_name=False, with_members=True)
    yield from end(w, conf, "ended_via_api", hang_up=True, ended_by=None)


def end(w: World, conf: Conference, reason: str, *, hang_up: bool, ended_by: Call | None) -> Steps[None]:
    """End the conference: every participant leaves (hung up, or parked for a soft end)."""
    if not conf.is_active:
        return
    conf.status = next_state("conference", CONFERENCE_TRANSITIONS, conf.status, ConferenceEvent.END)
    conf.end_reason = reason
    conf.ended_at = w.now
    conf.updated_at = w.now
    if ended_by is not None:
        conf.ended_by_call_control_id = ended_by.call_control_id
        conf.ended_by_call_session_id = ended_by.call_session_id
    w.update(conf)
    w.cancel("conference_expiry", conf.id)
    yield from w.load(r.MembersOf(conf.id))
    present = list(w.members(conf.id))
    creator = r.CallById(conf.creator_call_control_id, lock=False)  # for its call_leg_id, in the same batch
    yield from w.load(*(r.CallById(p.call_control_id) for p in present), creator)
    for p in present:
        call = w.call(p.call_control_id)
        if call is None:
            continue
        _participant_left(w, conf, p, call)
        if not call.is_alive:
            continue
        call.conference_id = None
        if hang_up:  # no longer in the conference: ended as a parked leg
            move(call, CallEvent.LEAVE)
            finish(w, call, cause="normal_clearing", source=hangup_source_for_local(call))
        else:
            park(w, call, CallEvent.LEAVE)
    creator_call = w.call(conf.creator_call_control_id)
    # The webhook's reason is one of Telnyx's webhook values (all_left, host_left, time_exceeded); an end
    # through the API has none of them, so it is told by the conference's end_reason alone.
    webhook_reason = {} if reason == "ended_via_api" else {"reason": reason}
    emit_conference(w, "conference.ended", conf, call_leg_id=creator_call.call_leg_id if creator_call else None,
                    **webhook_reason)
    w.media.append(m.ConferenceClosed(conf.id))


def on_expiry(w: World, conference_id: str) -> Steps[None]:
    yield from w.load(r.ConferenceById(conference_id), r.MembersOf(conference_id))
    conf: Conference | None = w.result(r.ConferenceById(conference_id))
    if conf is not None and conf.is_active:
        yield from end(w, conf, "time_exceeded", hang_up=True, ended_by=None)


def rehome(w: World, conference_id: str, gone: str, survivor: str) -> Steps[None]:
    """The node that mixed the conference (``gone``) is gone (a cluster's): from now on it is mixed where its
    first member's call lives (``survivor``, the node doing this, if nobody is left), and the mix is sent
    there. Nothing if another survivor moved it first."""
    yield from w.load(r.ConferenceById(conference_id), r.MixOf(conference_id))
    conf: Conference | None = w.result(r.ConferenceById(conference_id))
    if conf is None or not conf.is_active or conf.node_id != gone:
        return
    present: list[MixMember] = w.result(r.MixOf(conference_id))
    conf.node_id = next((p.node_id for p in present if p.node_id and p.node_id != gone), survivor)
    conf.updated_at = w.now
    w.update(conf)
    yield from push_mix(w, conf, members=present)


def floor_changed(w: World, conference_id: str, call_control_id: str) -> Steps[None]:
    """The loudest active talker changed: ``conference.floor.changed`` about the new speaker."""
    yield from w.load(r.ConferenceById(conference_id, lock=False), r.CallById(call_control_id, lock=False))
    conf: Conference | None = w.result(r.ConferenceById(conference_id, lock=False))
    call = w.call(call_control_id)
    if conf is None or call is None or not conf.is_active:
        return
    emit_conference(
        w, "conference.floor.changed", conf, call_control_id=call.call_control_id, call_leg_id=call.call_leg_id,
        call_session_id=call.call_session_id, client_state=call.client_state, connection_id=call.connection_id,
    )


def update_role(w: World, id_or_name: str, call_control_id: str, role: str,
                whisper_ids: list[str] | None) -> Steps[None]:  # fmt: skip
    conf = yield from active_conference(w, id_or_name, with_members=True,
                                        also=(r.ParticipantOfCall(call_control_id),))
    yield from w.load(r.MembersOf(conf.id), r.ParticipantOfCall(call_control_id))
    p = participant(w, conf, call_control_id, "/call_control_id")
    unknown = unknown_ids(w.members(conf.id), whisper_ids or [])
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.",
                     "/whisper_call_control_ids")
    p.supervisor_role = role
    if whisper_ids is not None:
        p.whisper_call_control_ids = list(whisper_ids)
    p.updated_at = w.now
    w.update(p)
    yield from push_mix(w, conf)


def update_participant(w: World, conference_id: str, participant_id: str,
                       changes: dict[str, Any]) -> Steps[tuple[Conference, Participant]]:  # fmt: skip
    conf = yield from conference(w, conference_id, by_name=False, also=(
        r.ParticipantByIdOrLabel(conference_id, participant_id),))
    yield from w.load(r.ParticipantByIdOrLabel(conf.id, participant_id))
    p: Participant | None = w.result(r.ParticipantByIdOrLabel(conf.id, participant_id))
    if p is None:
        raise NotFound(f"No participant {participant_id!r} in this conference.", "10005", "Participant not found")
    for key in ("beep_enabled", "end_conference_on_exit", "soft_end_conference_on_exit"):
        if key in changes and changes[key] is not None:
            setattr(p, key, changes[key])
    p.updated_at = w.now
    w.update(p)
    return conf, p


# -- the mix ---------------------------------------------------------------------------------------------


def effective_hold(conf: Conference, p: Participant | MixMember) -> bool:
    """Held by the API, or waiting for a conference that has not started."""
    return p.on_hold or conf.status is ConferenceStatus.INIT


def push_mix(w: World, conf: Conference, beep: str | None = None, also_media: str | None = None,
             members: Sequence[Participant | MixMember] | None = None) -> Steps[None]:  # fmt: skip
    """Tell the media plane the conference's whole who-hears-whom as it now stands (its members as this
    command leaves them, or ``members`` as a flag change read and changed them). Stored hold audio is read by
    name first (``also_media``: one more name a change may name), in one batch and only when some is named."""
    present = w.members(conf.id) if members is None else members
    names = {n for n in (conf.hold_media_name, also_media, *(p.hold_media_name for p in present)) if n}
    yield from w.load(*(r.MediaByName(n) for n in sorted(names)))
    mixed = tuple(
        m.ConferenceMember(
            call_control_id=p.call_control_id, muted=p.muted, on_hold=effective_hold(conf, p),
            supervisor_role=p.supervisor_role, whisper_to=tuple(p.whisper_call_control_ids),
            hold_audio=_hold_as_named(w, p.hold_audio_url, p.hold_media_name),
        )
        for p in present
    )  # fmt: skip
    w.media.append(m.ConferenceMix(
        conf.id, mixed, conf.comfort_noise, beep, _hold_as_named(w, conf.hold_audio_url, conf.hold_media_name),
        started=conf.status is not ConferenceStatus.INIT,
    ))  # fmt: skip


def hold_audio(w: World, url: str | None, media_name: str | None) -> Steps[str | None]:
    """Hold audio as the media plane names it (``_hold_as_named``), its stored media read first if named."""
    if media_name and not url:
        yield from w.load(r.MediaByName(media_name))
    return _hold_as_named(w, url, media_name)


def _hold_as_named(w: World, url: str | None, media_name: str | None) -> str | None:
    """``url:<url>`` or ``file:<path>`` (None: the built-in music); a media name must have been read."""
    if url:
        return f"url:{url}"
    if media_name:
        media: MediaFile | None = w.result(r.MediaByName(media_name))
        return f"file:{media.path}" if media is not None else None
    return None


# -- helpers ---------------------------------------------------------------------------------------------

def _beeps(conf: Conference, p: Participant, moment: str) -> bool:
    setting = p.beep_enabled or conf.beep_enabled
    return setting in ("always", moment)


def participant(w: World, conf: Conference, call_control_id: str, pointer: str) -> Participant:
    """The call's present participant in ``conf``; 90105 if it is not one."""
    p: Participant | None = w.result(r.ParticipantOfCall(call_control_id))
    if p is None or p.conference_id != conf.id:
        raise reject("90105", f"Call {call_control_id!r} is not a participant of this conference.", pointer)
    return p


P = TypeVar("P", Participant, MixMember)


def targets(present: list[P], ids: list[str] | None) -> list[P]:
    """All present participants, or those named (90105 if one is not present)."""
    if not ids:
        return present
    unknown = unknown_ids(present, ids)
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.", "/call_control_ids")
    wanted = set(ids)
    return [p for p in present if p.call_control_id in wanted]


def unknown_ids(present: Sequence[Participant | MixMember], ids: list[str]) -> list[str]:
    known = {p.call_control_id for p in present}
    return [i for i in ids if i not in known]
