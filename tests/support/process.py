"""A real callroom node in a process of its own (``python -m callroom.cli serve``), so that a test can
``kill -9`` it and start another on the same data directory and database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serve(data_dir: Path, port: int, *extra: str, database_url: str | None = None, drain_timeout: float = 0.0,
          ) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """A node serving HTTP on ``port`` until the block ends (SIGINT, then SIGKILL if it hangs); its output
    goes to ``data_dir/node.log``. ``extra``: more ``serve`` options; ``database_url``: another database
    than the SQLite file in ``data_dir``; ``drain_timeout``: how long its calls may go on once it is told to
    stop (none, unless a test is about that). The node runs in a process group (a session) of its own, as
    a service does: ``os.killpg(proc.pid, ...)`` signals it and its media process as a terminal would."""
    database = ["--database-url", database_url] if database_url else []
    cmd = [sys.executable, "-m", "callroom.cli", "--data-dir", str(data_dir), *database, "serve",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
           "--allow-url-network", "127.0.0.0/8",  # the tests' webhook receivers listen on loopback
           "--drain-timeout", str(drain_timeout), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLROOM_")}
    with open(data_dir / "node.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (data_dir / "node.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "node did not come up"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    """``kill -9``: the node gets no chance to flush anything."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
