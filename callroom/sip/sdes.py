"""SDES (RFC 4568): SRTP master keys carried in SDP ``a=crypto`` lines, and the offer/answer rules of a trunk's
``srtp`` setting. Sans-I/O: keys come from the caller (a CSPRNG: ``new_key``), nothing here sends anything.

An ``a=crypto`` line is ``TAG SUITE inline:KEY||SALT[|LIFETIME][|MKI:LEN] [SESSION-PARAMS]``; we use the two
suites every SRTP PBX speaks, ``AES_CM_128_HMAC_SHA1_80`` and ``_32`` (a 16-byte key and a 14-byte salt,
base64 together). Lines we cannot honour (another suite, an MKI, more than one key, a session parameter) are
read but not chosen, as RFC 4568 §6.1 asks.

The modes (``SrtpMode``), as a PBX applies them to one trunk:

- ``off``: plain RTP. An ``RTP/SAVP`` offer is refused (488); our offers are ``RTP/AVP``.
- ``optional``: SRTP when the other side offers it or accepts it. We offer ``RTP/AVP`` with ``a=crypto``
  lines (best-effort SRTP: an answer with a crypto line makes the call SRTP, one without keeps it plain); we
  answer ``RTP/SAVP`` offers with SRTP and plain offers plainly.
- ``required``: SRTP or no call. We offer ``RTP/SAVP``; a plain offer, an INVITE not over TLS, or an answer
  without a usable crypto line is refused (488, or the call hung up with 488 as its cause).

Keys travel in SDP, so only over TLS: a trunk's ``srtp`` needs ``transport = "tls"`` and an ``RTP/SAVP``
offer that came over anything else is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple

from callroom.errors import SdpParseError, SrtpNotAcceptable
from callroom.sip.sdp import MediaDescription, SessionDescription

# suite -> authentication tag length in bytes (both AES-CM with a 128-bit key)
SUITES: Final = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4}
KEY_AND_SALT: Final = 30  # 16-byte master key and 14-byte master salt
SAVP: Final = "RTP/SAVP"
AVP: Final = "RTP/AVP"
_LINE = re.compile(r"^(\d{1,9}) ([A-Za-z0-9_]+) (\S+)((?: \S+)*)$")


class SrtpMode(StrEnum):
    OFF = "off"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """One ``a=crypto`` value (after ``crypto:``): a tag, a suite, one inline key, and what else it says."""

    tag: int
    suite: str
    key: bytes  # master key and salt; for our suites ``KEY_AND_SALT`` bytes
    lifetime: str | None = None
    mki: str | None = None
    more_keys: int = 0  # further inline keys on the line (we use none of them)
    session_params: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str | bytes) -> CryptoAttribute:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        m = _LINE.match(text.strip())
        if m is None:
            raise SdpParseError(f"bad crypto attribute {text[:60]!r}")
        tag, suite, key_params, params = m.groups()
        keys = key_params.split(";")
        first = keys[0]
        if not first.startswith("inline:"):
            raise SdpParseError(f"crypto attribute {tag}: only inline keys exist ({first[:20]!r})")
        key_b64, *rest = first[len("inline:"):].split("|")
        try:
            key = base64.b64decode(key_b64, validate=True)
        except (binascii.Error, ValueError):
            raise SdpParseError(f"crypto attribute {tag}: the key is not base64") from None
        lifetime = mki = None
        for part in rest:
            if ":" in part:
                if mki is not None:
                    raise SdpParseError(f"crypto attribute {tag}: two MKIs")
                mki = part
            elif lifetime is None:
                lifetime = part
            else:
                raise SdpParseError(f"crypto attribute {tag}: two lifetimes")
        return cls(int(tag), suite, key, lifetime, mki, len(keys) - 1, tuple(params.split()))

    def __str__(self) -> str:
        inline = "inline:" + base64.b64encode(self.key).decode()
        inline += "".join(f"|{p}" for p in (self.lifetime, self.mki) if p is not None)
        return " ".join([str(self.tag), self.suite, inline, *self.session_params])

    def __bytes__(self) -> bytes:
        return str(self).encode()

    @property
    def usable(self) -> bool:
        """Whether we can speak it: a suite of ours, one key of the right size, no MKI, no session
        parameter (an unknown one must make the line unusable, RFC 4568 §6.3), a lifetime of 2^31 or more."""
        return (self.suite in SUITES and len(self.key) == KEY_AND_SALT and self.mki is None and not self.more_keys
                and not self.session_params and _long_enough(self.lifetime))  # fmt: skip


def _long_enough(lifetime: str | None) -> bool:
    """libsrtp rekeys at no lifetime: one shorter than a call could reach (2^31 packets) is not honoured."""
    if lifetime is None:
        return True
    m = re.fullmatch(r"(?:2\^(\d+)|(\d+))", lifetime)
    if m is None:
        return False
    return int(m.group(1)) >= 31 if m.group(1) else int(m.group(2)) >= 2**31


def new_key() -> bytes:
    """A fresh master key and salt from the operating system's CSPRNG."""
    return secrets.token_bytes(KEY_AND_SALT)


class SrtpKeys(NamedTuple):
    """What a call agreed: the suite, the key we send with, the key the far end sends with."""

    suite: str
    send_key: bytes
    receive_key: bytes


def cryptos_of(media: MediaDescription) -> list[CryptoAttribute]:
    """The media section's ``a=crypto`` lines in order (a malformed one raises ``SdpParseError``)."""
    return [CryptoAttribute.parse(v) for n, v in media.attributes if n == "crypto" and v is not None]


def secure_offer(offer: SessionDescription, mode: SrtpMode) -> list[CryptoAttribute]:
    """Make ``offer`` (one of ours) say ``mode``: crypto lines (one per suite, each with a new key) on its
    audio, and ``RTP/SAVP`` when SRTP is required. Returns the lines offered (none when ``off``)."""
    if mode is SrtpMode.OFF:
        return []
    ours = [CryptoAttribute(tag, suite, new_key()) for tag, suite in enumerate(SUITES, start=1)]
    for media in offer.media:
        if media.media == "audio" and media.port != 0:
            media.proto = SAVP if mode is SrtpMode.REQUIRED else AVP
            media.attributes[-1:-1] = [("crypto", str(c)) for c in ours]  # before the direction attribute
    return ours


def check_transport(mode: SrtpMode, over_tls: bool) -> None:
    """An INVITE (with an offer or without) on a trunk that requires SRTP must come over TLS."""
    if mode is SrtpMode.REQUIRED and not over_tls:
        raise SrtpNotAcceptable("SRTP is required and the INVITE did not come over TLS")


def offer_wants(offer: SessionDescription, mode: SrtpMode, over_tls: bool) -> CryptoAttribute | None:
    """How to answer ``offer`` under ``mode``: the crypto line to answer with SRTP, or None for plain RTP.
    Raises ``SrtpNotAcceptable`` (answer 488) when the two cannot agree."""
    media = offer.first_audio()
    if media is None:
        return None  # no audio: the codec negotiation refuses it
    secure = media.proto.upper() == SAVP
    if secure and (mode is SrtpMode.OFF or not over_tls):
        why = "SRTP is not enabled here" if mode is SrtpMode.OFF else "SRTP keys offered outside TLS"
        raise SrtpNotAcceptable(f"an RTP/SAVP offer: {why}")
    check_transport(mode, over_tls)
    if mode is SrtpMode.OFF or not over_tls:
        return None  # plain RTP, whatever crypto lines a best-effort offer carries
    try:
        usable = next((c for c in cryptos_of(media) if c.usable), None)
    except SdpParseError as exc:
        raise SrtpNotAcceptable(f"the offer's crypto lines: {exc}") from exc
    if usable is None and (secure or mode is SrtpMode.REQUIRED):
        raise SrtpNotAcceptable(f"no crypto suite in common ({', '.join(SUITES)})" if secure
                                else "SRTP is required and the offer is plain RTP")  # fmt: skip
    return usable


def answer_offer(offer: SessionDescription, answer: SessionDescription, mode: SrtpMode, over_tls: bool,
                 current: SrtpKeys | None = None) -> SrtpKeys | None:  # fmt: skip
    """Make our ``answer`` (from ``negotiate_answer``) to ``offer`` say what ``mode`` agrees to: the keys of
    the call, or None for plain RTP; ``SrtpNotAcceptable`` (488) when nothing can be agreed. A re-INVITE
    that keeps the far end's key (``current``: the call's keys) keeps ours too; a new key of theirs gets a
    new one of ours."""
    theirs = offer_wants(offer, mode, over_tls)
    mark_savp(answer, offer)
    if theirs is None:
        return None
    same = current is not None and (current.suite, current.receive_key) == (theirs.suite, theirs.key)
    return secure_answer(answer, theirs, current.send_key if same and current is not None else None)


def secure_answer(answer: SessionDescription, theirs: CryptoAttribute, send_key: bytes | None = None) -> SrtpKeys:
    """Make our ``answer`` SRTP: our crypto line on its audio, of the offer's tag and suite and a new key (or
    ``send_key``)."""
    media = answer.first_audio()
    if media is None:
        raise SrtpNotAcceptable("no audio stream to secure")
    ours = CryptoAttribute(theirs.tag, theirs.suite, send_key or new_key())
    media.attributes[-1:-1] = [("crypto", str(ours))]
    return SrtpKeys(theirs.suite, ours.key, theirs.key)


def mark_savp(answer: SessionDescription, offer: SessionDescription) -> None:
    """The answer's audio speaks the offer's profile (``RTP/SAVP`` answers ``RTP/SAVP``, RFC 4568 §7.1.2)."""
    theirs, ours = offer.first_audio(), answer.first_audio()
    if theirs is not None and ours is not None and theirs.proto.upper() == SAVP:
        ours.proto = SAVP


def answer_agrees(answer: SessionDescription, offered: list[CryptoAttribute], mode: SrtpMode) -> SrtpKeys | None:
    """Read the answer to our offer of ``offered``: the keys of the call, or None for plain RTP. Raises
    ``SrtpNotAcceptable`` (hang up with 488) when the answer is plain and SRTP was required, or names a tag
    or suite we did not offer."""
    media = answer.first_audio()
    if media is None or not offered:
        if mode is SrtpMode.REQUIRED:
            raise SrtpNotAcceptable("SRTP is required and none was offered")
        return None
    try:
        chosen = cryptos_of(media)
    except SdpParseError as exc:
        raise SrtpNotAcceptable(f"the answer's crypto line: {exc}") from exc
    if not chosen:
        if mode is SrtpMode.REQUIRED or media.proto.upper() == SAVP:
            raise SrtpNotAcceptable("SRTP is required and the answer is plain RTP")
        return None
    answered = chosen[0]
    mine = next((c for c in offered if c.tag == answered.tag), None)
    if mine is None or mine.suite != answered.suite or not answered.usable:
        raise SrtpNotAcceptable(f"the answer's crypto line {answered.tag} {answered.suite} is not one we offered")
    return SrtpKeys(mine.suite, mine.key, answered.key)
