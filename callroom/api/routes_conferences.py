"""``/conferences``: create, list, retrieve, participants, and every conference action."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from callroom.api import schemas as s
from callroom.api import views
from callroom.api.common import OK, Account, Ctl, PageParams, data
from callroom.control import conference_flags
from callroom.control import conferences as confs
from callroom.control.queries import find_conference
from callroom.control.service import Duplicate, ReadCtx
from callroom.errors import NotFound
from callroom.model.records import Conference
from callroom.model.states import ParticipantStatus

router = APIRouter()

Status = Literal["init", "in_progress", "completed"]


@router.get("/conferences")
async def list_conferences(
    account: Account,
    ctl: Ctl,
    page: PageParams,
    name: Annotated[str | None, Query(alias="filter[name]")] = None,
    status: Annotated[Status | None, Query(alias="filter[status]")] = None,
) -> dict[str, Any]:
    items, total = await ctl.aread(
        account, lambda ctx: ctx.tx.list_conferences(account, page.number, page.size, name, status)
    )
    return page.envelope([views.conference(c) for c in items], total)


@router.post("/conferences")
async def create_conference(body: s.ConferenceCreate, account: Account, ctl: Ctl) -> dict[str, Any]:
    req = confs.CreateRequest(
        call_control_id=body.call_control_id,
        name=body.name,
        beep_enabled=body.beep_enabled,
        client_state=body.client_state,
        comfort_noise=body.comfort_noise,
        duration_minutes=body.duration_minutes,
        hold_audio_url=body.hold_audio_url,
        hold_media_name=body.hold_media_name,
        max_participants=body.max_participants,
        region=body.region,
        start_conference_on_create=body.start_conference_on_create,
    )
    result = await ctl.arun(
        account, lambda w: confs.create(w, req), dedupe=(body.call_control_id, body.command_id)
    )
    if isinstance(result, Duplicate):
        # A repeated command_id: answer with the conference the first request created.
        earlier = result.result or body.name
        result = await ctl.aread(account, lambda ctx: find_conference(ctx, earlier))
    return data(views.conference(result))


@router.get("/conferences/{conference_id}")
async def retrieve_conference(conference_id: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    conf = await ctl.aread(account, lambda ctx: find_conference(ctx, conference_id))
    return data(views.conference(conf))


@router.get("/conferences/{conference_id}/participants")
async def list_participants(
    conference_id: str,
    account: Account,
    ctl: Ctl,
    page: PageParams,
    muted: Annotated[bool | None, Query(alias="filter[muted]")] = None,
    on_hold: Annotated[bool | None, Query(alias="filter[on_hold]")] = None,
    whispering: Annotated[bool | None, Query(alias="filter[whispering]")] = None,
) -> dict[str, Any]:
    filters = {k: v for k, v in (("muted", muted), ("on_hold", on_hold), ("whispering", whispering)) if v is not None}

    def read(ctx: ReadCtx) -> dict[str, Any]:
        # The page of a conference named by its id travels with the conference's read (one round trip);
        # it is used only if that conference is found, and so is the account's.
        ahead = ctx.tx.read_participants(conference_id, page.number, page.size, filters)
        conf = find_conference(ctx, conference_id)
        fetch = ahead if conf.id == conference_id else ctx.tx.read_participants(conf.id, page.number, page.size,
                                                                                 filters)
        items, total = fetch()
        rows = [views.participant_in_list(p, conf, on_hold=_held(conf, p)) for p in items]
        return page.envelope(rows, total)

    return await ctl.aread(account, read)


def _held(conf: Conference, p: Any) -> bool:
    return p.status is not ParticipantStatus.LEFT and confs.effective_hold(conf, p)


@router.get("/conferences/{conference_id}/participants/{participant_id}")
async def retrieve_participant(conference_id: str, participant_id: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    def read(ctx: ReadCtx) -> dict[str, Any]:
        conf = find_conference(ctx, conference_id, by_name=False)
        p = ctx.tx.get_participant(conf.id, participant_id)
        if p is None:
            raise NotFound(f"No participant {participant_id!r} in this conference.", "10005", "Participant not found")
        return data(views.participant(p, on_hold=_held(conf, p)))

    return await ctl.aread(account, read)


@router.patch("/conferences/{conference_id}/participants/{participant_id}")
async def update_participant(
    conference_id: str, participant_id: str, body: s.ParticipantPatch, account: Account, ctl: Ctl
) -> dict[str, Any]:
    conf, p = await ctl.awrite(account, lambda w: confs.update_participant(
        w, conference_id, participant_id, body.model_dump(exclude_unset=True)))
    return data(views.participant(p, on_hold=_held(conf, p)))


# -- actions -------------------------------------------------------------------------------------------


@router.post("/conferences/{conference_id}/actions/join")
async def join(conference_id: str, body: s.Join, account: Account, ctl: Ctl) -> dict[str, Any]:
    opts = confs.join_options(body.model_dump())
    await ctl.arun(account, lambda w: confs.join(w, conference_id, body.call_control_id, opts),
                   dedupe=(body.call_control_id, body.command_id))
    return OK


@router.post("/conferences/{conference_id}/actions/leave")
async def leave(conference_id: str, body: s.Leave, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(account, lambda w: confs.leave(w, conference_id, body.call_control_id, body.beep_enabled),
                   dedupe=(body.call_control_id, body.command_id))
    return OK


async def _flags(conference_id: str, ids: list[str] | None, account: str, ctl: Any, **flags: Any) -> dict[str, Any]:
    await ctl.arun(account, lambda w: conference_flags.set_flags(w, conference_id, ids, **flags))
    return OK


@router.post("/conferences/{conference_id}/actions/mute")
async def mute(conference_id: str, account: Account, ctl: Ctl, body: s.Participants | None = None) -> dict[str, Any]:
    return await _flags(conference_id, body.call_control_ids if body else None, account, ctl, muted=True)


@router.post("/conferences/{conference_id}/actions/unmute")
async def unmute(conference_id: str, account: Account, ctl: Ctl, body: s.Participants | None = None) -> dict[str, Any]:
    return await _flags(conference_id, body.call_control_ids if body else None, account, ctl, muted=False)


@router.post("/conferences/{conference_id}/actions/hold")
async def hold(conference_id: str, account: Account, ctl: Ctl, body: s.Hold | None = None) -> dict[str, Any]:
    b = body or s.Hold()
    return await _flags(
        conference_id,
        b.call_control_ids,
        account,
        ctl,
        on_hold=True,
        hold_audio_url=b.audio_url,
        hold_media_name=b.media_name,
    )


@router.post("/conferences/{conference_id}/actions/unhold")
async def unhold(conference_id: str, body: s.Unhold, account: Account, ctl: Ctl) -> dict[str, Any]:
    return await _flags(conference_id, body.call_control_ids, account, ctl, on_hold=False)


@router.post("/conferences/{conference_id}/actions/update")
async def update(conference_id: str, body: s.Update, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(account, lambda w: confs.update_role(w, conference_id, body.call_control_id, body.supervisor_role,
                                                        body.whisper_call_control_ids),
                   dedupe=(conference_id, body.command_id))
    return OK


@router.post("/conferences/{conference_id}/actions/end")
async def end(conference_id: str, account: Account, ctl: Ctl, body: s.End | None = None) -> dict[str, Any]:
    await ctl.arun(account, lambda w: confs.end_via_api(w, conference_id),
                   dedupe=(conference_id, body.command_id if body else None))
    return OK
