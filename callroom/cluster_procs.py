"""The processes of a cluster on this machine (``devcluster``): each started in a session of its own, found
and stopped by its process group, waited for until it answers (HTTP for a node, SIP OPTIONS for Kamailio).

Imports nothing of callroom, like ``devcluster``: the nodes are separate processes, started as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class ClusterError(Exception):
    """Something ``up`` or ``down`` cannot do; the message says what and what to do about it."""



def spawn(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """A process in a session of its own (its pid is its process group's id), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def processes() -> Iterator[tuple[int, str, list[str]]]:
    """Every process on this machine as ``/proc/PID/stat`` has it: (pid, command name, the fields after the
    name: state, ppid, pgrp, ..., utime at [11], stime at [12]). A process gone meanwhile is passed over."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (zombies, dead but not yet collected, are not counted:
    a process whose parent went away waits for init to collect it)."""
    return [pid for pid, _, fields in processes() if int(fields[2]) == pgid and fields[0] not in ("Z", "X")]


def group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (when 'up' stops what it started); otherwise nothing."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def ours(pid: int, marker: str) -> bool:
    """Whether ``pid`` still runs a command naming ``marker`` (our run directory): a pid is reused in time."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def stop_group(pgid: int, marker: str, grace: float = 10.0) -> None:
    """Stop the session ``up`` started as ``pgid``: SIGTERM to its leader (a node stops its media process
    itself, Kamailio its children), then SIGKILL to whatever of the group is left after ``grace`` seconds
    (at once when the leader is already dead, e.g. killed with -9). A leader whose pid now runs something
    else (it does not name ``marker``) is left alone."""
    if not group_alive(pgid):
        return
    if running(pgid):
        if not ours(pgid, marker):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            reap(pgid)
            if not group_alive(pgid):
                return
            time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and group_alive(pgid):
        reap(pgid)
        time.sleep(0.05)


def http_json(url: str, key: str | None = None, timeout: float = 2.0) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def wait_healthy(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ClusterError(f"a node exited with status {proc.returncode} while starting ({log}):\n{tail}")
        try:
            status, _ = http_json(base.removesuffix("/v2") + "/health", timeout=1.0)
            if status == 200:
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"a node did not answer {base} within {timeout:.0f} s (log: {log})")
        time.sleep(0.1)


def sip_options(host: str, port: int, timeout: float = 1.0) -> int | None:
    """Send one OPTIONS to ``host:port`` over UDP; the status of the answer, or None if none came."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        s.settimeout(timeout)
        lhost, lport = s.getsockname()[:2]
        tag = os.urandom(6).hex()
        msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {lhost}:{lport};branch=z9hG4bK{tag};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:cluster@{lhost}>;tag={tag}\r\nTo: <sip:{host}:{port}>\r\n"
               f"Call-ID: {tag}@{lhost}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), (host, port))
        try:
            data = s.recv(65535)
        except OSError:
            return None
    m = re.match(rb"SIP/2\.0 (\d{3}) ", data)
    return int(m.group(1)) if m else None


def wait_proxy(proc: subprocess.Popen[bytes], host: str, port: int, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ClusterError(f"kamailio exited with status {proc.returncode} while starting ({log}):\n{tail}")
        if sip_options(host, port, timeout=0.3) == 200:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"kamailio did not answer OPTIONS on {host}:{port} within {timeout:.0f} s ({log})")
