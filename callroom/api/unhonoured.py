"""Options of dial, answer and transfer that Telnyx accepts and callroom does not carry out: refused.

An option given with a value that asks for something (not absent, null, false, empty, or its do-nothing
value) is answered 422 (10015) with the field as the pointer, before anything changes: an application
that relies on it learns at once, rather than from a call that behaves otherwise. The README's table
lists, for each command, what is honoured and what is refused; this module is that table's second half.
Options that other parts of the node own (``stream_url``, ``answering_machine_detection``) are not here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from callroom.errors import CommandRejected

_NOTHING: tuple[Any, ...] = (None, False, "", [], {})

# option -> values that ask for nothing (besides absent, null, false and empty)
# (custom_headers and sip_headers: on the INVITE of dial and transfer, on answer's 200)
_COMMON = {
    "billing_group_id": (), "preferred_codecs": (), "sound_modifications": (), "webhook_retries_policies": (),
    "webhook_urls": (), "webhook_urls_method": ("POST",),
    "assistant": (), "conversation_relay_config": (),
    "deepfake_detection": (),
}  # fmt: skip
_OUTBOUND = {
    "diversion": (), "media_encryption": ("disabled",),
    "route_to_mobile": (), "sip_region": ("US",), "sip_transport_protocol": ("UDP",),
}  # fmt: skip

REFUSED: dict[str, dict[str, tuple[Any, ...]]] = {
    "dial": {**_COMMON, **_OUTBOUND, "bridge_intent": (), "dialogflow_config": (),
             "enable_dialogflow": (), "retry_on_timeout": (0,),
             "send_silence_when_idle": ()},
    "answer": {**_COMMON, "send_silence_when_idle": ()},
    "transfer": {**_COMMON, **_OUTBOUND, "mute_dtmf": ("none",), "transcription": (), "transcription_config": ()},
}  # fmt: skip


def refuse_unhonoured(command: str, body: BaseModel) -> None:
    """422 naming the first option of ``body`` that asks for what callroom does not do."""
    given = body.model_extra or {}
    for name, harmless in REFUSED[command].items():
        if name in given and given[name] not in _NOTHING and given[name] not in harmless:
            raise CommandRejected(
                "10015", "Invalid value",
                f"{name} is not supported by callroom's {command}; leave it out (see the README's table of "
                "dial, answer and transfer options).", f"/{name}",
            )
