"""The webhooks commands emit, shaped as Telnyx shapes them: ``call.*`` about a leg (to the leg's application
or its ``webhook_url``), ``conference.participant.*`` about one leg of a conference, and conference-wide
events (to the conference's application, ``occurred_at`` in the payload). Each is ordered with the other
events of its call or conference (``order_key``)."""

from __future__ import annotations

from typing import Any

from callroom.control.world import World
from callroom.model.records import Call, Conference
from callroom.timefmt import iso


def call_base_payload(call: Call) -> dict[str, Any]:
    return {
        "call_control_id": call.call_control_id,
        "call_leg_id": call.call_leg_id,
        "call_session_id": call.call_session_id,
        "client_state": call.client_state,
        "connection_id": call.connection_id,
        "from": call.from_,
        "to": call.to,
    }


def emit_call(w: World, event_type: str, call: Call, **extra: Any) -> None:
    """A ``call.*`` webhook about ``call``, to the call's application (or its ``webhook_url``)."""
    payload = call_base_payload(call)
    payload.update(extra)
    w.emit(event_type, payload, connection_id=call.connection_id, webhook_url=call.webhook_url,
           method=call.webhook_url_method, order_key=f"call:{call.call_control_id}", occurred_at_in_payload=False)


def emit_participant(w: World, event_type: str, conf: Conference, call: Call) -> None:
    """``conference.participant.joined`` / ``.left``: about one leg, to that leg's application."""
    payload = {
        "call_control_id": call.call_control_id,
        "call_leg_id": call.call_leg_id,
        "call_session_id": call.call_session_id,
        "client_state": call.client_state,
        "connection_id": call.connection_id,
        "conference_id": conf.id,
    }
    w.emit(event_type, payload, connection_id=call.connection_id, webhook_url=call.webhook_url,
           method=call.webhook_url_method, order_key=f"conference:{conf.id}", occurred_at_in_payload=False)


def emit_conference(w: World, event_type: str, conf: Conference, **extra: Any) -> None:
    """A conference-wide webhook, to the conference's application; ``occurred_at`` in the payload."""
    payload: dict[str, Any] = {
        "call_control_id": conf.creator_call_control_id,
        "call_session_id": conf.creator_call_session_id,
        "client_state": conf.client_state,
        "conference_id": conf.id,
        "connection_id": conf.connection_id,
    }
    payload.update(extra)
    payload["occurred_at"] = iso(w.now)
    w.emit(event_type, payload, connection_id=conf.connection_id, webhook_url=None, method="POST",
           order_key=f"conference:{conf.id}", occurred_at_in_payload=True)
