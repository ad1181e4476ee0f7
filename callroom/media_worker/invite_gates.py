"""Gates an incoming INVITE passes before any leg exists: digest credentials, and the node's admission limits
(``callroom/admission.py``). Each answers with the ``Rejection`` the INVITE gets, or None to let it in."""

from __future__ import annotations

import time
from collections.abc import Callable

from callroom.admission import Admission, Load
from callroom.aio.sip_transport import Rejection
from callroom.sip import call as sip_events
from callroom.sip.digest import DigestAuth
from callroom.sip.message import SipRequest


class AdmissionGate:
    """Refuse a new INVITE with 503 and Retry-After while the node is past one of its limits, so that a proxy
    in front tries another node at once; admitted calls take their share of the per-second budget."""

    def __init__(self, admission: Admission, load: Callable[[], Load]) -> None:
        self.admission = admission
        self.load = load

    def __call__(self, call: sip_events.IncomingCall, invite: SipRequest) -> Rejection | None:
        refused = self.admission.decide(time.monotonic(), self.load())
        if refused is None:
            return None
        return Rejection(503, "Service Unavailable", (("Retry-After", str(refused.retry_after)),))


class DigestGate:
    """Admit an INVITE only with valid digest credentials: for its Request-URI, from the address the nonce
    was issued to, with a nonce not used before at that count. Otherwise challenge it with 401 (a fresh
    nonce, ``stale=true`` when only the nonce was wrong), or 400 for credentials made for another URI."""

    def __init__(self, auth: DigestAuth, exempt: Callable[[str], bool] = lambda _host: False) -> None:
        self.auth = auth
        self.exempt = exempt  # sources that prove themselves otherwise (a trunk's address)

    def __call__(self, call: sip_events.IncomingCall, invite: SipRequest) -> Rejection | None:
        if self.exempt(call.source_addr[0]):
            return None
        now = time.time()  # wall clock: nonces carry their issue time and may be checked by another node
        source = call.source_addr[0]
        verdict = self.auth.verify("INVITE", invite.headers.get("Authorization"), now, request_uri=invite.uri,
                                   source=source)
        if verdict.ok:
            return None
        if verdict.wrong_uri:
            return Rejection(400, "Bad Request")
        challenge = self.auth.challenge(now, source, stale=verdict.stale)
        return Rejection(401, "Unauthorized", (("WWW-Authenticate", challenge),))

