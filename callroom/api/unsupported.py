"""Telnyx Call Control commands callroom does not serve, answered as such rather than as an unknown path.

An application written for Telnyx that sends one of these gets 501 with code 90117 ("Command not
supported", naming the command) and ``x-should-retry: false``, which tells Telnyx's SDKs not to retry it as
they retry other 5xx answers; a 404 (10005) would read as a wrong call_control_id. The README lists them.
"""

from __future__ import annotations

import re

from callroom.errors import CommandNotSupported

# POST /v2/calls/{call_control_id}/actions/<name>: Telnyx's call commands that callroom does not carry out.
CALL_ACTIONS = frozenset({
    "ai_assistant_add_messages", "ai_assistant_join", "ai_assistant_start", "ai_assistant_stop",
    "conversation_relay_start", "conversation_relay_stop", "gather_using_ai", "pay",
    "siprec_start", "siprec_stop", "suppression_start", "suppression_stop",
})  # fmt: skip

_CALL_ACTION = re.compile(r"^/v2/calls/[^/]+/actions/([a-z_]+)$")


def refusal(method: str, path: str) -> CommandNotSupported | None:
    """The answer for a request no route took, when it is a Telnyx command callroom does not serve."""
    found = _CALL_ACTION.match(path) if method == "POST" else None
    if found is not None and found.group(1) in CALL_ACTIONS:
        return CommandNotSupported(found.group(1))
    return None
