"""Conferences and their participants: create, join, leave, mute, hold, roles, and how a conference ends.

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

from callroom.control.context import Ctx
from callroom.control.guards import active_conference, answered_call, reject
from callroom.control.legs import end_leg, hangup_source_for_local, leave_current_bridge, move
from callroom.errors import CommandRejected
from callroom.model import media as m
from callroom.model.records import (
    CONFERENCE_MAX_LIFETIME_SECS,
    Call,
    Conference,
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
from callroom.store import media_tx

P = TypeVar("P", Participant, MixMember)


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


def create(ctx: Ctx, req: CreateRequest) -> Conference:
    if ctx.tx.active_conference_by_name(ctx.account_id, req.name, lock=True) is not None:
        raise CommandRejected(
            "90033", "Conference name already in use", f"An active conference named {req.name!r} exists.", "/name"
        )
    call = answered_call(ctx, req.call_control_id, pointer="/call_control_id")
    if call.state is CallState.CONFERENCED:
        raise reject("90104", "The call is already in a conference.", "/call_control_id")
    lifetime = CONFERENCE_MAX_LIFETIME_SECS
    if req.duration_minutes is not None:
        lifetime = min(lifetime, req.duration_minutes * 60)
    conf = Conference(
        id=new_uuid(),
        account_id=ctx.account_id,
        name=req.name,
        status=ConferenceStatus.IN_PROGRESS if req.start_conference_on_create else ConferenceStatus.INIT,
        connection_id=call.connection_id,
        creator_call_control_id=call.call_control_id,
        creator_call_session_id=call.call_session_id,
        created_at=ctx.now,
        updated_at=ctx.now,
        expires_at=ctx.now + lifetime,
        region=req.region,
        beep_enabled=req.beep_enabled,
        comfort_noise=req.comfort_noise,
        max_participants=req.max_participants,
        hold_audio_url=req.hold_audio_url,
        hold_media_name=req.hold_media_name,
        client_state=req.client_state,
    )
    ctx.tx.insert_conference(conf)
    ctx.command_result = conf.id
    ctx.schedule("conference_expiry", conf.id, conf.expires_at)
    ctx.emit_conference("conference.created", conf, call_leg_id=call.call_leg_id)
    join(ctx, conf, call, req.creator or JoinOptions(client_state=req.client_state))
    return conf


def join(ctx: Ctx, conf: Conference, call: Call, opts: JoinOptions) -> Participant:
    from callroom.control import queues

    if not conf.is_active:
        raise CommandRejected("90019", "Conference has already ended", "This conference has already ended.")
    if call.state is CallState.CONFERENCED:
        raise reject("90104", "The call is already in a conference.", "/call_control_id")
    present = ctx.tx.participants_of(conf.id)
    if len(present) >= conf.max_participants:
        raise reject("90103", f"The conference already has its maximum of {conf.max_participants} participants.")
    unknown = _unknown_ids(present, opts.whisper_call_control_ids)
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.",
                     "/whisper_call_control_ids")
    if call.state is CallState.QUEUED:
        queues.remove_from_queue(ctx, call, DequeueReason.BRIDGED, park=False)
    leave_current_bridge(ctx, call)
    if opts.client_state is not None:
        call.client_state = opts.client_state
    move(call, CallEvent.JOIN)
    call.conference_id = conf.id
    ctx.tx.update_call(call)
    p = Participant(
        id=new_uuid(),
        conference_id=conf.id,
        account_id=ctx.account_id,
        call_control_id=call.call_control_id,
        call_leg_id=call.call_leg_id,
        call_session_id=call.call_session_id,
        connection_id=call.connection_id,
        status=ParticipantStatus.JOINING,
        created_at=ctx.now,
        updated_at=ctx.now,
        label=opts.label,
        muted=opts.mute,
        on_hold=opts.hold,
        supervisor_role=opts.supervisor_role,
        whisper_call_control_ids=list(opts.whisper_call_control_ids),
        end_conference_on_exit=opts.end_conference_on_exit,
        soft_end_conference_on_exit=opts.soft_end_conference_on_exit,
        start_conference_on_enter=opts.start_conference_on_enter,
        beep_enabled=opts.beep_enabled,
        hold_audio_url=opts.hold_audio_url,
        hold_media_name=opts.hold_media_name,
    )
    # Legs answered before joining carry media already: the participant is connected at once.
    p.status = next_state("participant", PARTICIPANT_TRANSITIONS, p.status, ParticipantEvent.CONNECTED)
    ctx.tx.insert_participant(p)
    ctx.emit_participant("conference.participant.joined", conf, call)
    if conf.status is ConferenceStatus.INIT and opts.start_conference_on_enter:
        conf.status = next_state("conference", CONFERENCE_TRANSITIONS, conf.status, ConferenceEvent.START)
    conf.updated_at = ctx.now
    ctx.tx.update_conference(conf)
    push_mix(ctx, conf, beep="enter" if _beeps(conf, p, "on_enter") else None)
    return p


def join_from_dial(ctx: Ctx, call: Call, config: dict[str, Any]) -> None:
    """A leg dialled with ``conference_config`` answered: join (or start) the named conference."""
    conf = None
    if config.get("id"):
        conf = ctx.tx.get_conference(ctx.account_id, str(config["id"]), lock=True)
    elif config.get("conference_name"):
        conf = ctx.tx.active_conference_by_name(ctx.account_id, str(config["conference_name"]), lock=True)
        if conf is None:
            conf = create(
                ctx,
                CreateRequest(
                    call_control_id=call.call_control_id,
                    name=str(config["conference_name"]),
                    beep_enabled=str(config.get("beep_enabled") or "never"),
                    start_conference_on_create=bool(config.get("start_conference_on_create", True)),
                    hold_audio_url=config.get("hold_audio_url"),
                    hold_media_name=config.get("hold_media_name"),
                    creator=join_options(config),  # muted, held, ending it on exit... as it would join
                ),
            )
            return
    if conf is None or not conf.is_active:
        end_leg(ctx, call, cause="normal_clearing", source=hangup_source_for_local(call))
        return
    join(ctx, conf, call, join_options(config))


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


def leave(ctx: Ctx, conf: Conference, call_control_id: str, beep_enabled: str | None) -> None:
    """The ``leave`` action: the leg goes back to parked, alive."""
    p = _participant(ctx, conf, call_control_id, "/call_control_id")
    call = answered_call(ctx, call_control_id, pointer="/call_control_id")
    if beep_enabled is not None:
        p.beep_enabled = beep_enabled
    _participant_left(ctx, conf, p, call)
    move(call, CallEvent.LEAVE)
    call.conference_id = None
    ctx.tx.update_call(call)
    ctx.media.append(m.Park(call.call_control_id))
    _after_leave(ctx, conf, p, call)


def leg_hung_up(ctx: Ctx, call: Call) -> None:
    """``call`` (a participant) is ending; called by ``end_leg`` before the leg is marked ended."""
    assert call.conference_id is not None
    conf = ctx.tx.get_conference(ctx.account_id, call.conference_id, lock=True)
    p = ctx.tx.present_participant_for_call(call.call_control_id)
    if conf is None or p is None:
        return
    _participant_left(ctx, conf, p, call)
    _after_leave(ctx, conf, p, call)


def _participant_left(ctx: Ctx, conf: Conference, p: Participant, call: Call) -> None:
    p.status = next_state("participant", PARTICIPANT_TRANSITIONS, p.status, ParticipantEvent.LEAVE)
    p.left_at = ctx.now
    p.updated_at = ctx.now
    ctx.tx.update_participant(p)
    ctx.emit_participant("conference.participant.left", conf, call)


def _after_leave(ctx: Ctx, conf: Conference, p: Participant, call: Call) -> None:
    if not conf.is_active:
        return
    if p.end_conference_on_exit:
        end(ctx, conf, "host_left", hang_up=True, ended_by=call)
    elif p.soft_end_conference_on_exit:
        end(ctx, conf, "host_left", hang_up=False, ended_by=call)
    elif not ctx.tx.participants_of(conf.id):
        end(ctx, conf, "all_left", hang_up=False, ended_by=None)
    else:
        push_mix(ctx, conf, beep="exit" if _beeps(conf, p, "on_exit") else None)


def end(ctx: Ctx, conf: Conference, reason: str, *, hang_up: bool, ended_by: Call | None) -> None:
    """End the conference: every participant leaves (hung up, or parked for a soft end)."""
    if not conf.is_active:
        return
    conf.status = next_state("conference", CONFERENCE_TRANSITIONS, conf.status, ConferenceEvent.END)
    conf.end_reason = reason
    conf.ended_at = ctx.now
    conf.updated_at = ctx.now
    if ended_by is not None:
        conf.ended_by_call_control_id = ended_by.call_control_id
        conf.ended_by_call_session_id = ended_by.call_session_id
    ctx.tx.update_conference(conf)
    ctx.cancel("conference_expiry", conf.id)
    for p in ctx.tx.participants_of(conf.id):
        call = ctx.tx.get_call(ctx.account_id, p.call_control_id, lock=True)
        if call is None:
            continue
        _participant_left(ctx, conf, p, call)
        if not call.is_alive:
            continue
        call.conference_id = None
        if hang_up:
            # The leg is no longer in the conference: end it as a parked leg.
            move(call, CallEvent.LEAVE)
            end_leg(ctx, call, cause="normal_clearing", source=hangup_source_for_local(call))
        else:
            move(call, CallEvent.LEAVE)
            ctx.tx.update_call(call)
            ctx.media.append(m.Park(call.call_control_id))
    ctx.emit_conference("conference.ended", conf, reason=reason)
    ctx.media.append(m.ConferenceClosed(conf.id))


def on_expiry(ctx: Ctx, conference_id: str) -> None:
    conf = ctx.tx.get_conference(ctx.account_id, conference_id, lock=True)
    if conf is not None and conf.is_active:
        end(ctx, conf, "time_exceeded", hang_up=True, ended_by=None)


def floor_changed(ctx: Ctx, conference_id: str, call_control_id: str) -> None:
    """The loudest active talker changed: ``conference.floor.changed`` about the new speaker."""
    conf = ctx.tx.get_conference(ctx.account_id, conference_id)
    call = ctx.tx.get_call(ctx.account_id, call_control_id)
    if conf is None or call is None or not conf.is_active:
        return
    ctx.emit_conference(
        "conference.floor.changed", conf, call_control_id=call.call_control_id, call_leg_id=call.call_leg_id,
        call_session_id=call.call_session_id, client_state=call.client_state, connection_id=call.connection_id,
    )


def update_role(ctx: Ctx, conf: Conference, call_control_id: str, role: str, whisper_ids: list[str] | None) -> None:
    p = _participant(ctx, conf, call_control_id, "/call_control_id")
    present = ctx.tx.participants_of(conf.id)
    unknown = _unknown_ids(present, whisper_ids or [])
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.",
                     "/whisper_call_control_ids")
    p.supervisor_role = role
    if whisper_ids is not None:
        p.whisper_call_control_ids = list(whisper_ids)
    p.updated_at = ctx.now
    ctx.tx.update_participant(p)
    push_mix(ctx, conf)


def update_participant(ctx: Ctx, conf: Conference, p: Participant, changes: dict[str, Any]) -> Participant:
    for key in ("beep_enabled", "end_conference_on_exit", "soft_end_conference_on_exit"):
        if key in changes and changes[key] is not None:
            setattr(p, key, changes[key])
    p.updated_at = ctx.now
    ctx.tx.update_participant(p)
    return p


def effective_hold(conf: Conference, p: Participant | MixMember) -> bool:
    """Held by the API, or waiting for a conference that has not started."""
    return p.on_hold or conf.status is ConferenceStatus.INIT


def push_mix(
    ctx: Ctx, conf: Conference, beep: str | None = None, present: list[MixMember] | None = None,
    hold_files: dict[str, str | None] | None = None,
) -> None:
    """Tell the media plane the conference's whole who-hears-whom as it now stands. ``hold_files``: stored
    hold audio already looked up, by media name (after a commit nothing may be read)."""

    def hold(url: str | None, media_name: str | None) -> str | None:
        if not url and media_name and hold_files is not None:
            return hold_files.get(media_name)
        return _hold_audio(ctx, url, media_name)

    members = tuple(
        m.ConferenceMember(
            call_control_id=p.call_control_id,
            muted=p.muted,
            on_hold=effective_hold(conf, p),
            supervisor_role=p.supervisor_role,
            whisper_to=tuple(p.whisper_call_control_ids),
            hold_audio=hold(p.hold_audio_url, p.hold_media_name),
        )
        for p in (present if present is not None else ctx.tx.mix_members(conf.id))
    )
    ctx.media.append(
        m.ConferenceMix(conf.id, members, conf.comfort_noise, beep, hold(conf.hold_audio_url, conf.hold_media_name))
    )


def _hold_audio(ctx: Ctx, url: str | None, media_name: str | None) -> str | None:
    """Hold audio as the media plane names it: ``url:<url>`` or ``file:<path>`` (None: the built-in music)."""
    if url:
        return f"url:{url}"
    if media_name:
        media = media_tx.get_media(ctx.tx, ctx.account_id, media_name)
        return f"file:{media.path}" if media is not None else None
    return None


def _beeps(conf: Conference, p: Participant, moment: str) -> bool:
    setting = p.beep_enabled or conf.beep_enabled
    return setting in ("always", moment)


def _participant(ctx: Ctx, conf: Conference, call_control_id: str, pointer: str) -> Participant:
    p = ctx.tx.present_participant_for_call(call_control_id)
    if p is None or p.conference_id != conf.id:
        raise reject("90105", f"Call {call_control_id!r} is not a participant of this conference.", pointer)
    return p


def _targets(present: list[P], ids: list[str] | None) -> list[P]:
    if not ids:
        return present
    unknown = _unknown_ids(present, ids)
    if unknown:
        raise reject("90105", f"Not participants of this conference: {', '.join(unknown)}.", "/call_control_ids")
    wanted = set(ids)
    return [p for p in present if p.call_control_id in wanted]


def _unknown_ids(present: Sequence[Participant | MixMember], ids: list[str]) -> list[str]:
    known = {p.call_control_id for p in present}
    return [i for i in ids if i not in known]


def lookup(ctx: Ctx, id_or_name: str, *, by_name: bool = True) -> Conference:
    return active_conference(ctx, id_or_name, by_name=by_name)
