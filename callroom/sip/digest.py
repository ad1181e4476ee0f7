"""SIP digest authentication (RFC 3261 §22, RFC 2617 MD5 with qop=auth), server side. Pure: time is
passed in.

Nonces are stateless: ``<timestamp>:<HMAC(secret, timestamp)>`` base64-encoded, so any node with the
secret can check one, and a nonce older than ``nonce_ttl`` seconds is stale (the challenge is repeated
with ``stale=true``, which phones answer without asking their user again).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def parse_authorization(value: str) -> dict[str, str] | None:
    """The parameters of a ``Digest ...`` Authorization value, or None if it is not one."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            return None
        params[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
        pos = m.end()
    return params


@dataclass(frozen=True, slots=True)
class DigestVerdict:
    ok: bool
    stale: bool = False
    username: str | None = None


class DigestAuth:
    def __init__(self, credentials: dict[str, str], realm: str, secret: bytes, nonce_ttl: float = 300.0) -> None:
        self.credentials = dict(credentials)
        self.realm = realm
        self.secret = secret
        self.nonce_ttl = nonce_ttl

    def nonce(self, now: float) -> str:
        stamp = str(int(now))
        mac = hmac.new(self.secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        return base64.b64encode(f"{stamp}:{mac}".encode()).decode()

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        try:
            stamp, mac = base64.b64decode(nonce, validate=True).decode().split(":")
        except (ValueError, UnicodeDecodeError):
            return None
        good = hmac.new(self.secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        if not stamp.isdigit() or not hmac.compare_digest(mac, good):
            return None
        return now - int(stamp)

    def challenge(self, now: float, stale: bool = False) -> str:
        """A ``WWW-Authenticate`` value."""
        extra = ", stale=true" if stale else ""
        return f'Digest realm="{self.realm}", nonce="{self.nonce(now)}", algorithm=MD5, qop="auth"{extra}'

    def verify(self, method: str, authorization: str | None, now: float) -> DigestVerdict:
        """Whether ``authorization`` proves one of the credentials for a request of ``method``."""
        if not authorization:
            return DigestVerdict(False)
        p = parse_authorization(authorization)
        if p is None or p.get("realm") != self.realm or p.get("algorithm", "MD5").upper() != "MD5":
            return DigestVerdict(False)
        username, nonce, uri, response = p.get("username"), p.get("nonce"), p.get("uri"), p.get("response")
        if not (username and nonce and uri and response) or username not in self.credentials:
            return DigestVerdict(False)
        age = self._nonce_age(nonce, now)
        if age is None or age < -5:
            return DigestVerdict(False)
        ha1 = _md5(f"{username}:{self.realm}:{self.credentials[username]}")
        ha2 = _md5(f"{method}:{uri}")
        qop = p.get("qop")
        if qop:
            if qop != "auth" or not p.get("nc") or not p.get("cnonce"):
                return DigestVerdict(False)
            expected = _md5(f"{ha1}:{nonce}:{p['nc']}:{p['cnonce']}:{qop}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        if not hmac.compare_digest(expected, response.lower()):
            return DigestVerdict(False, username=username)
        if age > self.nonce_ttl:
            return DigestVerdict(False, stale=True, username=username)
        return DigestVerdict(True, username=username)


def client_response(username: str, password: str, realm: str, nonce: str, method: str, uri: str,
                    nc: str = "00000001", cnonce: str = "0a4f113b") -> str:
    """What a phone sends (qop=auth): for tests and for dialling out to a server that challenges us."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return (f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"')
