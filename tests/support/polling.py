"""Waiting for what a node does at its own pace (audio changes apply at the next tick and need fresh audio to
show; a copy is removed after a message on the bus): poll until a check passes."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(check: Callable[[], None], timeout: float = 5.0, interval: float = 0.2) -> None:
    """Call ``check`` until it raises no ``AssertionError``; the last one is raised after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)
