"""Records for the store tests: every field set to something other than its default, so a column that is
not written or not read back shows up as a difference."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, TypeVar

from callroom.model.records import (
    Application,
    Call,
    Conference,
    OutboundEvent,
    Participant,
    Queue,
    QueueEntry,
    Timer,
)
from callroom.model.states import CallState, ConferenceStatus, ParticipantStatus

T = TypeVar("T")

# A time with a fractional part: Float columns must give back exactly what was stored.
NOW = 1_764_000_000.123456


def uid() -> str:
    return uuid.uuid4().hex


def _with(rec: T, overrides: dict[str, Any]) -> T:
    return dataclasses.replace(rec, **overrides)  # type: ignore[type-var]


def application(account_id: str, **overrides: Any) -> Application:
    return _with(
        Application(
            id=uid(),
            account_id=account_id,
            application_name="Front desk ☎",
            webhook_event_url="https://hooks.example.test/events",
            created_at=NOW,
            updated_at=NOW + 1.5,
            webhook_event_failover_url="https://failover.example.test/events",
            webhook_timeout_secs=7,
            webhook_api_version="1",
            active=False,
            anchorsite_override="Amsterdam, Netherlands",
            dtmf_type="Inband",
            first_command_timeout=True,
            first_command_timeout_secs=12,
            inbound={"channel_limit": 10, "sip_subdomain": None, "codecs": ["PCMU", "G722"], "nested": {"ü": 1.25}},
            outbound={"outbound_voice_profile_id": "1293384261075731499", "channel_limit": None},
            tags=["support", "tier-1", "ünïcode"],
            call_cost_in_webhooks=True,
            redact_dtmf_debug_logging=True,
        ),
        overrides,
    )


def call(account_id: str, **overrides: Any) -> Call:
    return _with(
        Call(
            call_control_id="v3:" + uid(),
            call_leg_id=uid(),
            call_session_id=uid(),
            account_id=account_id,
            connection_id="1293384261075731499",
            direction="outgoing",
            from_="+15550001111",
            to="sip:agent@127.0.0.1:5070",
            state=CallState.RINGING,
            created_at=NOW,
            node_id="node-a",
            endpoint="virtual:answer",
            client_state="aGVsbG8=",
            answered_at=NOW + 2.25,
            ended_at=None,
            hangup_cause=None,
            hangup_source=None,
            sip_hangup_cause=None,
            bridged_with=None,
            conference_id=None,
            queue_id=None,
            park_after_unbridge="self",
            hold_after_unbridge=True,
            webhook_url="https://hooks.example.test/call",
            webhook_url_method="GET",
            timeout_secs=45,
            time_limit_secs=600,
            conference_config={"conference_name": "standup", "beep_enabled": "always", "hold": True},
            link_to=None,
            bridge_on_answer=True,
        ),
        overrides,
    )


def conference(account_id: str, **overrides: Any) -> Conference:
    return _with(
        Conference(
            id=uid(),
            account_id=account_id,
            name="standup",
            status=ConferenceStatus.INIT,
            connection_id="1293384261075731499",
            creator_call_control_id="v3:" + uid(),
            creator_call_session_id=uid(),
            created_at=NOW,
            updated_at=NOW + 0.5,
            expires_at=NOW + 3600.75,
            region="EU",
            beep_enabled="always",
            comfort_noise=False,
            max_participants=9,
            hold_audio_url="https://media.example.test/hold.wav",
            hold_media_name="hold-music",
            client_state="c3RhdGU=",
            end_reason=None,
            ended_by_call_control_id=None,
            ended_by_call_session_id=None,
            ended_at=None,
        ),
        overrides,
    )


def participant(account_id: str, conference_id: str, **overrides: Any) -> Participant:
    return _with(
        Participant(
            id=uid(),
            conference_id=conference_id,
            account_id=account_id,
            call_control_id="v3:" + uid(),
            call_leg_id=uid(),
            call_session_id=uid(),
            connection_id="1293384261075731499",
            status=ParticipantStatus.JOINING,
            created_at=NOW,
            updated_at=NOW + 0.25,
            label="coach",
            muted=True,
            on_hold=True,
            supervisor_role="whisper",
            whisper_call_control_ids=["v3:" + uid(), "v3:" + uid()],
            end_conference_on_exit=True,
            soft_end_conference_on_exit=True,
            start_conference_on_enter=True,
            beep_enabled="on_exit",
            hold_audio_url="https://media.example.test/p.wav",
            hold_media_name="p-hold",
            left_at=None,
        ),
        overrides,
    )


def queue(account_id: str, **overrides: Any) -> Queue:
    return _with(
        Queue(id=uid(), account_id=account_id, name="support", max_size=17, created_at=NOW, updated_at=NOW + 3.0),
        overrides,
    )


def queue_entry(q: Queue, **overrides: Any) -> QueueEntry:
    return _with(
        QueueEntry(
            queue_id=q.id,
            account_id=q.account_id,
            call_control_id="v3:" + uid(),
            call_leg_id=uid(),
            call_session_id=uid(),
            connection_id="1293384261075731499",
            from_="+15550002222",
            to="+15550003333",
            enqueued_at=NOW,
            keep_after_hangup=True,
            max_wait_time_secs=90,
            is_alive=True,
        ),
        overrides,
    )


def timer(account_id: str, **overrides: Any) -> Timer:
    return _with(Timer(kind="dial_timeout", ref="v3:" + uid(), due_at=NOW, account_id=account_id), overrides)


def event(account_id: str, **overrides: Any) -> OutboundEvent:
    return _with(
        OutboundEvent(
            id=str(uuid.uuid4()),
            account_id=account_id,
            event_type="call.initiated",
            occurred_at=NOW,
            payload={"call_control_id": "v3:x", "state": "parked", "custom_headers": [], "n": 1.5, "ü": None},
            url="https://hooks.example.test/events",
            failover_url="https://failover.example.test/events",
            method="POST",
            timeout_secs=2.5,
            order_key="call:v3:x",
            occurred_at_in_payload=True,
        ),
        overrides,
    )
