"""``callroom serve`` fails fast: whatever stops a node from serving (a taken SIP or HTTP port, a database it
cannot reach, a missing tool) is said in one line, without a traceback, and the process exits non-zero within
seconds, before anything says that it listens. Real processes and sockets."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.node import free_port
from tests.support.process import cli_env, run_cli

FAIL_WITHIN_SECS = 5.0  # the bound issue 16 asks for (a taken SIP port used to take 62 s)


def _failed_start(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    """Start a node that must not start; its one line of complaint."""
    started = time.monotonic()
    try:
        out = run_cli("--data-dir", str(data_dir), "serve", "--host", "127.0.0.1", "--log-level", "warning", *extra,
                      env=env, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the node neither started nor gave up")
    elapsed = time.monotonic() - started
    assert out.returncode != 0, out.stdout
    assert "listening" not in out.stdout and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert elapsed < FAIL_WITHIN_SECS, f"gave up after {elapsed:.1f} s: {lines[0]}"
    return lines[0]


@pytest.fixture
def taken_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def taken_tcp() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_sip_port(tmp_path: Path, taken_udp: int) -> None:
    line = _failed_start(tmp_path, "--port", str(free_port()), "--sip-port", str(taken_udp))
    assert line.startswith(f"callroom serve: cannot listen for SIP on udp 127.0.0.1:{taken_udp}: "), line


def test_a_taken_http_port(tmp_path: Path, taken_tcp: int) -> None:
    line = _failed_start(tmp_path, "--port", str(taken_tcp), "--sip-port", "0")
    assert line == f"callroom serve: cannot listen for HTTP on 127.0.0.1:{taken_tcp}: Address already in use"


def test_an_unreachable_database(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    line = _failed_start(tmp_path, "--port", str(free_port()), "--sip-port", "0",
                         "--database-url", f"postgresql://postgres@127.0.0.1:{port}/callroom")
    assert line.startswith(f"callroom serve: cannot reach the database postgresql+psycopg://postgres@127.0.0.1:{port}/"
                           "callroom: "), line
    assert "Connection refused" in line


def test_a_missing_tool(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    line = _failed_start(tmp_path, "--port", str(free_port()), "--sip-port", "0", env=cli_env(PATH=str(empty)))
    assert line.startswith("callroom serve: espeak-ng is not installed or not on PATH"), line
