"""Public recording links: a recording's download URL that needs no API key, good for ten minutes, as
Telnyx's ``public_recording_urls`` are pre-signed links that expire after ten minutes.

The link carries its expiry (Unix seconds) and an HMAC-SHA256 over the recording's id, its format and that
expiry, with a secret the nodes of a database share (its ``settings``, ``recording_link_secret``): any node
accepts a link any node made, a changed id, format or expiry no longer matches, and nobody without the
secret can make one. Pure: the time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

LINK_LIFETIME_SECS = 600
SECRET_SETTING = "recording_link_secret"


def signature(secret: bytes, recording_id: str, fmt: str, expires: int) -> str:
    mac = hmac.new(secret, f"{recording_id}\n{fmt}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def public_url(base: str, secret: bytes, recording_id: str, fmt: str, now: float) -> str:
    """The link to ``recording_id``'s ``fmt`` file under ``base`` (the node's address), good until
    ``now`` + ten minutes."""
    expires = int(now) + LINK_LIFETIME_SECS
    return (f"{base}/v2/recordings/{recording_id}/public.{fmt}"
            f"?expires={expires}&signature={signature(secret, recording_id, fmt, expires)}")


def refusal(secret: bytes, recording_id: str, fmt: str, expires: str, sig: str, now: float) -> str | None:
    """Why the link's query does not open the file (None: it does)."""
    if not expires.isdigit() or len(expires) > 12:
        return "The link has no valid expiry."
    if not hmac.compare_digest(signature(secret, recording_id, fmt, int(expires)), sig):
        return "The link's signature does not match."
    if int(expires) < now:
        return "The link has expired; the recording's API (with an API key) gives a new one."
    return None
