"""SIP digest authentication (RFC 3261 §22; RFC 2617 and RFC 7616 with MD5 and qop=auth): the server side,
and the client's answer to a challenge (``answer_challenge``, for dialling out through a trunk that asks).
Pure: the time and the request's source address are passed in.

A nonce is ``<issued>:<serial>:<mac>`` base64-encoded, the mac an HMAC (secret) of the issue time, a
serial number and the source IP address it was issued to. Whoever holds the secret can tell, without
shared state, that a nonce is genuine, how old it is, and that it comes back from the address that got
it: a nonce taken from one address is refused from another (a fresh challenge). A nonce older than
``nonce_ttl`` seconds is stale: the challenge is repeated with ``stale=true``, which phones answer without
asking their user again.

What an HMAC cannot tell is whether a nonce was used before. ``NonceCounts`` remembers the nonces
answered here: with qop=auth, a nonce's count (``nc``) must grow from one request to the next (RFC 2617
§3.2.2, RFC 7616 §3.4: the server keeps its own copy of the count; a count seen twice is a replay);
without qop a nonce is good once. A nonce used again is refused with a fresh challenge (``stale=true``
when the answer was otherwise right: the phone simply retries). The table is bounded (see
``NonceCounts``); it is this process's own, so replays are caught per node, not across nodes.

The digest ``uri`` must name the request's Request-URI (RFC 2617 §3.2.2.5, RFC 7616 §3.4.6), compared as
SIP URIs (scheme, user, host, port) or as exact strings; otherwise the answer is refused with 400 Bad
Request, as those sections say, rather than challenged again: right credentials for another URI are a
replay or a broken client, and a new nonce would not help either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import itertools
import re
from collections import OrderedDict
from dataclasses import dataclass

from callroom.errors import SipParseError
from callroom.sip.fields import SipUri
from callroom.sip.message import Headers, SipRequest, SipResponse

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?')
_NC = re.compile(r"[0-9a-fA-F]{8}")
CLOCK_SKEW = 5.0  # a nonce issued this far in the future (another node's clock) is still accepted
DEFAULT_MAX_NONCES = 10_000


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


def _host(host: str) -> str:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()


def same_resource(digest_uri: str, request_uri: SipUri | str) -> bool:
    """Whether the digest ``uri`` names the Request-URI: the same text, or the same scheme, user, host
    and port as SIP URIs (parameters and headers aside)."""
    if digest_uri == str(request_uri):
        return True
    try:
        a = SipUri.parse(digest_uri)
        b = request_uri if isinstance(request_uri, SipUri) else SipUri.parse(request_uri)
    except SipParseError:
        return False
    return (a.scheme, a.user, _host(a.host), a.port) == (b.scheme, b.user, _host(b.host), b.port)


def _source(address: str) -> str:
    """One spelling per IP address (an IPv6 scope id aside)."""
    return _host(address.split("%")[0])


@dataclass(frozen=True, slots=True)
class DigestVerdict:
    ok: bool
    stale: bool = False  # challenge again with stale=true: the credentials were right, the nonce is not
    username: str | None = None
    wrong_uri: bool = False  # right credentials for another Request-URI: refuse with 400


@dataclass(frozen=True, slots=True)
class Nonce:
    issued: int
    serial: int


class NonceCounts:
    """The nonces answered so far (by serial), each with the highest nonce count seen (None: used without
    qop, so used up), in the order of their first use.

    Bounded: an entry goes once its nonce is stale anyway (``ttl`` after issue), and beyond ``capacity``
    entries the oldest is evicted. An evicted nonce must not become usable again, so eviction raises a
    floor: a nonce not in the table whose serial is at or below the highest serial evicted is refused as
    if used (the phone gets a fresh nonce, one more round trip). So a full table costs phones that answer
    slowly an extra challenge, and never lets a request be replayed."""

    def __init__(self, capacity: int = DEFAULT_MAX_NONCES, ttl: float = 300.0) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self.floor = 0  # the highest serial evicted while its nonce was still fresh
        self._seen: OrderedDict[int, tuple[Nonce, int | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, nonce: Nonce, count: int | None, now: float) -> bool:
        """Record a use of ``nonce`` with nonce count ``count`` (None without qop); False if it repeats one."""
        self._expire(now)
        seen = self._seen.get(nonce.serial)
        if seen is None:
            if nonce.serial <= self.floor:
                return False
        else:
            highest = seen[1]
            if count is None or highest is None or count <= highest:
                return False
        self._seen[nonce.serial] = (nonce, count)
        while len(self._seen) > self.capacity:
            _, (evicted, _) = self._seen.popitem(last=False)
            self.floor = max(self.floor, evicted.serial)
        return True

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest, (nonce, _) = next(iter(self._seen.items()))
            if now - nonce.issued <= self.ttl:
                return
            del self._seen[oldest]


class DigestAuth:
    def __init__(self, credentials: dict[str, str], realm: str, secret: bytes, nonce_ttl: float = 300.0,
                 max_nonces: int = DEFAULT_MAX_NONCES) -> None:
        self.credentials = dict(credentials)
        self.realm = realm
        self.secret = secret
        self.nonce_ttl = nonce_ttl
        self.counts = NonceCounts(max_nonces, nonce_ttl)
        self._serials = itertools.count(self.counts.floor + 1)

    def _mac(self, issued: str, serial: str, source: str) -> str:
        return hmac.new(self.secret, f"{issued}:{serial}:{_source(source)}".encode(), hashlib.sha256).hexdigest()[:32]

    def nonce(self, now: float, source: str) -> str:
        """A new nonce for a client at IP address ``source``."""
        issued, serial = str(int(now)), str(next(self._serials))
        return base64.b64encode(f"{issued}:{serial}:{self._mac(issued, serial, source)}".encode()).decode()

    def _read_nonce(self, text: str, source: str) -> Nonce | None:
        """The nonce's issue time and serial, if this secret made it for ``source``."""
        try:
            issued, serial, mac = base64.b64decode(text, validate=True).decode().split(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if not (issued.isascii() and issued.isdigit() and serial.isascii() and serial.isdigit()):
            return None
        if not hmac.compare_digest(mac, self._mac(issued, serial, source)):
            return None
        return Nonce(int(issued), int(serial))

    def challenge(self, now: float, source: str, stale: bool = False) -> str:
        """A ``WWW-Authenticate`` value for a client at IP address ``source``."""
        extra = ", stale=true" if stale else ""
        return f'Digest realm="{self.realm}", nonce="{self.nonce(now, source)}", algorithm=MD5, qop="auth"{extra}'

    def verify(self, method: str, authorization: str | None, now: float, *, request_uri: SipUri | str,
               source: str) -> DigestVerdict:
        """Whether ``authorization`` proves one of the credentials for a request of ``method`` to
        ``request_uri`` from IP address ``source``. A success counts the nonce as used (at that ``nc``)."""
        if not authorization:
            return DigestVerdict(False)
        p = parse_authorization(authorization)
        if p is None or p.get("realm") != self.realm or p.get("algorithm", "MD5").upper() != "MD5":
            return DigestVerdict(False)
        username, nonce_text, uri, response = p.get("username"), p.get("nonce"), p.get("uri"), p.get("response")
        if not (username and nonce_text and uri and response) or username not in self.credentials:
            return DigestVerdict(False)
        nonce = self._read_nonce(nonce_text, source)
        if nonce is None or now - nonce.issued < -CLOCK_SKEW:
            return DigestVerdict(False)
        ha1 = _md5(f"{username}:{self.realm}:{self.credentials[username]}")
        ha2 = _md5(f"{method}:{uri}")
        qop, count = p.get("qop"), None
        if qop:
            nc, cnonce = p.get("nc", ""), p.get("cnonce")
            if qop != "auth" or not _NC.fullmatch(nc) or not cnonce:
                return DigestVerdict(False)
            count = int(nc, 16)
            expected = _md5(f"{ha1}:{nonce_text}:{nc}:{cnonce}:{qop}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{nonce_text}:{ha2}")
        if not hmac.compare_digest(expected, response.lower()):
            return DigestVerdict(False, username=username)
        if not same_resource(uri, request_uri):
            return DigestVerdict(False, username=username, wrong_uri=True)
        if now - nonce.issued > self.nonce_ttl or not self.counts.admit(nonce, count, now):
            return DigestVerdict(False, stale=True, username=username)
        return DigestVerdict(True, username=username)


def answer_challenge_text(challenge: str, username: str, password: str, method: str, uri: str,
                          cnonce: str) -> str | None:
    """The Authorization (or Proxy-Authorization) value answering a server's ``WWW-Authenticate`` (or
    ``Proxy-Authenticate``) ``challenge`` for one request: MD5, with qop=auth when the server offers it,
    without qop when it offers none; None for a challenge this cannot answer (another algorithm, or a qop
    that is not auth)."""
    params = parse_authorization(challenge)
    if params is None or "nonce" not in params or params.get("algorithm", "MD5").upper() != "MD5":
        return None
    realm, nonce = params.get("realm", ""), params["nonce"]
    qops = [q.strip() for q in params["qop"].split(",")] if "qop" in params else []
    if qops and "auth" not in qops:
        return None
    opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
    if qops:
        return client_response(username, password, realm, nonce, method, uri, cnonce=cnonce) + opaque
    ha1 = _md5(f"{username}:{realm}:{password}")
    response = _md5(f"{ha1}:{nonce}:{_md5(f'{method}:{uri}')}")
    return (f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5{opaque}')


def authorized_again(request: SipRequest, challenged: SipResponse, credentials: tuple[str, str], via: str, *,
                     cnonce: str) -> SipRequest | None:
    """``request`` as it goes again after ``challenged`` (its 401 or 407): a new top Via (``via``: a new
    transaction), the next CSeq, and the answer in Authorization or Proxy-Authorization; None when the
    challenge cannot be answered."""
    asked = "WWW-Authenticate" if challenged.status == 401 else "Proxy-Authenticate"
    challenge = challenged.headers.get(asked)
    answer = (answer_challenge_text(challenge, *credentials, request.method, str(request.uri), cnonce=cnonce)
              if challenge else None)  # fmt: skip
    if answer is None:
        return None
    headers = Headers()
    for name, value in request.headers:
        if name == "Via":
            value = via
        elif name == "CSeq":
            value = f"{request.cseq.seq + 1} {request.method}"
        headers.add(name, value)
    headers.add("Authorization" if challenged.status == 401 else "Proxy-Authorization", answer)
    return SipRequest(request.method, request.uri, headers, request.body)


def client_response(username: str, password: str, realm: str, nonce: str, method: str, uri: str,
                    nc: str = "00000001", cnonce: str = "0a4f113b") -> str:
    """What a phone sends (qop=auth): for tests and for dialling out to a server that challenges us."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return (f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"')


@dataclass(frozen=True, slots=True)
class Challenge:
    """A ``WWW-Authenticate`` / ``Proxy-Authenticate`` digest challenge as a client reads it."""

    realm: str
    nonce: str
    qop_auth: bool  # the server offers qop=auth (else: RFC 2069 style, no qop)
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, value: str) -> Challenge | None:
        """The challenge, or None when it is not a digest challenge we can answer (MD5, qop auth or none)."""
        p = parse_authorization(value)
        if p is None or "realm" not in p or "nonce" not in p:
            return None
        if p.get("algorithm", "MD5").upper() != "MD5":
            return None
        qops = {q.strip().lower() for q in p["qop"].split(",")} if "qop" in p else set()
        if qops and "auth" not in qops:
            return None
        return cls(p["realm"], p["nonce"], "auth" in qops, p.get("opaque"), p.get("stale", "").lower() == "true")


def answer_challenge(challenge: Challenge, username: str, password: str, method: str, uri: str, *,
                     cnonce: str, nc: int = 1) -> str:
    """The Authorization (or Proxy-Authorization) value answering ``challenge`` for a request."""
    ha1 = _md5(f"{username}:{challenge.realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    fields = [f'username="{username}"', f'realm="{challenge.realm}"', f'nonce="{challenge.nonce}"', f'uri="{uri}"']
    if challenge.qop_auth:
        count = f"{nc:08x}"
        response = _md5(f"{ha1}:{challenge.nonce}:{count}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "algorithm=MD5", "qop=auth", f"nc={count}", f'cnonce="{cnonce}"']
    else:
        fields += [f'response="{_md5(f"{ha1}:{challenge.nonce}:{ha2}")}"', "algorithm=MD5"]
    if challenge.opaque is not None:
        fields.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(fields)
