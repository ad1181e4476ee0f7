"""SIP trunks and the phone numbers they bring: how calls reach the phone network and come back from it.

A *trunk* is a SIP gateway of a provider (host, port, transport) with the rules of its contract: how we
prove who we are (digest credentials, with REGISTER when the provider wants it, or only our source
address), which caller IDs we may send and in which header (From or P-Asserted-Identity), how numbers are
written to it (``+E.164`` or E.164 digits, a tech prefix) and which codecs we offer. It belongs to an
account; an application's ``outbound.outbound_voice_profile_id`` names the trunk its calls to numbers take
(Telnyx names that setting an outbound voice profile). A *phone number* is one the operator owns, delivered
by a trunk, and assigned to an application (``connection_id``): an INVITE from that trunk to the number
reaches the application. A TLS trunk may carry its media as SRTP (``srtp``: ``off``, ``optional`` or
``required``; keys by SDES, ``callroom/sip/sdes.py``).

A trunk is written as settings (a TOML table, a JSON body) or as one line (``--trunk``)::

    carrier=sip:USER:PASSWORD@gw.example.net:5060;register=600;caller_id=pai;from=+1555*;numbers=+15550001000
    secure=sip:USER:PASSWORD@gw.example.net:5061;transport=tls;srtp=required

``TrunkDirectory`` is the snapshot of trunks and numbers the control plane decides with (it does no I/O).
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from callroom.model.numbers import normalise

TRANSPORTS = ("udp", "tcp", "tls")
CALLER_ID_HEADERS = ("from", "pai")  # where our caller ID goes: the From, or P-Asserted-Identity (From: our user)
NUMBER_FORMATS = ("+e164", "e164")  # how the dialled number is written in the Request-URI and To
CODECS = ("PCMU", "PCMA")
SRTP_MODES = ("off", "optional", "required")  # SRTP with SDES keys (callroom/sip/sdes.py), on TLS trunks only
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
MIN_REGISTER_EXPIRES = 60
TRUNK_PREFIX = "trunk:"  # a call's far end through a trunk: ``trunk:<trunk id>:<number as the trunk wants it>``


@dataclass
class Trunk:
    id: str
    account_id: str
    name: str
    host: str
    port: int = 5060
    transport: str = "udp"
    username: str | None = None
    password: str | None = None
    register: bool = False  # REGISTER our contact with the gateway (as its registrar) and keep it registered
    register_expires: int = 600  # seconds asked for; refreshed before expiry
    inbound_networks: list[str] = field(default_factory=list)  # sources of its INVITEs besides ``host``
    allowed_from: list[str] = field(default_factory=list)  # caller IDs allowed: numbers, or prefixes with *
    caller_id_header: str = "from"
    number_format: str = "+e164"
    tech_prefix: str = ""
    codecs: list[str] = field(default_factory=lambda: list(CODECS))
    created_at: float = 0.0
    updated_at: float = 0.0
    srtp: str = "off"  # media encryption: SRTP with SDES keys, "optional" or "required" (TLS only)

    def check(self) -> None:
        """``ValueError`` naming the first setting that is wrong."""
        if not self.name or not self.host or any(c in self.host for c in " ;@<>\"/"):
            raise ValueError(f"trunk {self.name!r}: needs a name and a gateway host")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"trunk {self.name}: transport must be one of {', '.join(TRANSPORTS)}")
        if not 0 < self.port < 65536:
            raise ValueError(f"trunk {self.name}: port {self.port} is not a port")
        if self.caller_id_header not in CALLER_ID_HEADERS:
            raise ValueError(f"trunk {self.name}: caller_id must be one of {', '.join(CALLER_ID_HEADERS)}")
        if self.number_format not in NUMBER_FORMATS:
            raise ValueError(f"trunk {self.name}: number_format must be one of {', '.join(NUMBER_FORMATS)}")
        if any(c not in "0123456789*#" for c in self.tech_prefix):
            raise ValueError(f"trunk {self.name}: tech_prefix must be digits (and * #)")
        if not self.codecs or any(c not in CODECS for c in self.codecs):
            raise ValueError(f"trunk {self.name}: codecs must be among {', '.join(CODECS)}")
        if self.register and not (self.username and self.password):
            raise ValueError(f"trunk {self.name}: register needs a username and a password")
        if (self.username is None) != (self.password is None):
            raise ValueError(f"trunk {self.name}: give a username and a password, or neither")
        if self.register_expires < MIN_REGISTER_EXPIRES:
            raise ValueError(f"trunk {self.name}: register_expires must be {MIN_REGISTER_EXPIRES} s or more")
        if self.srtp not in SRTP_MODES:
            raise ValueError(f"trunk {self.name}: srtp must be one of {', '.join(SRTP_MODES)}")
        if self.srtp != "off" and self.transport != "tls":
            raise ValueError(f"trunk {self.name}: srtp needs transport tls (SDES keys travel in the SDP, which "
                             f"{self.transport.upper()} would carry in the clear)")
        for net in self.inbound_networks:
            ipaddress.ip_network(net, strict=False)  # ValueError names it
        for pattern in self.allowed_from:
            if normalise(pattern.rstrip("*")) is None and not (pattern.endswith("*") and _prefix(pattern)):
                raise ValueError(f"trunk {self.name}: {pattern!r} is neither an E.164 number nor a +prefix*")

    def dial_user(self, number: str) -> str:
        """The Request-URI user for an E.164 ``number`` on this trunk: its format and tech prefix."""
        digits = number if self.number_format == "+e164" else number.lstrip("+")
        return self.tech_prefix + digits

    def number_of_user(self, user: str) -> str | None:
        """The E.164 number an INVITE from this trunk is for, from its Request-URI user (prefix and format
        undone; a number without ``+`` is read as E.164 digits)."""
        if self.tech_prefix and user.startswith(self.tech_prefix) and not user.startswith("+"):
            user = user[len(self.tech_prefix):]
        return normalise(user if user.startswith("+") else "+" + user)

    def caller_allowed(self, number: str) -> bool:
        """Whether ``number`` may be sent as our caller ID (no rules: any E.164 number)."""
        if not self.allowed_from:
            return True
        return any(number.startswith(p[:-1]) if p.endswith("*") else number == normalise(p)
                   for p in self.allowed_from)  # fmt: skip

    def redacted(self) -> Trunk:
        """A copy without the password (for views and logs)."""
        copy = Trunk(**{f.name: getattr(self, f.name) for f in fields(self)})
        copy.password = None
        return copy


def _prefix(pattern: str) -> bool:
    head = pattern[:-1]
    return head.startswith("+") and head[1:].isdigit() and 1 <= len(head) <= 16


_SETTINGS = {
    "host": str, "port": int, "transport": str, "username": str, "password": str, "register": bool,
    "register_expires": int, "inbound_networks": list, "allowed_from": list, "caller_id_header": str,
    "number_format": str, "tech_prefix": str, "codecs": list, "srtp": str,
}  # fmt: skip
TRUNK_SETTINGS = frozenset(_SETTINGS)
_ALIASES = {"caller_id": "caller_id_header", "from": "allowed_from", "prefix": "tech_prefix", "format": "number_format",
            "allow": "inbound_networks", "expires": "register_expires"}  # fmt: skip


@dataclass(frozen=True)
class TrunkSettings:
    """A trunk as written by its operator, before it has an id: its settings and the numbers it brings."""

    name: str
    settings: Mapping[str, Any]
    numbers: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, table: Mapping[str, Any]) -> TrunkSettings:
        """From a TOML table or a JSON object; ``ValueError`` for a setting we do not know or of a wrong type."""
        settings: dict[str, Any] = {}
        numbers: list[str] = []
        for key, value in table.items():
            key = _ALIASES.get(key, key)
            if key == "numbers":
                if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
                    raise ValueError(f"trunk {name}: numbers must be a list of numbers")
                numbers += value
                continue
            if key == "register" and isinstance(value, int) and not isinstance(value, bool):
                settings["register_expires"], value = value, True
            kind = _SETTINGS.get(key)
            if kind is None:
                raise ValueError(f"trunk {name}: unknown setting {key!r}")
            if kind is list and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"trunk {name}: {key} must be a {kind.__name__}")
            settings[key] = value
        if "transport" in settings and "port" not in settings:
            settings["port"] = DEFAULT_PORTS.get(settings["transport"], 5060)
        return cls(name, MappingProxyType(settings), tuple(_numbers(name, numbers)))

    @classmethod
    def parse(cls, text: str) -> TrunkSettings:
        """``NAME=sip:[USER:PASSWORD@]HOST[:PORT][;key=value]...`` (lists comma-separated)."""
        name, sep, rest = text.strip().partition("=")
        if not sep or not name or not rest.startswith("sip:"):
            raise ValueError(f"{text!r}: write NAME=sip:[USER:PASSWORD@]HOST[:PORT][;key=value]...")
        address, *params = rest[4:].split(";")
        table: dict[str, Any] = {}
        userinfo, at, hostport = address.rpartition("@")
        if at:
            user, colon, password = userinfo.partition(":")
            if not colon or not user or not password:
                raise ValueError(f"trunk {name}: write USER:PASSWORD@ before the host")
            table["username"], table["password"] = user, password
        host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
        table["host"] = host
        if port:
            if not port.isdigit():
                raise ValueError(f"trunk {name}: {port!r} is not a port")
            table["port"] = int(port)
        for param in params:
            key, eq, value = param.partition("=")
            key = _ALIASES.get(key.strip(), key.strip())
            kind = _SETTINGS.get(key, list if key == "numbers" else None)
            if kind is None:
                raise ValueError(f"trunk {name}: unknown setting {key!r}")
            if key == "register":
                table[key] = True if not eq or value in ("yes", "true", "1") else (
                    int(value) if value.isdigit() else False)
            elif kind is int:
                if not value.isdigit():
                    raise ValueError(f"trunk {name}: {key} must be a whole number")
                table[key] = int(value)
            elif kind is list:
                table[key] = [v.strip() for v in value.split(",") if v.strip()]
            else:
                table[key] = value
        return cls.of(name, table)

    @classmethod
    def load(cls, path: Path) -> tuple[TrunkSettings, ...]:
        """The ``[trunks.NAME]`` tables of a TOML file."""
        with path.open("rb") as f:
            tables = tomllib.load(f).get("trunks", {})
        if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
            raise ValueError(f"{path}: write each trunk as a [trunks.NAME] table")
        return tuple(cls.of(name, table) for name, table in tables.items())

    @classmethod
    def gather(cls, lines: Iterable[str], files: Iterable[Path] = ()) -> tuple[TrunkSettings, ...]:
        """``--trunk`` lines and trunks files together, each checked (``ValueError``: the first wrong one)."""
        specs = [spec for path in files for spec in cls.load(path)] + [cls.parse(line) for line in lines]
        for spec in specs:
            spec.trunk("-", "-", 0.0)  # checks every setting
        return tuple(specs)

    def trunk(self, trunk_id: str, account_id: str, now: float) -> Trunk:
        trunk = Trunk(id=trunk_id, account_id=account_id, name=self.name, host=str(self.settings.get("host", "")),
                      created_at=now, updated_at=now)
        apply_settings(trunk, self.settings)
        return trunk


def apply_settings(trunk: Trunk, settings: Mapping[str, Any]) -> None:
    """Change ``trunk`` by ``settings`` (checked: ``ValueError``, the trunk left as it may be half changed)."""
    for key, value in settings.items():
        setattr(trunk, key, list(value) if isinstance(value, list | tuple) else value)
    if "transport" in settings and "port" not in settings:
        trunk.port = DEFAULT_PORTS.get(trunk.transport, trunk.port)
    trunk.check()


def _numbers(name: str, numbers: list[str]) -> list[str]:
    out = []
    for number in numbers:
        normal = normalise(number)
        if normal is None:
            raise ValueError(f"trunk {name}: {number!r} is not an E.164 number")
        out.append(normal)
    return out


@dataclass
class PhoneNumber:
    """A number the operator owns, brought by a trunk, assigned to an application (``connection_id``)."""

    id: str
    account_id: str
    phone_number: str
    trunk_id: str | None
    connection_id: str | None
    created_at: float
    updated_at: float
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrunkDirectory:
    """The trunks and numbers a node routes with: a snapshot, replaced whole when they change."""

    trunks: Mapping[str, Trunk] = field(default_factory=lambda: MappingProxyType({}))
    numbers: Mapping[str, PhoneNumber] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, trunks: list[Trunk], numbers: list[PhoneNumber]) -> TrunkDirectory:
        return cls(MappingProxyType({t.id: t for t in trunks}),
                   MappingProxyType({n.phone_number: n for n in numbers}))  # fmt: skip

    def outbound_trunk(self, account_id: str, outbound: Mapping[str, Any]) -> Trunk | None:
        """The trunk an application's calls to numbers take: the one its ``outbound_voice_profile_id`` names
        (of its own account), else its account's only trunk, else none."""
        profile = outbound.get("outbound_voice_profile_id")
        if profile:
            trunk = self.trunks.get(str(profile))
            return trunk if trunk is not None and trunk.account_id == account_id else None
        mine = [t for t in self.trunks.values() if t.account_id == account_id]
        return mine[0] if len(mine) == 1 else None

    def number(self, number: str) -> PhoneNumber | None:
        normal = normalise(number)
        return self.numbers.get(normal) if normal is not None else None


NO_TRUNKS = TrunkDirectory()


def trunk_endpoint(trunk: Trunk, number: str) -> str:
    """The far end of a call through ``trunk`` to E.164 ``number``."""
    return f"{TRUNK_PREFIX}{trunk.id}:{trunk.dial_user(number)}"


def parse_trunk_endpoint(endpoint: str) -> tuple[str, str]:
    """(trunk id, Request-URI user) of a ``trunk:`` far end."""
    trunk_id, sep, user = endpoint.removeprefix(TRUNK_PREFIX).partition(":")
    if not sep or not trunk_id or not user:
        raise ValueError(f"{endpoint!r} is not a trunk far end")
    return trunk_id, user
