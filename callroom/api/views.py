"""Records as the Telnyx JSON the SDKs expect (field names, ``record_type``, ISO times)."""

from __future__ import annotations

from typing import Any

from callroom.control.queues import QueueFigures
from callroom.model.records import Application, Call, Conference, Participant, Queue, QueueEntry
from callroom.timefmt import iso


def conference(c: Conference) -> dict[str, Any]:
    ended_by = None
    if c.ended_by_call_control_id:
        ended_by = {"call_control_id": c.ended_by_call_control_id, "call_session_id": c.ended_by_call_session_id}
    return {
        "id": c.id,
        "record_type": "conference",
        "name": c.name,
        "status": c.status.value,
        "connection_id": c.connection_id,
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
        "expires_at": iso(c.expires_at),
        "end_reason": c.end_reason,
        "ended_by": ended_by,
        "region": c.region,
    }


def participant_in_list(p: Participant, c: Conference, *, on_hold: bool) -> dict[str, Any]:
    return {
        "id": p.id,
        "record_type": "participant",
        "call_control_id": p.call_control_id,
        "call_leg_id": p.call_leg_id,
        "conference": {"id": c.id, "name": c.name},
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "end_conference_on_exit": p.end_conference_on_exit,
        "soft_end_conference_on_exit": p.soft_end_conference_on_exit,
        "muted": p.muted,
        "on_hold": on_hold,
        "status": p.status.value,
        "whisper_call_control_ids": list(p.whisper_call_control_ids),
        "supervisor_role": p.supervisor_role,
    }


def participant(p: Participant, *, on_hold: bool) -> dict[str, Any]:
    return {
        "id": p.id,
        "call_control_id": p.call_control_id,
        "call_leg_id": p.call_leg_id,
        "conference_id": p.conference_id,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "end_conference_on_exit": p.end_conference_on_exit,
        "soft_end_conference_on_exit": p.soft_end_conference_on_exit,
        "label": p.label,
        "muted": p.muted,
        "on_hold": on_hold,
        "status": p.status.value,
        "whisper_call_control_ids": list(p.whisper_call_control_ids),
        "supervisor_role": p.supervisor_role,
        "beep_enabled": p.beep_enabled,
    }


def queue(q: Queue, f: QueueFigures) -> dict[str, Any]:
    return {
        "id": q.id,
        "record_type": "queue",
        "name": q.name,
        "max_size": q.max_size,
        "current_size": f.current_size,
        "average_wait_time_secs": f.average_wait_time_secs,
        "created_at": iso(q.created_at),
        "updated_at": iso(q.updated_at),
    }


def queue_call(e: QueueEntry, position: int, now: float) -> dict[str, Any]:
    return {
        "record_type": "queue_call",
        "call_control_id": e.call_control_id,
        "call_leg_id": e.call_leg_id,
        "call_session_id": e.call_session_id,
        "connection_id": e.connection_id,
        "from": e.from_,
        "to": e.to,
        "queue_id": e.queue_id,
        "queue_position": position,
        "enqueued_at": iso(e.enqueued_at),
        "wait_time_secs": e.wait_time_secs(now),
        "is_alive": e.is_alive,
    }


def call(c: Call, *, now: float, dial_response: bool = False) -> dict[str, Any]:
    end = c.ended_at
    duration = int((end if end is not None else now) - c.created_at)
    out: dict[str, Any] = {
        "record_type": "call",
        "call_control_id": c.call_control_id,
        "call_leg_id": c.call_leg_id,
        "call_session_id": c.call_session_id,
        "is_alive": False if dial_response else c.is_alive,
        "client_state": c.client_state,
        "call_duration": max(0, duration),
        "start_time": iso(c.created_at),
        "connection_id": c.connection_id,
        "from": c.from_,
        "to": c.to,
        "direction": c.direction,
        "state": c.state.value,
    }
    if not c.is_alive:
        out["end_time"] = iso(c.ended_at)
        out["hangup_cause"] = c.hangup_cause
    return out


def active_call(c: Call, *, now: float) -> dict[str, Any]:
    """A row of ``GET /connections/{id}/active_calls``: seconds since the call began, as ``call_duration``
    is everywhere else, and ``client_state`` always a string (the SDK's model requires one)."""
    return {
        "record_type": "call",
        "call_control_id": c.call_control_id,
        "call_leg_id": c.call_leg_id,
        "call_session_id": c.call_session_id,
        "call_duration": max(0, int(now - c.created_at)),
        "client_state": c.client_state or "",
    }


def application(a: Application) -> dict[str, Any]:
    return {
        "id": a.id,
        "record_type": "call_control_application",
        "application_name": a.application_name,
        "webhook_event_url": a.webhook_event_url,
        "webhook_event_failover_url": a.webhook_event_failover_url,
        "webhook_timeout_secs": a.webhook_timeout_secs,
        "webhook_api_version": a.webhook_api_version,
        "active": a.active,
        "anchorsite_override": a.anchorsite_override,
        "dtmf_type": a.dtmf_type,
        "first_command_timeout": a.first_command_timeout,
        "first_command_timeout_secs": a.first_command_timeout_secs,
        "inbound": a.inbound,
        "outbound": a.outbound,
        "tags": list(a.tags),
        "call_cost_in_webhooks": a.call_cost_in_webhooks,
        "redact_dtmf_debug_logging": a.redact_dtmf_debug_logging,
        "created_at": iso(a.created_at),
        "updated_at": iso(a.updated_at),
    }
