"""Media actions on calls and conferences: play, speak, stop, gather, send DTMF, record."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from callroom.api import schemas_media as s
from callroom.api.common import OK, Account, Ctl
from callroom.control import media_actions as ma

router = APIRouter()

GATHER_LIMIT_MILLIS = 600_000  # no gather waits longer than ten minutes in all


def _storage(request: Request) -> tuple[str, str]:
    return str(request.app.state.recordings_dir), str(request.base_url).rstrip("/")


def _digits_request(
    body: s._Digits, prompt: ma.Source | None, invalid: ma.Source | None, stop_on_dtmf: bool = True
) -> ma.GatherRequest:
    # Telnyx's timeout_millis is the wait for a first digit after the prompt ends (then the prompt is
    # replayed while tries remain); initial_timeout_millis, where given, says the same more precisely.
    initial = body.initial_timeout_millis if "initial_timeout_millis" in body.model_fields_set else body.timeout_millis
    return ma.GatherRequest(
        prompt=prompt,
        invalid=invalid,
        minimum_digits=body.minimum_digits,
        maximum_digits=body.maximum_digits,
        terminating_digit=body.terminating_digit,
        valid_digits=body.valid_digits,
        timeout_millis=GATHER_LIMIT_MILLIS,
        inter_digit_timeout_millis=body.inter_digit_timeout_millis,
        initial_timeout_millis=initial,
        maximum_tries=body.maximum_tries,
        stop_playback_on_dtmf=stop_on_dtmf,
        gather_id=body.gather_id,
    )


def _audio(url: str | None, name: str | None) -> ma.Source | None:
    return ma.Source(audio_url=url, media_name=name) if (url or name) else None


# -- calls -------------------------------------------------------------------------------------------


@router.post("/calls/{cid}/actions/playback_start")
async def playback_start(cid: str, body: s.CallPlay, account: Account, ctl: Ctl) -> dict[str, Any]:
    src = ma.Source(audio_url=body.audio_url, media_name=body.media_name)
    await ctl.arun(account, lambda w: ma.call_play(
        w, cid, src, loop=body.loop, overlay=body.overlay, target_legs=body.target_legs,
        client_state=body.client_state, stop_first=body.stop,
    ), dedupe=(cid, body.command_id))
    return OK


@router.post("/calls/{cid}/actions/playback_stop")
async def playback_stop(cid: str, account: Account, ctl: Ctl, body: s.CallStopPlay | None = None) -> dict[str, Any]:
    b = body or s.CallStopPlay()
    await ctl.arun(
        account,
        lambda w: ma.call_stop(w, cid, which=b.stop, kinds=("playback",), client_state=b.client_state),
        dedupe=(cid, b.command_id),
    )
    return OK


@router.post("/calls/{cid}/actions/speak")
async def speak(cid: str, body: s.CallSpeak, account: Account, ctl: Ctl) -> dict[str, Any]:
    src = ma.Source(payload=body.payload, voice=body.voice, language=body.language, payload_type=body.payload_type)

    await ctl.arun(account, lambda w: ma.call_play(
        w, cid, src, loop=body.loop, overlay=False, target_legs=body.target_legs, client_state=body.client_state,
        stop_first=body.stop,
    ), dedupe=(cid, body.command_id))
    return OK


@router.post("/calls/{cid}/actions/gather_using_audio")
async def gather_using_audio(cid: str, account: Account, ctl: Ctl, body: s.GatherAudio | None = None) -> dict[str, Any]:
    b = body or s.GatherAudio()
    req = _digits_request(
        b, _audio(b.audio_url, b.media_name), _audio(b.invalid_audio_url, b.invalid_media_name), b.stop_playback_on_dtmf
    )
    await ctl.arun(account, lambda w: ma.gather(w, cid, req, b.client_state), dedupe=(cid, b.command_id))
    return OK


@router.post("/calls/{cid}/actions/gather_using_speak")
async def gather_using_speak(cid: str, body: s.GatherSpeak, account: Account, ctl: Ctl) -> dict[str, Any]:
    prompt = ma.Source(payload=body.payload, voice=body.voice, language=body.language, payload_type=body.payload_type)
    invalid = (
        ma.Source(
            payload=body.invalid_payload, voice=body.voice, language=body.language, payload_type=body.payload_type
        )
        if body.invalid_payload
        else None
    )
    req = _digits_request(body, prompt, invalid)
    await ctl.arun(account, lambda w: ma.gather(w, cid, req, body.client_state), dedupe=(cid, body.command_id))
    return OK


@router.post("/calls/{cid}/actions/gather")
async def gather(cid: str, account: Account, ctl: Ctl, body: s.CallGather | None = None) -> dict[str, Any]:
    """Digits without a prompt: waits ``initial_timeout_millis`` (else the whole ``timeout_millis``) for a
    first digit, and never longer than ``timeout_millis`` in all."""
    b = body or s.CallGather()
    first = b.initial_timeout_millis if "initial_timeout_millis" in b.model_fields_set else b.timeout_millis
    req = ma.GatherRequest(
        minimum_digits=b.minimum_digits, maximum_digits=b.maximum_digits, terminating_digit=b.terminating_digit,
        valid_digits=b.valid_digits, timeout_millis=b.timeout_millis,
        inter_digit_timeout_millis=b.inter_digit_timeout_millis, initial_timeout_millis=min(first, b.timeout_millis),
        maximum_tries=1, gather_id=b.gather_id,
    )  # fmt: skip
    await ctl.arun(account, lambda w: ma.gather(w, cid, req, b.client_state), dedupe=(cid, b.command_id))
    return OK


@router.post("/calls/{cid}/actions/gather_stop")
async def gather_stop(cid: str, account: Account, ctl: Ctl, body: s.CallCommandState | None = None) -> dict[str, Any]:
    b = body or s.CallCommandState()
    await ctl.arun(account, lambda w: ma.stop_gather(w, cid, b.client_state), dedupe=(cid, b.command_id))
    return OK


@router.post("/calls/{cid}/actions/send_dtmf")
async def send_dtmf(cid: str, body: s.CallSendDtmf, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(
        account,
        lambda w: ma.call_send_dtmf(w, cid, body.digits, body.duration_millis, body.client_state),
        dedupe=(cid, body.command_id),
    )
    return OK


@router.post("/calls/{cid}/actions/record_start")
async def record_start(
    cid: str, body: s.CallRecordStart, request: Request, account: Account, ctl: Ctl
) -> dict[str, Any]:
    storage, base = _storage(request)

    req = ma.RecordRequest(fmt=body.format, channels=body.channels, trim=body.trim is not None,
                           custom_file_name=body.custom_file_name, max_length=body.max_length,
                           play_beep=body.play_beep, storage=storage, download_base=base)  # fmt: skip
    await ctl.arun(account, lambda w: ma.call_record_start(w, cid, req, body.client_state),
                   dedupe=(cid, body.command_id))
    return OK


async def _call_record(action: str, cid: str, recording_id: str | None, client_state: str | None,
                       command_id: str | None, account: str, ctl: Ctl) -> dict[str, Any]:  # fmt: skip
    await ctl.arun(account, lambda w: ma.call_record_control(w, action, cid, recording_id, client_state),
                   dedupe=(cid, command_id))
    return OK


@router.post("/calls/{cid}/actions/record_stop")
async def record_stop(cid: str, account: Account, ctl: Ctl, body: s.RecordStop | None = None) -> dict[str, Any]:
    b = body or s.RecordStop()
    return await _call_record("stop", cid, b.recording_id, b.client_state, b.command_id, account, ctl)


@router.post("/calls/{cid}/actions/record_pause")
async def record_pause(cid: str, account: Account, ctl: Ctl, body: s.CallRecordControl | None = None) -> dict[str, Any]:
    b = body or s.CallRecordControl()
    return await _call_record("pause", cid, b.recording_id, b.client_state, b.command_id, account, ctl)


@router.post("/calls/{cid}/actions/record_resume")
async def record_resume(
    cid: str, account: Account, ctl: Ctl, body: s.CallRecordControl | None = None
) -> dict[str, Any]:
    b = body or s.CallRecordControl()
    return await _call_record("resume", cid, b.recording_id, b.client_state, b.command_id, account, ctl)


# -- conferences -------------------------------------------------------------------------------------


@router.post("/conferences/{conference_id}/actions/play")
async def conference_play(conference_id: str, body: s.ConferencePlay, account: Account, ctl: Ctl) -> dict[str, Any]:
    await ctl.arun(
        account,
        lambda w: ma.conference_play(
            w,
            conference_id,
            ma.Source(audio_url=body.audio_url, media_name=body.media_name),
            loop=body.loop,
            call_control_ids=body.call_control_ids,
        ),
    )
    return OK


@router.post("/conferences/{conference_id}/actions/speak")
async def conference_speak(conference_id: str, body: s.ConferenceSpeak, account: Account, ctl: Ctl) -> dict[str, Any]:
    src = ma.Source(payload=body.payload, voice=body.voice, language=body.language, payload_type=body.payload_type)
    await ctl.arun(
        account,
        lambda w: ma.conference_play(w, conference_id, src, loop=1, call_control_ids=body.call_control_ids),
        dedupe=(conference_id, body.command_id),
    )
    return OK


@router.post("/conferences/{conference_id}/actions/stop")
async def conference_stop(
    conference_id: str, account: Account, ctl: Ctl, body: s.ConferenceStop | None = None
) -> dict[str, Any]:
    ids = body.call_control_ids if body else None
    await ctl.arun(account, lambda w: ma.conference_stop(w, conference_id, ids))
    return OK


@router.post("/conferences/{conference_id}/actions/send_dtmf")
async def conference_send_dtmf(
    conference_id: str, body: s.ConferenceSendDtmf, account: Account, ctl: Ctl
) -> dict[str, Any]:
    await ctl.arun(
        account,
        lambda w: ma.conference_send_dtmf(
            w,
            conference_id,
            body.call_control_ids,
            body.digits,
            body.duration_millis,
            body.client_state,
        ),
    )
    return OK


@router.post("/conferences/{conference_id}/actions/gather_using_audio")
async def conference_gather(
    conference_id: str, body: s.ConferenceGatherAudio, account: Account, ctl: Ctl
) -> dict[str, Any]:
    req = _digits_request(
        body,
        _audio(body.audio_url, body.media_name),
        _audio(body.invalid_audio_url, body.invalid_media_name),
        body.stop_playback_on_dtmf,
    )

    await ctl.arun(account, lambda w: ma.conference_gather(w, conference_id, body.call_control_id, req,
                                                           body.client_state))
    return OK


@router.post("/conferences/{conference_id}/actions/record_start")
async def conference_record_start(
    conference_id: str, body: s.ConferenceRecordStart, request: Request, account: Account, ctl: Ctl
) -> dict[str, Any]:
    storage, base = _storage(request)
    await ctl.arun(
        account,
        lambda w: ma.conference_record_start(w, conference_id, ma.RecordRequest(
            fmt=body.format, channels=body.channels, trim=body.trim is not None,
            custom_file_name=body.custom_file_name, max_length=0, play_beep=body.play_beep, storage=storage,
            download_base=base, per_participant=body.tracks == "per_participant",
        )),
        dedupe=(conference_id, body.command_id),
    )
    return OK


async def _conference_record(
    action: str, conference_id: str, recording_id: str | None, command_id: str | None, account: str, ctl: Ctl,
    client_state: str | None = None,
) -> dict[str, Any]:
    await ctl.arun(
        account,
        lambda w: ma.conference_record_control(w, action, conference_id, recording_id, client_state),
        dedupe=(conference_id, command_id),
    )
    return OK


@router.post("/conferences/{conference_id}/actions/record_pause")
async def conference_record_pause(
    conference_id: str, account: Account, ctl: Ctl, body: s.ConferenceRecordControl | None = None
) -> dict[str, Any]:
    b = body or s.ConferenceRecordControl()
    return await _conference_record("pause", conference_id, b.recording_id, b.command_id, account, ctl)


@router.post("/conferences/{conference_id}/actions/record_resume")
async def conference_record_resume(
    conference_id: str, account: Account, ctl: Ctl, body: s.ConferenceRecordControl | None = None
) -> dict[str, Any]:
    b = body or s.ConferenceRecordControl()
    return await _conference_record("resume", conference_id, b.recording_id, b.command_id, account, ctl)


@router.post("/conferences/{conference_id}/actions/record_stop")
async def conference_record_stop(
    conference_id: str, account: Account, ctl: Ctl, body: s.RecordStop | None = None
) -> dict[str, Any]:
    b = body or s.RecordStop()
    return await _conference_record("stop", conference_id, b.recording_id, b.command_id, account, ctl,
                                    b.client_state)
