"""Overload control: whether a node takes one more call now, or refuses it at once.

A node admits new calls (a SIP INVITE, a ``POST /calls``) up to its ``Limits``: calls up, new calls per second,
the lateness of the media tick, and the set-up backlog (calls admitted that the control plane has not taken
yet). Past any of them a call is refused straight away with a ``Refused`` saying which limit and when to try
again (SIP 503 with Retry-After, HTTP 503 / 90115), so a proxy tries a node with room while the calls already
admitted keep their quality; as soon as the figures fall back under the limits, calls are admitted again.

Pure: no clock, no sockets. The caller passes ``now`` (seconds, any monotonic clock) and the current
``Load``; the only state kept here is the per-second budget (a token bucket) and the counters.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass

# Defaults of ``callroom serve`` (see the README's Performance section for the measurements behind them).
DEFAULT_MAX_CALLS = 1000
DEFAULT_MAX_CALLS_PER_SECOND = 60.0
DEFAULT_MAX_TICK_LATENESS_MS = 40.0
DEFAULT_MAX_SETUP_BACKLOG = 20

# Retry-After (seconds) by reason: a call's end cannot be foreseen; the media tick and the control plane's
# backlog catch up within a second or two; the per-second budget says exactly when it has room.
RETRY_AFTER_CALLS = 5
RETRY_AFTER_TICK = 2
RETRY_AFTER_BACKLOG = 1


class Reason(enum.StrEnum):
    """Which limit refused a call (the counters and the metrics are by reason)."""

    CALLS = "calls"
    RATE = "rate"
    TICK_LATENESS = "tick_lateness"
    SETUP_BACKLOG = "setup_backlog"


@dataclass(frozen=True, slots=True)
class Limits:
    """A node's limits; 0 disables a limit (``Limits()`` admits everything)."""

    max_calls: int = 0
    max_calls_per_second: float = 0.0
    max_tick_lateness_ms: float = 0.0
    max_setup_backlog: int = 0

    @classmethod
    def defaults(cls) -> Limits:
        """What ``callroom serve`` runs with unless told otherwise."""
        return cls(DEFAULT_MAX_CALLS, DEFAULT_MAX_CALLS_PER_SECOND, DEFAULT_MAX_TICK_LATENESS_MS,
                   DEFAULT_MAX_SETUP_BACKLOG)  # fmt: skip

    def describe(self) -> str:
        parts = [f"{self.max_calls} calls" if self.max_calls else "",
                 f"{self.max_calls_per_second:g} new calls/s" if self.max_calls_per_second else "",
                 f"media tick {self.max_tick_lateness_ms:g} ms late" if self.max_tick_lateness_ms else "",
                 f"{self.max_setup_backlog} calls in set-up" if self.max_setup_backlog else ""]  # fmt: skip
        text = ", ".join(p for p in parts if p)
        return text or "no limits"


@dataclass(frozen=True, slots=True)
class Load:
    """A node's figures when a new call arrives."""

    calls: int  # calls up (ringing or answered)
    setup_backlog: int = 0  # calls admitted that the control plane has not taken (or refused) yet
    tick_late_ms: float = 0.0  # how late the media tick has been lately


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    retry_after: int  # whole seconds, as SIP's and HTTP's Retry-After take them
    detail: str


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` kept: one token per call admitted."""

    __slots__ = ("at", "capacity", "level", "rate")

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.level = capacity
        self.at: float | None = None

    def _refill(self, now: float) -> None:
        if self.at is not None and now > self.at:
            self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        if self.at is None or now > self.at:
            self.at = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.level

    def take(self, now: float) -> None:
        """Take one token, even past empty (a call admitted elsewhere still counts: the debt is paid first)."""
        self._refill(now)
        self.level = max(self.level - 1.0, -self.capacity)

    def wait(self, now: float) -> float:
        """Seconds until one token is there."""
        self._refill(now)
        return max(0.0, (1.0 - self.level) / self.rate)

    def sync(self, level: float, at: float) -> None:
        """Take another holder's view of the same budget (its level at its ``at``, on the same clock)."""
        self.level, self.at = min(level, self.capacity), at


class Admission:
    """The decision, with the per-second budget and counters of what was admitted and refused."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        rate = limits.max_calls_per_second
        # A second's worth of calls may come at once; past that, calls are admitted at ``rate``.
        self.bucket = TokenBucket(rate, max(1.0, rate)) if rate > 0 else None
        self.admitted = 0
        self.refused: Counter[Reason] = Counter()

    def check(self, now: float, load: Load) -> Refused | None:
        """Whether a call would be refused now, without admitting or counting it."""
        lim = self.limits
        if lim.max_calls and load.calls >= lim.max_calls:
            return Refused(Reason.CALLS, RETRY_AFTER_CALLS,
                           f"the node has {load.calls} calls up, its limit (max calls {lim.max_calls})")
        if lim.max_tick_lateness_ms and load.tick_late_ms > lim.max_tick_lateness_ms:
            return Refused(Reason.TICK_LATENESS, RETRY_AFTER_TICK,
                           f"the node's media tick runs {load.tick_late_ms:.0f} ms late "
                           f"(max tick lateness {lim.max_tick_lateness_ms:g} ms)")
        if lim.max_setup_backlog and load.setup_backlog >= lim.max_setup_backlog:
            return Refused(Reason.SETUP_BACKLOG, RETRY_AFTER_BACKLOG,
                           f"the node has {load.setup_backlog} calls waiting to be set up "
                           f"(max setup backlog {lim.max_setup_backlog})")
        if self.bucket is not None and self.bucket.available(now) < 1.0 - 1e-9:  # (times are floats)
            wait = self.bucket.wait(now)
            return Refused(Reason.RATE, max(1, math.ceil(wait)),
                           f"the node takes at most {lim.max_calls_per_second:g} new calls per second")
        return None

    def decide(self, now: float, load: Load) -> Refused | None:
        """None: the call is admitted (and takes its share of the per-second budget); else why not."""
        refused = self.check(now, load)
        if refused is not None:
            self.refused[refused.reason] += 1
            return refused
        self.charge(now)
        self.admitted += 1
        return None

    def charge(self, now: float) -> None:
        """A new call that was not asked about (an outbound call admitted by the API process) still takes
        from the per-second budget."""
        if self.bucket is not None:
            self.bucket.take(now)

    def budget(self, now: float) -> float:
        """The per-second budget left now (``inf`` without a per-second limit)."""
        return math.inf if self.bucket is None else self.bucket.available(now)


class ReportedAdmission:
    """Admission decided with another process's figures: the API process admits ``POST /calls`` with what
    the media process last reported (its load and its per-second budget, a tick or a few old), counting the
    calls it admitted since as calls up, until the next report includes them."""

    def __init__(self, limits: Limits) -> None:
        self.admission = Admission(limits)
        self.load = Load(0)
        self.since = 0  # calls admitted here since the last report

    def report(self, load: Load, budget: float, at: float) -> None:
        """The other process's figures: its load, and its per-second budget ``budget`` at ``at``."""
        self.load = load
        self.since = 0
        if self.admission.bucket is not None and math.isfinite(budget):
            self.admission.bucket.sync(budget, at)

    def decide(self, now: float) -> Refused | None:
        load = Load(self.load.calls + self.since, self.load.setup_backlog, self.load.tick_late_ms)
        refused = self.admission.decide(now, load)
        if refused is None:
            self.since += 1
        return refused
