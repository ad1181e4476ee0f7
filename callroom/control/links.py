"""What a dialled leg does once it answers, and the ties between legs other than a bridge (``Call.plan``).

A plan is written when a leg is dialled (``calls.dial``) or created by a transfer (``transfer.py``), and read
back here when the far end answers or the leg ends:

* ``transfer_of``: the leg is a transfer's new leg; once it answers, the call it is for is bridged to it
  (out of its queue, conference or bridge first); while it rings that call hears the ringback.
* ``transfer_to``: on the call being transferred, the leg ringing for it (cancelled if the call ends first).
* ``ring_group``: the other legs of a dial to several destinations; the first to answer cancels the rest.
* ``audio`` (played to the leg), ``digits`` (sent to it as DTMF), ``record`` (a recording of it, as
  ``record_start`` would start): what it gets once it answers.
* ``prevent_double_bridge``: with ``bridge_on_answer``, the leg stays parked if ``link_to`` is bridged by
  the time it answers.
* ``supervise`` and ``role``: a supervisor's leg (dial's ``supervise_call_control_id``); once it answers
  it hears that call and its bridge, and is heard as its role says (``switch_supervisor_role``).

Below ``calls`` and ``hangup`` (both call in here), above bridges, queues and conferences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callroom.control import bridges, conferences
from callroom.control.guards import live, reject
from callroom.control.legs import finish, hangup_source_for_local
from callroom.control.media_actions import Source, audio_spec
from callroom.control.world import Steps, World
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import Call, MediaJob, Recording, new_uuid
from callroom.model.states import CallState

RINGBACK = "ringback"  # the kind of play the ringback is (``model.media.Play.kind``): stopped as such


@dataclass(frozen=True, slots=True)
class OnAnswer:
    """What a dialled leg (or a transfer's) gets once it answers, as the API gave it. ``record``: the
    recording's options (``format``, ``channels``, ``trim``, ``max_length``, ``custom_file_name``, and the
    node's ``storage`` and ``download_base``)."""

    audio_url: str | None = None
    media_name: str | None = None
    digits: str | None = None
    record: dict[str, Any] | None = None

    def reads(self) -> tuple[r.Read, ...]:
        return (r.MediaByName(self.media_name),) if self.media_name else ()

    def plan(self, w: World) -> dict[str, Any]:
        """The plan's entries (uploaded media read in the command's batch: ``reads``)."""
        out: dict[str, Any] = {}
        if self.audio_url or self.media_name:
            spec = audio_spec(w, Source(self.audio_url, self.media_name))
            out["audio"] = {"kind": spec.kind, "value": spec.value, "audio_url": self.audio_url,
                            "media_name": self.media_name}  # fmt: skip
        if self.digits:
            out["digits"] = self.digits
        if self.record:
            out["record"] = dict(self.record)
        return out


def ringback_job(leg_id: str) -> str:
    """The job id of the ringback a transfer's caller hears while ``leg_id`` rings (no media job row: no
    playback webhooks)."""
    return f"ringback:{leg_id}"


def answered(w: World, call: Call) -> Steps[bool]:
    """``call``, an outgoing leg, has just answered: carry out its plan. True when the leg was a transfer's
    (bridged to its call, or ended when that call is gone): the dial's own steps on answer do not apply."""
    plan = call.plan
    if not plan:
        return False
    siblings = [cid for cid in plan.get("ring_group", ()) if cid != call.call_control_id]
    if siblings:
        yield from _cancel_others(w, call, siblings)
    _on_answer_media(w, call, plan)
    if plan.get("record"):
        yield from record_from_answer(w, call, plan["record"])
    if plan.get("supervise"):
        yield from _supervise(w, call, str(plan["supervise"]), str(plan.get("role") or "barge"))
    if not plan.get("transfer_of"):
        return False
    yield from _complete_transfer(w, call, str(plan["transfer_of"]))
    return True


def _cancel_others(w: World, winner: Call, others: list[str]) -> Steps[None]:
    """The first leg of a dial to several destinations answered: the others still ringing are cancelled."""
    yield from w.load(*(r.CallById(cid) for cid in others))
    for cid in others:
        other = w.call(cid)
        if other is not None and other.state is CallState.RINGING:
            finish(w, other, cause="originator_cancel", source="caller", sip_cause="487")
    winner.plan = {k: v for k, v in (winner.plan or {}).items() if k != "ring_group"}
    w.update(winner)


def _supervise(w: World, call: Call, target_id: str, role: str) -> Steps[None]:
    """A supervisor's leg answered: it hears the call it supervises (and its bridge) from now on, unless that
    call ended meanwhile (the leg stays parked)."""
    yield from w.load(r.CallById(target_id, lock=False))
    target = w.call(target_id)
    if target is not None and target.is_alive:
        w.media.append(m.Supervise(call.call_control_id, target_id, role))


def switch_role(w: World, call_control_id: str, role: str) -> Steps[None]:
    """``switch_supervisor_role``: a supervisor's leg (parked, supervising) is heard as ``role`` says."""
    yield from w.load(r.CallById(call_control_id))
    call = live(w, call_control_id)
    plan = call.plan or {}
    if not plan.get("supervise") or call.state is not CallState.PARKED:
        raise reject("90107", "This call is not supervising a call (dial with supervise_call_control_id).")
    call.plan = {**plan, "role": role}
    w.update(call)
    yield from _supervise(w, call, str(plan["supervise"]), role)


def _on_answer_media(w: World, call: Call, plan: dict[str, Any]) -> None:
    audio = plan.get("audio")
    if audio:
        job = MediaJob(id=new_uuid(), account_id=w.account_id, kind="playback", scope="call", created_at=w.now,
                       updated_at=w.now, call_control_id=call.call_control_id,
                       data={"media_url": audio.get("audio_url"), "media_name": audio.get("media_name"),
                             "overlay": False})  # fmt: skip
        w.insert(job)
        w.media.append(m.Play(job.id, m.AudioSpec(audio["kind"], audio["value"]), (call.call_control_id,)))
    digits = plan.get("digits")
    if digits:
        w.media.append(m.SendDtmf((call.call_control_id,), str(digits)))


def record_from_answer(w: World, call: Call, rec: dict[str, Any]) -> Steps[None]:
    """``record: record-from-answer``: a recording of the leg from now, as ``record_start`` would make it."""
    yield from w.load(r.OpenJobs("record", call_control_id=call.call_control_id))
    if w.result(r.OpenJobs("record", call_control_id=call.call_control_id)):
        return
    rec_id = new_uuid()
    custom = rec.get("custom_file_name")
    file_name = f"{custom}-{int(w.now)}" if custom else call.call_leg_id
    fmt, channels = str(rec["format"]), str(rec["channels"])
    w.insert(Recording(
        id=rec_id, account_id=w.account_id, source="call", channels=channels, format=fmt,
        file_name=f"{file_name}.{fmt}", status="recording", recording_started_at=w.now, created_at=w.now,
        updated_at=w.now, call_control_id=call.call_control_id, call_leg_id=call.call_leg_id,
        call_session_id=call.call_session_id, connection_id=call.connection_id,
    ))  # fmt: skip
    w.insert(MediaJob(id=rec_id, account_id=w.account_id, kind="record", scope="call", created_at=w.now,
                      updated_at=w.now, call_control_id=call.call_control_id,
                      data={"download_base": rec["download_base"], "client_state": call.client_state}))
    w.media.append(m.StartRecording(
        rec_id, f"{rec['storage']}/{w.account_id}/{rec_id}", fmt, channels, call_control_id=call.call_control_id,
        trim_silence=bool(rec.get("trim")), max_length_secs=int(rec.get("max_length") or 0),
        silence_timeout_secs=int(rec.get("timeout_secs") or 0),
    ))  # fmt: skip


def _complete_transfer(w: World, leg: Call, original_id: str) -> Steps[None]:
    """A transfer's new leg answered: its call stops hearing the ringback and is bridged to it (taken out
    of its queue, conference or bridge first); a call that ended meanwhile leaves the new leg nothing to do."""
    yield from w.load(r.CallById(original_id), r.BridgePartner(original_id))
    original = w.call(original_id)
    w.media.append(m.StopPlay((original_id,), kinds=(RINGBACK,)))
    leg.plan = {k: v for k, v in (leg.plan or {}).items() if k != "transfer_of"}
    w.update(leg)
    if original is None or not original.is_alive or original.state is CallState.RINGING:
        finish(w, leg, cause="normal_clearing", source=hangup_source_for_local(leg))
        return
    _untie(w, original, leg.call_control_id)
    if original.state is CallState.CONFERENCED:
        yield from conferences.take_out(w, original)
    yield from bridges.pair(w, original, leg)


def _untie(w: World, original: Call, leg_id: str) -> None:
    if original.plan and original.plan.get("transfer_to") == leg_id:
        original.plan = {k: v for k, v in original.plan.items() if k != "transfer_to"} or None
        w.update(original)


def ending(w: World, call: Call) -> Steps[None]:
    """``call`` is about to end (``hangup.end_leg``): a transfer's leg that ends ringing leaves its call as it
    was, but for the ringback; a call being transferred takes its ringing leg with it."""
    plan = call.plan
    if not plan or call.state is CallState.ENDED:
        return
    original_id = plan.get("transfer_of")
    if original_id and call.state is CallState.RINGING:
        yield from w.load(r.CallById(str(original_id)))
        original = w.call(str(original_id))
        w.media.append(m.StopPlay((str(original_id),), kinds=(RINGBACK,)))
        if original is not None:
            _untie(w, original, call.call_control_id)
    leg_id = plan.get("transfer_to")
    if leg_id:
        yield from w.load(r.CallById(str(leg_id)))
        leg = w.call(str(leg_id))
        if leg is not None and leg.state is CallState.RINGING:
            finish(w, leg, cause="originator_cancel", source="caller", sip_cause="487")
        _untie(w, call, str(leg_id))
