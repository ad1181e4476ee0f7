"""SDP (RFC 4566) session descriptions and the audio offer/answer rules of RFC 3264.

:class:`SessionDescription` parses strictly (raising :class:`SdpParseError` with a specific message) and
formats back with ``bytes()``. Lines the model has no field for (``i=``, ``b=``, ``k=``, ...) are kept so
that a description survives a round trip.

Offer/answer covers what callroom's media plane does: one audio stream, PCMU/0 or PCMA/8, RFC 4733
telephone-event, ptime, the four direction attributes, ``c=`` at session or media level, and ``port 0``
for streams we reject.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from callroom.errors import ProtocolError, SdpParseError, SdpTooLarge


class NoCommonCodec(ProtocolError):
    """An offer or answer shares no usable audio codec with us (answer 488 Not Acceptable Here)."""


class Direction(StrEnum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    def answer(self) -> Direction:
        """The direction to answer an offer of ``self`` with (RFC 3264 §6.1)."""
        return _ANSWER_DIRECTION[self]


_ANSWER_DIRECTION = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}
# What one description may make us read: a real audio offer has 10-30 lines and one or two m= lines (audio,
# perhaps video); more is refused with 488.
MAX_LINES = 256
MAX_MEDIA = 8
STATIC_PT = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 3: ("GSM", 8000), 9: ("G722", 8000), 18: ("G729", 8000)}
TELEPHONE_EVENT = "telephone-event"


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    pt: int
    clock: int = 8000
    channels: int | None = None

    def rtpmap(self) -> str:
        return f"{self.pt} {self.name}/{self.clock}" + (f"/{self.channels}" if self.channels else "")


PCMU = Codec("PCMU", 0)
PCMA = Codec("PCMA", 8)
KNOWN_CODECS = {"PCMU": PCMU, "PCMA": PCMA}


@dataclass(frozen=True, slots=True)
class Connection:
    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    @classmethod
    def parse(cls, text: str) -> Connection:
        parts = text.split()
        if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
            raise SdpParseError(f"bad c= line {text!r}")
        addr = parts[2].split("/")[0]
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            if not re.match(r"^[A-Za-z0-9.-]+$", addr):
                raise SdpParseError(f"bad connection address {addr!r}") from None
        else:
            if (ip.version == 4) != (parts[1] == "IP4"):
                raise SdpParseError(f"address {addr!r} does not match {parts[1]}")
        return cls(parts[2], parts[1], parts[0])

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @property
    def host(self) -> str:
        return self.address.split("/")[0]


@dataclass(frozen=True, slots=True)
class Origin:
    username: str
    session_id: str
    session_version: int
    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    @classmethod
    def parse(cls, text: str) -> Origin:
        parts = text.split()
        if len(parts) != 6 or not parts[2].isdigit() or not parts[2].isascii() or len(parts[2]) > 20:
            raise SdpParseError(f"bad o= line {text!r}")
        return cls(parts[0], parts[1], int(parts[2]), parts[5], parts[4], parts[3])

    def __str__(self) -> str:
        return (f"{self.username} {self.session_id} {self.session_version} {self.nettype} {self.addrtype} "
                f"{self.address}")  # fmt: skip


def _parse_attr(text: str) -> tuple[str, str | None]:
    name, colon, value = text.partition(":")
    if not name or not re.match(r"^[A-Za-z0-9._-]+$", name):
        raise SdpParseError(f"bad attribute {text!r}")
    return name, value if colon else None


def _format_attr(attr: tuple[str, str | None]) -> str:
    return f"a={attr[0]}" if attr[1] is None else f"a={attr[0]}:{attr[1]}"


def _direction_of(attrs: list[tuple[str, str | None]]) -> Direction | None:
    for name, _ in attrs:
        if name in Direction._value2member_map_:
            return Direction(name)
    return None


@dataclass(slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: Connection | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse_m_line(cls, text: str) -> MediaDescription:
        parts = text.split()
        if len(parts) < 4:
            raise SdpParseError(f"bad m= line {text!r}")
        port_text = parts[1].split("/")[0]
        if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
            raise SdpParseError(f"bad port in m= line {text!r}")
        if "RTP/" in parts[2] and not all(f.isdigit() and f.isascii() and int(f) <= 127 for f in parts[3:]):
            raise SdpParseError(f"bad RTP payload type in m= line {text!r}")
        return cls(parts[0], int(port_text), parts[2], parts[3:])

    def lines(self) -> list[str]:
        out = [f"m={self.media} {self.port} {self.proto} {' '.join(self.formats)}"]
        out += [f"{k}={v}" for k, v in self.extra if k == "i"]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"{k}={v}" for k, v in self.extra if k != "i"]
        out += [_format_attr(a) for a in self.attributes]
        return out

    def attr(self, name: str) -> str | None:
        return next((v for n, v in self.attributes if n == name), None)

    def codecs(self) -> list[Codec]:
        """The offered formats in order, named from a=rtpmap or the static table (unknown ones skipped)."""
        maps: dict[int, Codec] = {}
        for name, value in self.attributes:
            if name == "rtpmap" and value is not None:
                m = re.match(r"^(\d{1,3})\s+([^/\s]+)/(\d+)(?:/(\d+))?\s*$", value)
                if not m:
                    raise SdpParseError(f"bad rtpmap {value!r}")
                pt = int(m.group(1))
                maps[pt] = Codec(m.group(2), pt, int(m.group(3)), int(m.group(4)) if m.group(4) else None)
        out: list[Codec] = []
        for fmt in self.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            if pt in maps:
                out.append(maps[pt])
            elif pt in STATIC_PT:
                out.append(Codec(STATIC_PT[pt][0], pt, STATIC_PT[pt][1]))
        return out

    def fmtp(self, pt: int) -> str | None:
        for name, value in self.attributes:
            if name == "fmtp" and value is not None and value.split(" ", 1)[0] == str(pt):
                return value.split(" ", 1)[1] if " " in value else ""
        return None

    @property
    def ptime(self) -> int | None:
        value = self.attr("ptime")
        if value is None:
            return None
        if not value.strip().isdigit() or not value.strip().isascii():
            raise SdpParseError(f"bad ptime {value!r}")
        return int(value)


@dataclass(slots=True)
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: str = "0 0"
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes) -> SessionDescription:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpParseError("SDP is not valid UTF-8") from None
        lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
        if len(lines) > MAX_LINES:
            raise SdpTooLarge(f"more than {MAX_LINES} SDP lines")
        if text.count("\nm=") > MAX_MEDIA:
            raise SdpTooLarge(f"more than {MAX_MEDIA} media sections")
        if not lines or lines[0].strip() != "v=0":
            raise SdpParseError("SDP must start with v=0")
        origin: Origin | None = None
        name: str | None = None
        timing: str | None = None
        conn: Connection | None = None
        attrs: list[tuple[str, str | None]] = []
        extra: list[tuple[str, str]] = []
        media: list[MediaDescription] = []
        for line in lines[1:]:
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise SdpParseError(f"bad SDP line {line[:40]!r}")
            kind, value = line[0], line[2:].rstrip()
            if kind == "m":
                media.append(MediaDescription.parse_m_line(value))
            elif media:
                cur = media[-1]
                if kind == "c":
                    cur.connection = Connection.parse(value)
                elif kind == "a":
                    cur.attributes.append(_parse_attr(value))
                elif kind in "ibk":
                    cur.extra.append((kind, value))
                else:
                    raise SdpParseError(f"{kind}= line not allowed in a media section")
            elif kind == "v":
                raise SdpParseError("repeated v= line")
            elif kind == "o":
                origin = Origin.parse(value)
            elif kind == "s":
                name = value
            elif kind == "t":
                if timing is None:
                    timing = value
                else:
                    extra.append((kind, value))
            elif kind == "c":
                conn = Connection.parse(value)
            elif kind == "a":
                attrs.append(_parse_attr(value))
            else:
                extra.append((kind, value))
        if origin is None:
            raise SdpParseError("missing o= line")
        if name is None:
            raise SdpParseError("missing s= line")
        if timing is None:
            raise SdpParseError("missing t= line")
        for m in media:
            m.codecs()  # validates rtpmap lines
            _ = m.ptime
            if conn is None and m.connection is None and m.port != 0:
                raise SdpParseError(f"no c= line for the {m.media} stream")
        return cls(origin, name, conn, timing, attrs, media, extra)

    def __bytes__(self) -> bytes:
        lines = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        lines += [f"{k}={v}" for k, v in self.extra if k in "iuep"]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"{k}={v}" for k, v in self.extra if k == "b"]
        lines.append(f"t={self.timing}")
        lines += [f"{k}={v}" for k, v in self.extra if k not in "iuepb"]
        lines += [_format_attr(a) for a in self.attributes]
        for m in self.media:
            lines += m.lines()
        return ("\r\n".join(lines) + "\r\n").encode()

    @property
    def direction(self) -> Direction:
        """Session-level direction (sendrecv when absent)."""
        return _direction_of(self.attributes) or Direction.SENDRECV

    def media_direction(self, media: MediaDescription) -> Direction:
        return _direction_of(media.attributes) or self.direction

    def rtp_addr(self, media: MediaDescription) -> tuple[str, int]:
        conn = media.connection or self.connection
        if conn is None:
            raise SdpParseError("no connection address")
        return conn.host, media.port

    def first_audio(self) -> MediaDescription | None:
        return next((m for m in self.media if m.media == "audio" and m.port != 0), None)


class Negotiated(NamedTuple):
    answer: SessionDescription
    codec: Codec
    telephone_event_pt: int | None
    remote_rtp_addr: tuple[str, int]
    direction: Direction


def _audio_section(port: int, codecs: Sequence[Codec], te_pt: int | None, direction: Direction,
                   ptime: int | None) -> MediaDescription:  # fmt: skip
    formats = [str(c.pt) for c in codecs] + ([str(te_pt)] if te_pt is not None else [])
    attrs: list[tuple[str, str | None]] = [("rtpmap", c.rtpmap()) for c in codecs]
    if te_pt is not None:
        attrs += [("rtpmap", f"{te_pt} {TELEPHONE_EVENT}/8000"), ("fmtp", f"{te_pt} 0-16")]
    if ptime is not None:
        attrs.append(("ptime", str(ptime)))
    attrs.append((direction.value, None))
    return MediaDescription("audio", port, "RTP/AVP", formats, attributes=attrs)


def make_offer(local_ip: str, local_port: int, *, codecs: Sequence[str] = ("PCMU", "PCMA"),
               telephone_event_pt: int | None = 101, direction: Direction = Direction.SENDRECV,
               ptime: int | None = 20, session_id: str = "0", session_version: int = 0,
               username: str = "callroom") -> SessionDescription:  # fmt: skip
    """An audio offer; bump ``session_version`` for each new offer in a dialog (re-INVITE, hold)."""
    addrtype = "IP6" if ":" in local_ip else "IP4"
    chosen = [KNOWN_CODECS[c.upper()] for c in codecs]
    return SessionDescription(
        origin=Origin(username, session_id, session_version, local_ip, addrtype),
        connection=Connection(local_ip, addrtype),
        media=[_audio_section(local_port, chosen, telephone_event_pt, direction, ptime)],
    )


def _telephone_event(media: MediaDescription) -> Codec | None:
    return next((c for c in media.codecs() if c.name.lower() == TELEPHONE_EVENT and c.clock == 8000), None)


def negotiate_answer(offer: SessionDescription, local_ip: str, local_port: int, *,
                     supported: Sequence[str] = ("PCMU", "PCMA"), session_id: str = "0",
                     session_version: int = 0, local_direction: Direction = Direction.SENDRECV,
                     username: str = "callroom") -> Negotiated:  # fmt: skip
    """Answer ``offer`` (RFC 3264 §6): keep the first offered codec we support, echo telephone-event.

    Every m-line is answered; all but the first usable audio stream get port 0. The answer direction is
    the offer's direction reversed, narrowed by ``local_direction`` (for example ``SENDONLY`` to hold).
    Raises :class:`NoCommonCodec` when no audio stream has a codec from ``supported``.
    """
    wanted = [s.upper() for s in supported]
    addrtype = "IP6" if ":" in local_ip else "IP4"
    chosen: tuple[MediaDescription, Codec] | None = None
    answer_media: list[MediaDescription] = []
    for m in offer.media:
        codec = None
        if chosen is None and m.media == "audio" and m.port != 0 and m.proto.startswith("RTP/"):
            usable = [c for c in m.codecs() if c.name.upper() in wanted and c.clock == 8000]
            codec = usable[0] if usable else None
        if codec is None:
            answer_media.append(MediaDescription(m.media, 0, m.proto, list(m.formats[:1])))
            continue
        chosen = (m, codec)
        te = _telephone_event(m)
        direction = _narrow(offer.media_direction(m).answer(), local_direction)
        answer_media.append(_audio_section(local_port, [codec], te.pt if te else None, direction, m.ptime))
    if chosen is None:
        raise NoCommonCodec(f"no audio codec in common with {', '.join(wanted)}")
    media, codec = chosen
    te = _telephone_event(media)
    answer = SessionDescription(
        origin=Origin(username, session_id, session_version, local_ip, addrtype),
        connection=Connection(local_ip, addrtype),
        media=answer_media,
    )
    direction = _narrow(offer.media_direction(media).answer(), local_direction)
    return Negotiated(answer, codec, te.pt if te else None, offer.rtp_addr(media), direction)


def _narrow(a: Direction, b: Direction) -> Direction:
    send = a in (Direction.SENDRECV, Direction.SENDONLY) and b in (Direction.SENDRECV, Direction.SENDONLY)
    recv = a in (Direction.SENDRECV, Direction.RECVONLY) and b in (Direction.SENDRECV, Direction.RECVONLY)
    return {(True, True): Direction.SENDRECV, (True, False): Direction.SENDONLY,
            (False, True): Direction.RECVONLY, (False, False): Direction.INACTIVE}[(send, recv)]  # fmt: skip


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated:
    """Check an answer to our ``offer`` and read what was agreed (our direction, their RTP address)."""
    if len(answer.media) != len(offer.media):
        raise SdpParseError("answer has a different number of m= lines than the offer")
    media = answer.first_audio()
    if media is None:
        raise NoCommonCodec("the answer rejected every audio stream")
    offered = {c.name.upper() for m in offer.media for c in m.codecs()}
    usable = [c for c in media.codecs() if c.name.upper() in offered and c.name.upper() in KNOWN_CODECS]
    if not usable:
        raise NoCommonCodec("the answer chose no codec that was offered")
    te = _telephone_event(media)
    direction = answer.media_direction(media).answer()
    return Negotiated(answer, usable[0], te.pt if te else None, answer.rtp_addr(media), direction)
