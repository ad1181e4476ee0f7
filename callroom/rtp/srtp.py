"""SRTP and SRTCP (RFC 3711) for one leg, with keys agreed by SDES (``sip/sdes.py``): libsrtp does the
cryptography (through ``pylibsrtp``); this holds a leg's two sessions, one per direction, and turns a packet
that fails authentication or replay checks into ``None`` instead of an exception on the hot path."""

from __future__ import annotations

from typing import Final

from pylibsrtp import Error, Policy, Session

__all__ = ["PROFILES", "SrtpContext"]

PROFILES: Final = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


class SrtpContext:
    """Protect what we send with ``send_key``, check and decrypt what we receive with ``receive_key``."""

    __slots__ = ("_rx", "_tx", "suite")

    def __init__(self, suite: str, send_key: bytes, receive_key: bytes) -> None:
        profile = PROFILES[suite]
        self.suite = suite
        self._tx = Session(Policy(key=send_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
        self._rx = Session(Policy(key=receive_key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))

    def protect(self, packet: bytes) -> bytes:
        return self._tx.protect(packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        return self._tx.protect_rtcp(packet)

    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP packet inside, or None: not authentic, replayed, or not SRTP at all."""
        try:
            return self._rx.unprotect(packet)
        except Error:
            return None

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            return self._rx.unprotect_rtcp(packet)
        except Error:
            return None
