"""Every limit a request meets, in one place (the README's Errors section lists them).

A request's head must arrive whole within ``HEAD_TIMEOUT_SECS`` and ``MAX_HEAD_BYTES`` (``server.py``); its
body may hold ``MAX_BODY_BYTES`` (``LARGE_BODIES`` names the one route allowed more, the media upload), or
it is answered 413 unread; a JSON body may nest ``MAX_JSON_DEPTH`` levels of objects and arrays (no body
of Telnyx's API nests more than four); every text field the node keeps or sends on has a length bound
(``schemas.py``), so nothing an application sends grows the database or every webhook without bound.
"""

from __future__ import annotations

import json
from typing import Any

from callroom.errors import ValidationFailed

# -- the request's head and body ----------------------------------------------------------------------------

HEAD_TIMEOUT_SECS = 10.0  # from a request's first byte (or the connection's opening) to the end of its head
MAX_HEAD_BYTES = 64 * 1024  # request line and headers
MAX_BODY_BYTES = 1024 * 1024  # any request body but an upload's
MAX_MEDIA_BYTES = 50 * 1024 * 1024  # one media file, uploaded or fetched from a media_url
MAX_UPLOAD_BODY_BYTES = MAX_MEDIA_BYTES + 1024 * 1024  # a multipart upload: the file and the form around it
LARGE_BODIES: dict[tuple[str, str], int] = {("POST", "/v2/media"): MAX_UPLOAD_BODY_BYTES}
MAX_JSON_DEPTH = 32  # levels of objects and arrays; the body itself is the first

# -- text fields (characters) ----------------------------------------------------------------------------------

MAX_CLIENT_STATE = 4096  # Base64 (3 kB of state), sent back in every later webhook of the call
MAX_COMMAND_ID = 255
MAX_ID = 255  # an id the client names: call_control_id, connection_id, recording_id, link_to, ...
MAX_IDS = 800  # ids in one list (call_control_ids, whisper_call_control_ids): a conference's most participants
MAX_NAME = 255  # conference, queue, application, media and voice names, labels, tags, other short settings
MAX_TAGS = 100
MAX_ADDRESS = 512  # a dial's from and to, a virtual phone's address
MAX_URL = 2048
MAX_SPEECH = 3000  # text or SSML to speak (Telnyx's documented limit)


def body_limit(method: str, path: str) -> int:
    """How many bytes the body of a request to ``path`` may have."""
    return LARGE_BODIES.get((method, path), MAX_BODY_BYTES)


def too_deep_detail() -> str:
    return f"the body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep"


def load_json(raw: bytes) -> Any:
    """``json.loads``, but a body nested more than ``MAX_JSON_DEPTH`` levels deep is a 422 (``ValidationFailed``
    pointing at the body) instead of a ``RecursionError`` in the parser or in whatever walks the value next.

    Invalid JSON raises ``ValueError`` (``json.JSONDecodeError``, ``UnicodeDecodeError``) as ``json.loads``
    does. A body with at most ``MAX_JSON_DEPTH`` brackets cannot be too deep: the usual case costs two
    ``count`` calls."""
    brackets = raw.count(b"{") + raw.count(b"[")
    try:
        value = json.loads(raw)
    except RecursionError as exc:  # the parser's own recursion limit: far deeper than ours
        raise ValidationFailed.field("/", too_deep_detail()) from exc
    if brackets > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise ValidationFailed.field("/", too_deep_detail())
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels in ``value`` (level by level, no recursion)."""
    level = [value]
    for _ in range(limit):
        inner: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                inner.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                inner.extend(v for v in item if isinstance(v, dict | list))
        if not inner:
            return False
        level = inner
    return True
