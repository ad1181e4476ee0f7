"""Which of the official SDK's webhook models each event type is, and the check that a webhook the node sent
unwraps (``client.webhooks.unwrap``: signature verified, then parsed) as that model and no other.

The SDK parses a webhook into a union of every event it knows; a payload field whose value the event's own
model does not accept (an enum value it does not list) makes pydantic settle on another member of the union, so
an application that dispatches on the parsed type sees the wrong event. The map is read from the SDK's own
types, so a newer SDK is checked against its own models.
"""

from __future__ import annotations

import inspect
import typing
from functools import cache
from typing import Any

import telnyx
from pydantic import BaseModel
from telnyx.types.unwrap_webhook_event import UnwrapWebhookEvent

from tests.support.receiver import Received


def _literals(annotation: Any) -> set[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return {str(a) for a in typing.get_args(annotation)}
    out: set[str] = set()
    for arg in typing.get_args(annotation):
        out |= _literals(arg)
    return out


def _models(annotation: Any) -> list[type[BaseModel]]:
    if inspect.isclass(annotation):
        return [annotation] if issubclass(annotation, BaseModel) else []
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


@cache
def sdk_models() -> dict[str, type[BaseModel]]:
    """Event type -> the SDK's model for it, for every ``call.*``, ``conference.*`` and ``streaming.*`` event
    it knows."""
    out: dict[str, type[BaseModel]] = {}
    for variant in typing.get_args(UnwrapWebhookEvent):
        fields = variant.model_fields
        # Most events are modelled as the envelope ({"data": {...}}); one (conference.floor.changed) as the
        # event itself.
        inner = [m for m in _models(fields["data"].annotation)] if "data" in fields else [variant]
        for model in inner:
            if "event_type" in model.model_fields:
                for name in _literals(model.model_fields["event_type"].annotation):
                    if name.startswith(("call.", "conference.", "streaming.")):
                        out.setdefault(name, variant)
    return out


def unwrap_typed(client: telnyx.Telnyx, received: Received, public_key: str) -> BaseModel:
    """Verify and parse one webhook as the SDK does; fail unless it parsed as its own event's model."""
    event: BaseModel = client.webhooks.unwrap(received.body, headers=received.headers, key=public_key)
    expected = sdk_models().get(received.event_type)
    assert expected is not None, f"the SDK has no model for {received.event_type}"
    assert type(event) is expected, (
        f"{received.event_type} unwrapped as {type(event).__name__}, not {expected.__name__}: {received.body}"
    )
    return event
