"""SIPp as a test's SIP peer: found on the PATH (a loud failure in CI when it is missing, a skip elsewhere),
run in the background, and waited for with its output and its error log kept for assertions."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("sipp is not installed (apt-get install sip-tester)", pytrace=False)
        pytest.skip("sipp is not installed (apt-get install sip-tester)")
    return path


class SippProcess:
    """``sipp <args>`` started in ``cwd``; ``wait`` returns its exit status and the tail of what it said."""

    wait_secs = 40.0

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sipp(), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.cwd = cwd

    def wait(self, timeout: float | None = None) -> tuple[int, str]:
        try:
            out, _ = self.proc.communicate(timeout=self.wait_secs if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        errors = "".join(p.read_text(errors="replace") for p in self.cwd.glob("*_errors.log"))
        return self.proc.returncode, out.decode(errors="replace")[-3000:] + errors
