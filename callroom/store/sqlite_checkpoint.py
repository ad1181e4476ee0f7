"""Copying a SQLite file's write-ahead log back into the database, away from the transactions.

In WAL mode SQLite copies the log into the database file ("checkpoints") once the log has grown by
``wal_autocheckpoint`` pages, inside whichever ``COMMIT`` crossed that mark: that commit then reads the
log, writes the pages and waits for ``fdatasync``. Under a steady API load this was half of what
``COMMIT`` cost the event loop's thread, and a pause of its own. Here one background thread checkpoints
a few times a second instead (``PASSIVE``: it never waits for, nor blocks, a reader or the writer), and
the transactions' connections keep only a far-off automatic checkpoint as a backstop, should this
thread fall behind or stop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

# Pages of log after which a transaction's own COMMIT checkpoints (SQLite's default is 1,000 pages).
BACKSTOP_PAGES = 20_000
# How often the background thread checkpoints.
INTERVAL_S = 0.2


class Checkpointer:
    """One daemon thread checkpointing one SQLite file until ``stop()``."""

    def __init__(self, path: str, *, interval_s: float = INTERVAL_S) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self.passes = 0  # checkpoints that ran (for tests and diagnostics)
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:  # pragma: no cover - the file went away; the backstop still checkpoints
            log.exception("SQLite checkpoints: cannot open %s", self._path)
            return
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            while not self._stopped.wait(self._interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.passes += 1
                except sqlite3.Error:  # pragma: no cover - e.g. busy for longer than the timeout
                    log.warning("SQLite checkpoint of %s failed; trying again", self._path, exc_info=True)
        finally:
            conn.close()
