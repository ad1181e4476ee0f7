"""Structured SIP header values (RFC 3261 §19, §20, §25): URIs, name-addr, Via, CSeq.

Each is a small dataclass with ``parse(text)`` raising :class:`SipParseError` and ``__str__`` to format it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from callroom.errors import SipParseError

TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_VIA = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9-]+)\s+([^;\s]+)\s*(?:;(.*))?$", re.IGNORECASE)


def split_commas(value: str) -> list[str]:
    """Split on commas that are outside double quotes and angle brackets."""
    if '"' not in value and "<" not in value:
        return [part.strip() for part in value.split(",")]
    parts: list[str] = []
    start, quoted, angle, i = 0, False, False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    if quoted:
        raise SipParseError(f"unterminated quoted string in {value!r}")
    parts.append(value[start:].strip())
    return parts


def _split_params(text: str, what: str) -> dict[str, str | None]:
    """``;a=b;c`` (leading ';' already removed) -> {'a': 'b', 'c': None}; names are lower-cased."""
    params: dict[str, str | None] = {}
    if not text.strip():
        return params
    for raw in _split_outside_quotes(text, ";"):
        name, eq, val = raw.partition("=")
        name = name.strip().lower()
        if not name or not TOKEN.match(name):
            raise SipParseError(f"bad parameter {raw!r} in {what}")
        params[name] = val.strip() if eq else None
    return params


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out: list[str] = []
    start, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _parse_host(text: str, what: str) -> tuple[str, int | None]:
    """``host[:port]`` with IPv6 in brackets -> (host, port). The host keeps its brackets off."""
    port_text = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in {what}")
        host = text[1:end]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SipParseError(f"bad IPv6 address {host!r} in {what}") from None
        rest = text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise SipParseError(f"junk after IPv6 reference in {what}")
            port_text = rest[1:]
    else:
        host, colon, port_text = text.partition(":")
        if not host or not _HOSTNAME.match(host):
            raise SipParseError(f"bad host {host!r} in {what}")
        if colon and not port_text:
            raise SipParseError(f"empty port in {what}")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5 or int(port_text) > 65535:
            raise SipParseError(f"bad port {port_text!r} in {what}")
        port = int(port_text)
    return host, port


def format_host(host: str, port: int | None) -> str:
    h = f"[{host}]" if ":" in host else host
    return h if port is None else f"{h}:{port}"


@dataclass(slots=True)
class SipUri:
    """``sip:user:password@host:port;params?headers`` (RFC 3261 §19.1)."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips"):
            raise SipParseError(f"unsupported URI scheme in {text!r}")
        if any(c in rest for c in ' \t<>"\r\n'):
            raise SipParseError(f"illegal character in URI {text!r}")
        rest, _, hdr_text = rest.partition("?")
        user = password = None
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
            if not userinfo:
                raise SipParseError(f"empty user part in {text!r}")
            user, pcolon, pw = userinfo.partition(":")
            password = pw if pcolon else None
            if not user:
                raise SipParseError(f"empty user part in {text!r}")
        hostport, _, param_text = rest.partition(";")
        host, port = _parse_host(hostport, f"URI {text!r}")
        params = _split_params(param_text, f"URI {text!r}")
        headers: dict[str, str] = {}
        if hdr_text:
            for item in hdr_text.split("&"):
                k, eq, v = item.partition("=")
                if not k or not eq:
                    raise SipParseError(f"bad URI header {item!r} in {text!r}")
                headers[k] = v
        return cls(host=host, user=user, port=port, scheme=scheme, password=password, params=params,
                   headers=headers)  # fmt: skip

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        out = f"{self.scheme}:{userinfo}{format_host(self.host, self.port)}{_format_params(self.params)}"
        if self.headers:
            out += "?" + "&".join(f"{k}={v}" for k, v in self.headers.items())
        return out

    @property
    def transport(self) -> str:
        return (self.params.get("transport") or ("tls" if self.scheme == "sips" else "udp")).lower()


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


@dataclass(slots=True)
class NameAddr:
    """From, To, Contact, Route and Record-Route values: ``"Name" <uri>;tag=x`` or ``uri;tag=x``."""

    uri: SipUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        display: str | None = None
        if "<" in text or text.startswith('"'):
            if text.startswith('"'):
                m = re.match(r'^"((?:[^"\\]|\\.)*)"\s*', text)
                if not m:
                    raise SipParseError(f"unterminated display name in {text!r}")
                display = _unquote(text[: m.end()].strip())
                text = text[m.end() :]
            lt = text.find("<")
            gt = text.find(">", lt + 1)
            if lt < 0 or gt < 0:
                raise SipParseError(f"missing angle brackets in name-addr {text!r}")
            if lt > 0:
                if display is not None:
                    raise SipParseError(f"junk between display name and URI in {text!r}")
                display = text[:lt].strip() or None
            uri = SipUri.parse(text[lt + 1 : gt])
            tail = text[gt + 1 :].strip()
        else:
            uri_text, _, tail = text.partition(";")
            uri = SipUri.parse(uri_text)
            tail = ";" + tail if tail else ""
        if tail and not tail.startswith(";"):
            raise SipParseError(f"junk after URI in {text!r}")
        return cls(uri=uri, display_name=display, params=_split_params(tail[1:], f"name-addr {text!r}"))

    def __str__(self) -> str:
        name = ""
        if self.display_name is not None:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            name = f'"{escaped}" '
        return f"{name}<{self.uri}>{_format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.uri, self.display_name, {**self.params, "tag": tag})


@dataclass(slots=True)
class Via:
    """``SIP/2.0/UDP host:port;branch=z9hG4bK...;rport;received=1.2.3.4`` (RFC 3261 §20.42, RFC 3581)."""

    host: str
    port: int | None = None
    transport: str = "UDP"
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA.match(text)
        if not m:
            raise SipParseError(f"bad Via {text!r}")
        host, port = _parse_host(m.group(2), f"Via {text!r}")
        params = _split_params(m.group(3) or "", f"Via {text!r}")
        rport = params.get("rport")
        if rport is not None and not (rport.isdigit() and rport.isascii() and int(rport) <= 65535):
            raise SipParseError(f"bad rport in Via {text!r}")
        return cls(host=host, port=port, transport=m.group(1).upper(), params=params)

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {format_host(self.host, self.port)}{_format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return int(value) if value else None

    def response_addr(self) -> tuple[str, int]:
        """Where to send responses over UDP (RFC 3261 §18.2.2, RFC 3581 §4)."""
        host = self.received or self.host
        port = self.rport or self.port or 5060
        return host, port


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or not parts[0].isascii() or not TOKEN.match(parts[1]):
            raise SipParseError(f"bad CSeq {text!r}")
        seq = int(parts[0])
        if seq >= 2**31:
            raise SipParseError(f"CSeq number out of range in {text!r}")
        return cls(seq, parts[1])

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"
