"""The command line's options in one table: each one's flag, environment variable, configuration-file key,
type and default, and how the sources combine.

A value comes from the first of: its flag, its ``CALLROOM_*`` environment variable, the configuration file
(``--config callroom.toml`` or ``CALLROOM_CONFIG``), its default. The file is TOML with one key per option,
named as the flag without its dashes (``sip-port = 5060``; ``sip_port`` is the same key); a repeatable
option is a list (``allow-url-network = ["127.0.0.0/8"]``); a relative ``data-dir`` is taken from the file's
folder. A key the table does not have, or a value of the wrong type, is refused with one line naming it.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callroom.admission import (
    DEFAULT_MAX_CALLS,
    DEFAULT_MAX_CALLS_PER_SECOND,
    DEFAULT_MAX_SETUP_BACKLOG,
    DEFAULT_MAX_TICK_LATENESS_MS,
)
from callroom.errors import ConfigError

DEFAULT_DATA_DIR = Path(".callroom")
DEFAULT_PORT = 8080
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def network(value: str) -> str:
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"not a network or an address: {value!r}") from exc
    return value.strip()


def networks(value: str) -> str:
    """A comma-separated list of networks (``--sip-allow``)."""
    for part in value.split(","):
        network(part)
    return value


def port_range(value: str) -> str:
    low, sep, high = value.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit() or int(low) > int(high):
        raise ValueError(f"not a port range LOW-HIGH: {value!r}")
    return value


def rate_limit(value: str) -> str:
    rate, _, burst = value.partition(":")
    try:
        float(rate), float(burst or 0)
    except ValueError:
        raise ValueError(f"not RATE or RATE:BURST: {value!r}") from None
    return value


def log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise ValueError(f"not one of {', '.join(LOG_LEVELS)}: {value!r}")
    return value.lower()


def log_format(value: str) -> str:
    if value.lower() not in ("text", "json"):
        raise ValueError(f"not text or json: {value!r}")
    return value.lower()


def switch(value: str | bool) -> bool:
    """on/off, true/false, yes/no, 1/0 (a flag given alone is on)."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not on or off: {value!r}")


def number(value: str) -> str:
    """A number plan's entry, NUMBER=ENDPOINT (checked as a whole when the plan is built)."""
    if "=" not in value:
        raise ValueError(f"not NUMBER=ENDPOINT: {value!r}")
    return value


def at_least_zero(value: Any) -> Any:
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"must be 0 (no limit) or more: {value!r}")
    return value


def credential(value: str) -> str:
    if ":" not in value:
        raise ValueError(f"not USER:PASSWORD: {value.split(':')[0]!r}...")
    return value


@dataclass(frozen=True)
class Option:
    name: str  # the flag without "--", and the file's key
    kind: type  # str, int, float, bool or Path: what the file's value must be (a Path is a string there)
    default: Any
    help: str
    env: str | None = None  # its CALLROOM_* variable (a repeatable option's is comma-separated)
    many: bool = False  # repeatable flag; a list in the file
    check: Callable[[str], str] | None = None  # validates (and may normalise) a text value
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def parse(self, text: str) -> Any:
        """A value from a flag or the environment."""
        value: Any = switch(text) if self.kind is bool else self.kind(text)
        return self.check(value) if self.check is not None else value


# Options every command takes, before its name or after it.
COMMON = (
    Option("data-dir", Path, DEFAULT_DATA_DIR, "where the SQLite database, keys, recordings and media live",
           env="CALLROOM_DATA_DIR"),
    Option("database-url", str, None, "sqlite:///path or postgresql://... (default: SQLite in the data dir)",
           env="CALLROOM_DATABASE_URL"),
)

SERVE = (
    Option("host", str, "127.0.0.1", "the address the API listens on", env="CALLROOM_HOST"),
    Option("port", int, DEFAULT_PORT, "the API's TCP port", env="CALLROOM_PORT"),
    Option("node-id", str, None, "this node's id (default: one kept in the data dir)", env="CALLROOM_NODE_ID"),
    Option("log-level", str, "info", "debug, info, warning, error", env="CALLROOM_LOG_LEVEL", check=log_level),
    Option("sip-host", str, "127.0.0.1", "the address SIP listens on (UDP)", env="CALLROOM_SIP_HOST"),
    Option("sip-port", int, 5060, "UDP port for SIP (-1: no SIP, virtual phones only)", env="CALLROOM_SIP_PORT"),
    Option("sip-advertise", str, None, "address put in Contact and SDP when --sip-host is a wildcard",
           env="CALLROOM_SIP_ADVERTISE"),
    Option("sip-allow", str, "127.0.0.0/8,::1/128", "comma-separated networks allowed to call in",
           env="CALLROOM_SIP_ALLOW", check=networks),
    Option("sip-credential", str, (), "digest credentials callers must prove (repeat for several; none: networks "
           "only)", env="CALLROOM_SIP_CREDENTIALS", many=True, check=credential, metavar="USER:PASSWORD"),
    Option("rtp-ports", str, "20000-30000", "the UDP ports of RTP legs, LOW-HIGH", env="CALLROOM_RTP_PORTS",
           check=port_range),
    Option("rtp-timeout", float, 60.0, "hang up an answered SIP call whose far end sends no media for this long, "
           "unless on hold (0: never; default 60)", env="CALLROOM_RTP_TIMEOUT", metavar="SECS"),
    Option("ring-timeout", float, 120.0, "end an incoming call nobody answers or rejects after this long, with SIP "
           "480 (0: never; default 120)", env="CALLROOM_RING_TIMEOUT", metavar="SECS"),
    Option("rate-limit", str, "1000", "requests per second per API key, optionally ':burst' (0: no limit)",
           env="CALLROOM_RATE_LIMIT", check=rate_limit),
    Option("allow-url-network", str, (), "a network webhook and media URLs may reach besides public addresses, "
           "e.g. 127.0.0.0/8 for receivers on this machine (repeat for several; 0.0.0.0/0 and ::/0: any address)",
           env="CALLROOM_ALLOW_URL_NETWORKS", many=True, check=network, metavar="NETWORK"),
    Option("nats-url", str, None, "nats://host:4222: join the cluster of the nodes on this PostgreSQL database "
           "over this NATS server (default: a node on its own)", env="CALLROOM_NATS_URL"),
    Option("file-cache-mb", int, 2048, "how many MB of copies of stored files (recordings, uploads: kept in the "
           "database) this node keeps in its data dir's 'files' folder (default 2048)", env="CALLROOM_FILE_CACHE_MB",
           check=at_least_zero, metavar="MB"),
    Option("relay-host", str, None, "the address other nodes send this node's relayed audio to (default: the SIP "
           "address)", env="CALLROOM_RELAY_HOST"),
    Option("sip-tcp-port", int, None, "take SIP over TCP too, on this port (0: a free one)",
           env="CALLROOM_SIP_TCP_PORT", metavar="PORT"),
    Option("sip-tls-port", int, None, "take SIP over TLS too, on this port (5061 is usual; --sip-tls-cert, "
           "--sip-tls-key)", env="CALLROOM_SIP_TLS_PORT", metavar="PORT"),
    Option("sip-tls-cert", str, None, "this node's certificate (chain), PEM", env="CALLROOM_SIP_TLS_CERT",
           metavar="FILE"),
    Option("sip-tls-key", str, None, "the certificate's private key, PEM", env="CALLROOM_SIP_TLS_KEY",
           metavar="FILE"),
    Option("sip-tls-ca", str, None, "trust this CA (PEM) for TLS trunks' certificates instead of the system's CAs",
           env="CALLROOM_SIP_TLS_CA", metavar="FILE"),
    Option("trunk", str, (), "a SIP trunk of the default account (created or changed at start), e.g. "
           "carrier=sip:user:secret@sip.example.net;transport=tls;register=yes (repeat for several)",
           env="CALLROOM_TRUNKS", many=True, metavar="NAME=sip:[USER:PASSWORD@]HOST[:PORT][;k=v]"),
    Option("trunks-file", Path, (), "a TOML file of [trunks.NAME] tables (host, port, transport, username, "
           "password, register, numbers ...)", env="CALLROOM_TRUNKS_FILES", many=True, metavar="FILE"),
    Option("log-format", str, "text", "text, or json (one object per line, for log collectors)",
           env="CALLROOM_LOG_FORMAT", check=log_format),
    Option("access-log", bool, True, "one line per API request: method, path, status, account, ms (off: none)",
           env="CALLROOM_ACCESS_LOG", metavar="on|off"),
    Option("sip-trace", bool, False, "log every SIP message in and out, whole (callroom.sip.trace)",
           env="CALLROOM_SIP_TRACE", metavar="on|off"),
    Option("drain-timeout", float, 30.0, "on SIGTERM/Ctrl-C or 'callroom drain': how long calls in progress may "
           "go on before the node hangs them up (a second signal: at once)", env="CALLROOM_DRAIN_TIMEOUT",
           metavar="SECS"),
    Option("number", str, (), "a number of the node's number plan: dialling it rings ENDPOINT (virtual:... or "
           "sip:...), e.g. +15550000100=virtual:agent1;tone=700 (repeat for several)", env="CALLROOM_NUMBERS",
           many=True, check=number, metavar="NUMBER=ENDPOINT"),
    Option("number-plan", Path, (), "a TOML file whose [numbers] table maps numbers to endpoints (repeatable)",
           env="CALLROOM_NUMBER_PLANS", many=True, metavar="FILE"),
    Option("max-calls", int, DEFAULT_MAX_CALLS, "refuse new calls while this many are up (0: no limit)",
           env="CALLROOM_MAX_CALLS", check=at_least_zero, metavar="N"),
    Option("max-calls-per-second", float, DEFAULT_MAX_CALLS_PER_SECOND, "admit at most this many new calls a "
           "second, in and out together (a second's worth at once; 0: no limit)",
           env="CALLROOM_MAX_CALLS_PER_SECOND", check=at_least_zero, metavar="RATE"),
    Option("max-tick-lateness", float, DEFAULT_MAX_TICK_LATENESS_MS, "refuse new calls while the media tick runs "
           "this late, smoothed over ~200 ms (0: no limit)", env="CALLROOM_MAX_TICK_LATENESS",
           check=at_least_zero, metavar="MS"),
    Option("max-setup-backlog", int, DEFAULT_MAX_SETUP_BACKLOG, "refuse new calls while this many incoming calls "
           "wait for the control plane to take them (0: no limit)", env="CALLROOM_MAX_SETUP_BACKLOG",
           check=at_least_zero, metavar="N"),
)

OPTIONS: dict[str, Option] = {o.name: o for o in (*COMMON, *SERVE)}


def add_arguments(parser: argparse.ArgumentParser, options: tuple[Option, ...], *, suppress: bool = False) -> None:
    """The options' flags, each defaulting to "not given" (None; with ``suppress``, absent from the
    namespace, so that the same flag before the command's name is not overwritten)."""

    def typed(option: Option) -> Callable[[str], Any]:
        def convert(text: str) -> Any:
            try:
                return option.parse(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        convert.__name__ = option.kind.__name__  # what argparse names in "invalid int value"
        return convert

    for option in options:
        env = f" (env {option.env})" if option.env else ""
        flag = option.kind is bool  # ``--sip-trace`` alone: on
        parser.add_argument(f"--{option.name}", dest=option.dest, type=typed(option),
                            action="append" if option.many else "store", metavar=option.metavar,
                            default=argparse.SUPPRESS if suppress else None, help=option.help + env,
                            nargs="?" if flag else None, const=True if flag else None)


def read_file(path: Path) -> dict[str, Any]:
    """The configuration file's values, by option name; relative paths are taken from the file's folder."""
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("_", "-")
        option = OPTIONS.get(name)
        if option is None:
            near = difflib.get_close_matches(name, OPTIONS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (known keys: {', '.join(OPTIONS)})"
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
        if name in values:
            raise ConfigError(f"{path}: {key!r} is set twice")
        values[name] = _from_file(path, option, key, value)
    return values


def _from_file(path: Path, option: Option, key: str, value: Any) -> Any:
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{path}: {key} must be {expected}, not {value!r}")

    def one(item: Any) -> Any:
        if option.kind is bool:
            if not isinstance(item, bool):
                raise wrong("true or false")
            return item
        if option.kind in (str, Path):
            if not isinstance(item, str):
                raise wrong("a string" if not option.many else "a list of strings")
            try:
                parsed = option.parse(item)
            except ValueError as exc:
                raise ConfigError(f"{path}: {key}: {exc}") from None
            return path.parent / parsed if isinstance(parsed, Path) and not parsed.is_absolute() else parsed
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise wrong("a number")
        if option.kind is int and not isinstance(item, int):
            raise wrong("a whole number")
        return option.kind(item)

    if option.many:
        if not isinstance(value, list):
            raise wrong("a list")
        return [one(item) for item in value]
    return one(value)


def from_environment(option: Option, environ: Mapping[str, str]) -> Any:
    """The option's value from its environment variable, or None when it is not set."""
    text = environ.get(option.env) if option.env else None
    if text is None or (option.many and not text.strip()):
        return None
    try:
        if option.many:
            return [option.parse(part.strip()) for part in text.split(",") if part.strip()]
        return option.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{option.env}: {exc}") from None


def resolve(args: argparse.Namespace, options: tuple[Option, ...],
            environ: Mapping[str, str] = os.environ) -> argparse.Namespace:  # fmt: skip
    """``args`` with every option in ``options`` set: its flag, else its environment variable, else the
    configuration file's value (``args.config``, else ``CALLROOM_CONFIG``), else its default. ``args.explicit``
    names the options that were given one way or another (not left to their defaults)."""
    config = getattr(args, "config", None) or environ.get("CALLROOM_CONFIG")
    file_values = read_file(Path(config)) if config else {}
    explicit: set[str] = set()
    for option in options:
        value = getattr(args, option.dest, None)
        if value is None:
            value = from_environment(option, environ)
        if value is None:
            value = file_values.get(option.name)
        if value is None:
            value = option.default
        else:
            explicit.add(option.name)
        setattr(args, option.dest, tuple(value) if option.many else value)
    args.config = config
    args.explicit = explicit
    return args
