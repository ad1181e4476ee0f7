"""A longer SIP fuzz run against a whole node, and the cost of hostile datagrams: bounded in count and rate,
on loopback only.

Run: .venv/bin/python bench/sip_fuzz.py [--count 20000] [--rate 500] [--seed 19] [--legs 0]

1. Parse cost per datagram, in this process: the sans-I/O endpoint fed each kind of costly datagram (the
   limits refuse the largest unread; the rest are read in full), median microseconds per datagram.
2. A node (SQLite, SIP on a free port, its own media process) receives ``--count`` mutated datagrams from
   ``tests/sip/fuzz.py`` at ``--rate`` per second, while ``--legs`` SIPp-free RTP legs (virtual phones in
   conferences of 5) keep the tick busy. Reported: the tick's lateness during the run, datagrams handled and
   dropped, the media process's sockets and memory before and after, and whether the node still answers
   OPTIONS and the API afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callroom.model.messages import SipConfig
from callroom.sip.ua import SipEndpoint
from tests.sip.fuzz import datagrams, seeds
from tests.support.node import NodeThread
from tests.support.sip_peer import open_fds


def costly() -> dict[str, bytes]:
    invite = seeds("room")[1]  # baresip's INVITE
    head, body = invite.split(b"\r\n\r\n", 1)

    def with_header(extra: bytes, sdp: bytes = body) -> bytes:
        h = re.sub(rb"Content-Length: *\d+", b"Content-Length: %d" % len(sdp), head)
        return h.replace(b"\r\n", b"\r\n" + extra + b"\r\n", 1) + b"\r\n\r\n" + sdp

    m_lines = b"".join(b"m=audio %d RTP/AVP 0\r\n" % (1000 + 2 * i) for i in range(1000))
    return {
        "a normal INVITE": invite,
        "60 kB of 1,300 Via values (refused: too large)": with_header(
            b"Via: " + b", ".join(b"SIP/2.0/UDP 10.0.%d.%d;branch=z9hG4bK%d" % (i // 250, i % 250, i)
                                  for i in range(1300))),
        "115 Record-Route lines (read in full)": with_header(
            b"\r\n".join(b"Record-Route: <sip:10.0.0.%d;lr>" % i for i in range(115))),
        "15 kB header (read in full)": with_header(b"X-Junk: " + b"a" * 15000),
        "1,000 m= lines (refused: 488)": with_header(b"X-A: b", body.split(b"m=")[0] + m_lines),
    }


def parse_costs() -> dict[str, float]:
    ep = SipEndpoint(("127.0.0.1", 5060))
    out = {}
    for name, data in costly().items():
        times = []
        for i in range(300):
            one = data.replace(b"Call-ID: ", b"Call-ID: %d" % i, 1)
            one = one.replace(b"branch=z9hG4bK", b"branch=z9hG4bK%d" % i, 1)
            t0 = time.perf_counter()
            ep.receive_datagram(one, ("127.0.0.1", 5999), 0.0)
            ep.datagrams_to_send(0.0)
            while ep.next_event() is not None:
                pass
            times.append(time.perf_counter() - t0)
        times.sort()
        out[name] = round(times[len(times) // 2] * 1e6, 1)
    return out


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def options_answered(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(2)
        a = s.getsockname()
        s.sendto((f"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{a[1]};branch=z9hG4bKok\r\n"
                  "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: ok-1\r\nCSeq: 1 OPTIONS\r\n"
                  "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", port))  # fmt: skip
        try:
            return s.recv(4096).startswith(b"SIP/2.0 200")
        except TimeoutError:
            return False


def node_run(count: int, rate: float, seed: int, legs: int, settle: float) -> dict[str, object]:
    data_dir = Path(tempfile.mkdtemp(prefix="callroom-fuzz-"))
    node = NodeThread(f"sqlite:///{data_dir / 'c.db'}", data_dir, sip=SipConfig(port=0), ring_timeout_secs=5)
    logging.getLogger("callroom.webhooks").setLevel(logging.ERROR)  # the bench's webhooks go nowhere
    try:
        if legs:  # virtual phones in conferences of 5: a tick with work in it
            import telnyx

            key = node.new_key("fuzz")
            client = telnyx.Telnyx(api_key=key, base_url=node.base_url, max_retries=0)
            app = client.call_control_applications.create(application_name="fuzz",
                                                          webhook_event_url="http://127.0.0.1:9/")
            assert app.data is not None
            cids = []
            for _ in range(legs):
                resp = client.calls.dial(connection_id=app.data.id, from_="+1555",
                                         to="virtual:p;answer_after=0;tone=440")
                assert resp.data is not None
                cids.append(resp.data.call_control_id)
            time.sleep(1.5)
            conference = ""
            for i, cid in enumerate(cids):
                if i % 5 == 0:
                    made = client.conferences.create(call_control_id=cid, name=f"c{i // 5}")
                    assert made.data is not None
                    conference = made.data.id
                else:
                    client.conferences.actions.join(conference, call_control_id=cid)
        pid = node.media_pid
        time.sleep(1.0)
        fds, rss = open_fds(pid), rss_kb(pid)
        node.media_stats(reset=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        started = time.monotonic()
        for i, data in enumerate(datagrams(seed, count, "room")):
            with contextlib.suppress(BlockingIOError):
                sock.sendto(data[:65000], ("127.0.0.1", node.sip_port))
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recv(65535)
            pause = started + (i + 1) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        during = node.media_stats()
        sock.close()
        time.sleep(settle)  # the refused INVITEs' transactions wait 32 s (timer H) for an ACK that never comes
        after = node.media_stats()
        return {
            "datagrams": count, "rate_per_s": rate, "seconds": round(time.monotonic() - started, 1), "legs": legs,
            "tick_during": during["tick"], "sip_during": during["sip"], "sip_after": after["sip"],
            "fds_before": fds, "fds_after": open_fds(pid), "rss_kb_before": rss, "rss_kb_after": rss_kb(pid),
            "options_answered_after": options_answered(node.sip_port),
        }
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--legs", type=int, default=0)
    parser.add_argument("--settle", type=float, default=40.0, help="seconds to wait before the figures after")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    node = node_run(args.count, args.rate, args.seed, args.legs, args.settle)
    result = {"parse_us_median": parse_costs(), "node": node}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
