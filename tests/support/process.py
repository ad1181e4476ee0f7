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
    argv = ["--data-dir", str(data_dir), *database, "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--allow-url-network", "127.0.0.0/8",  # the tests' webhook receivers
            "--drain-timeout", str(drain_timeout), *extra]  # listen on loopback
    with running(argv, port, data_dir / "node.log") as proc:
        yield proc


@contextmanager
def running(argv: list[str], port: int, log_path: Path, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """``python -m callroom.cli ARGV`` (a node), once it answers on ``port``, until the block ends; its output
    goes to ``log_path``, its environment is ``env`` (default ``cli_env()``). It runs in a process group (a
    session) of its own, as a service does: ``os.killpg(proc.pid, ...)`` signals it and its media process as
    a terminal would."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "callroom.cli", *argv], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env=env if env is not None else cli_env(),
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log_path.read_text()
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


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment less every ``CALLROOM_*`` variable, plus ``extra``; this checkout's callroom
    comes first on the path, whatever the working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLROOM_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, **extra}


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``python -m callroom.cli ARGS`` to its end, its output captured (``env``: default ``cli_env()``)."""
    return subprocess.run([sys.executable, "-m", "callroom.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env if env is not None else cli_env())


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    """``kill -9``: the node gets no chance to flush anything."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
