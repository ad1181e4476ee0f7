"""Mutated SIP datagrams from captured messages, reproducible from a seed: what a scanner, a fuzzer or a
badly broken phone sends. Used by the node fuzz test (a few thousand datagrams) and ``bench/sip_fuzz.py``
(longer runs)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

DATA = Path(__file__).parent / "data"

REGISTER = (b"REGISTER sip:192.168.1.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKreg1;rport\r\n"
            b"Max-Forwards: 70\r\nTo: <sip:alice@192.168.1.10>\r\nFrom: <sip:alice@192.168.1.10>;tag=r1\r\n"
            b"Call-ID: reg-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@192.168.1.20:5062>\r\nExpires: 3600\r\n"
            b"Content-Length: 0\r\n\r\n")  # fmt: skip

# Values that have hurt SIP stacks: names where addresses belong, the other IP family, huge numbers,
# separators, quotes and brackets left open, very long tokens.
HOSTILE = [
    b"evil.invalid", b"[::1]", b"::1", b"localhost", b"0.0.0.0", b"255.255.255.255", b"999.1.1.1", b"-1",
    b"99999999999999999999", b"4294967296", b"65536", b"0", b";received=evil.invalid", b";rport=0",
    b";maddr=evil.invalid", b'"', b"<", b">", b",", b";", b"%00", b"\x00", b"\xff\xfe", b"\r\n ", b"\t",
    b"sip:", b"sips:x@y", b"tel:+1", b"A" * 300, b"," * 200, b";x" * 300,
]  # fmt: skip
SDP_HOSTS = [b"evil.invalid", b"localhost", b"0.0.0.0", b"::1", b"127.0.0.1", b"999.999.0.1", b"a" * 100]


def seeds(user: str) -> list[bytes]:
    """The captured requests (and a REGISTER), their Request-URI's user set to ``user`` so that INVITEs
    reach an application."""
    out = []
    for path in sorted(DATA.glob("*.txt")):
        data = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if data.startswith(b"SIP/2.0"):
            continue  # responses: nothing of ours waits for them
        out.append(re.sub(rb"^(\w+) sip:[^@\s]+@", rb"\1 sip:" + user.encode() + rb"@", data, count=1))
    out.append(REGISTER)
    return out


def _fresh_ids(data: bytes, rng: random.Random) -> bytes:
    """New branch and Call-ID, so each datagram is a new transaction rather than a retransmission."""
    n = rng.getrandbits(48)
    data = re.sub(rb"branch=z9hG4bK[\w.-]*", b"branch=z9hG4bKf%x" % n, data, count=1)
    return re.sub(rb"(?im)^(Call-ID|i)\s*:\s*\S+", rb"Call-ID: fz%x" % n, data, count=1)


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def flip(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def insert(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice(HOSTILE) + data[i:]


def delete(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + data[i + rng.randint(1, 64):]


def repeat_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    head = lines[: lines.index(b"")] if b"" in lines else lines
    if len(head) < 2:
        return data
    i = rng.randrange(1, len(head))
    lines[i:i] = [lines[i]] * rng.choice([2, 10, 150, 600])
    return b"\r\n".join(lines)


def hostile_value(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    head = lines[: lines.index(b"")] if b"" in lines else lines
    if len(head) < 2:
        return data
    i = rng.randrange(1, len(head))
    name = lines[i].split(b":", 1)[0]
    value = rng.choice(HOSTILE)
    lines[i] = name + b": " + (value if rng.random() < 0.5 else lines[i].split(b":", 1)[-1] + value)
    return b"\r\n".join(lines)


def huge_header(data: bytes, rng: random.Random) -> bytes:
    size = rng.choice([1000, 8000, 17000, 64000])
    return data.replace(b"\r\n", b"\r\nX-Junk: " + b"x" * size + b"\r\n", 1)


def many_vias(data: bytes, rng: random.Random) -> bytes:
    vias = b", ".join(b"SIP/2.0/UDP 10.0.%d.%d:5060;branch=z9hG4bK%d" % (i // 250, i % 250, i)
                      for i in range(rng.choice([20, 130, 1500])))  # fmt: skip
    return data.replace(b"\r\n", b"\r\nVia: " + vias + b"\r\n", 1)


def content_length(data: bytes, rng: random.Random) -> bytes:
    value = rng.choice([b"0", b"1", b"-5", b"999999", b"abc", b"4294967296", b"10, 20"])
    return re.sub(rb"(?im)^(Content-Length|l)\s*:.*$", b"Content-Length: " + value, data, count=1)


def sdp_host(data: bytes, rng: random.Random) -> bytes:
    host = rng.choice(SDP_HOSTS)
    kind = b"IP6" if b":" in host else b"IP4"
    return re.sub(rb"c=IN IP[46] \S+", b"c=IN " + kind + b" " + host, data)


def many_media(data: bytes, rng: random.Random) -> bytes:
    found = re.search(rb"m=audio[^\r]*\r\n", data)
    if found is None:
        return data
    extra = found.group(0) * rng.choice([2, 9, 300])
    return data.replace(found.group(0), extra, 1)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def method(data: bytes, rng: random.Random) -> bytes:
    name = rng.choice([b"INVITE", b"ACK", b"BYE", b"CANCEL", b"OPTIONS", b"REGISTER", b"INFO", b"PRACK",
                       b"FOO", b"invite", b""])  # fmt: skip
    return re.sub(rb"^\w*", name, data, count=1)


MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    flip, insert, delete, repeat_line, hostile_value, huge_header, many_vias, content_length, sdp_host,
    many_media, truncate, method,
]  # fmt: skip


def datagrams(seed: int, count: int, user: str) -> Iterator[bytes]:
    """``count`` datagrams: each a captured request with fresh ids and one to three mutations."""
    rng = random.Random(seed)
    base = seeds(user)
    for _ in range(count):
        data = _fresh_ids(rng.choice(base), rng)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data = rng.choice(MUTATIONS)(data, rng)
        yield data
