"""Capture real SIPp messages into tests/sip/data/ (run once by hand, loopback only).

    .venv/bin/python tests/sip/capture_sipp.py

1. Runs SIPp's built-in ``uac`` scenario against a tiny UDP responder on 127.0.0.1 and keeps the
   INVITE, ACK and BYE that SIPp sent.
2. Runs SIPp's built-in ``uas`` scenario and sends it an INVITE, keeping the 180 and 200 it answered,
   and its 200 to our BYE.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

DATA = Path(__file__).parent / "data"
HOST = "127.0.0.1"


def _reply(request: bytes, status: str, body: bytes = b"", to_tag: str = "") -> bytes:
    head, _, _ = request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    keep = [ln for ln in lines[1:] if re.match(r"(?i)(via|from|to|call-id|cseq):", ln)]
    if to_tag:
        keep = [ln + f";tag={to_tag}" if ln.lower().startswith("to:") else ln for ln in keep]
    extra = [f"Contact: <sip:responder@{HOST}:5070>"]
    if body:
        extra.append("Content-Type: application/sdp")
    out = [f"SIP/2.0 {status}", *keep, *extra, f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(out).encode() + body


SDP = (
    b"v=0\r\no=responder 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def capture_uac() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 5070))
    sock.settimeout(10)
    proc = subprocess.Popen(
        ["sipp", "-sn", "uac", f"{HOST}:5070", "-i", HOST, "-p", "5071", "-m", "1", "-d", "200", "-nostdin"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            data, addr = sock.recvfrom(65535)
            method = data.split(b" ", 1)[0].decode()
            (DATA / f"sipp_uac_{method.lower()}.txt").write_bytes(data)
            if method == "INVITE":
                sock.sendto(_reply(data, "100 Trying"), addr)
                sock.sendto(_reply(data, "180 Ringing", to_tag="resp1"), addr)
                sock.sendto(_reply(data, "200 OK", SDP, to_tag="resp1"), addr)
            elif method == "BYE":
                sock.sendto(_reply(data, "200 OK"), addr)
                break
    finally:
        proc.wait(timeout=10)
        sock.close()


def capture_uas() -> None:
    proc = subprocess.Popen(
        ["sipp", "-sn", "uas", "-i", HOST, "-p", "5072", "-m", "1", "-nostdin"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 5073))
    sock.settimeout(10)
    invite = (DATA / "sipp_uac_invite.txt").read_bytes()
    invite = invite.replace(b":5071", b":5073").replace(b":5070", b":5072")
    try:
        sock.sendto(invite, (HOST, 5072))
        while True:
            data, _ = sock.recvfrom(65535)
            status = data.split(b" ", 2)[1].decode()
            (DATA / f"sipp_uas_{status}.txt").write_bytes(data)
            if status == "200":
                ack = invite.replace(b"INVITE ", b"ACK ", 1).replace(b" INVITE\r\n", b" ACK\r\n")
                to_line = re.search(rb"(?im)^To: .*$", data)
                assert to_line is not None
                ack = re.sub(rb"(?im)^To: .*$", to_line.group(0), ack)
                sock.sendto(ack, (HOST, 5072))
                break
        bye = ack.replace(b"ACK ", b"BYE ", 1).replace(b" ACK\r\n", b" BYE\r\n")
        bye = bye.replace(b"CSeq: 1 BYE", b"CSeq: 2 BYE").replace(b"branch=z9hG4bK-", b"branch=z9hG4bK-bye-")
        sock.sendto(bye, (HOST, 5072))
        data, _ = sock.recvfrom(65535)
        (DATA / "sipp_uas_200_bye.txt").write_bytes(data)
    finally:
        proc.wait(timeout=10)
        sock.close()


if __name__ == "__main__":
    capture_uac()
    capture_uas()
    print(sorted(p.name for p in DATA.glob("sipp_*.txt")))
