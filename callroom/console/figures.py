"""The node's operations figures: sampled once a second for the console's charts, rendered as Prometheus
text for ``/metrics``.

They come from three places: the store (this node's live calls by state, the conferences it mixes,
callers waiting in queues), the media process (legs, tick lateness, SIP responses by code, who has the
floor: its ``MediaFigures`` message, twice a second over the pipe) and this process (calls created, the
webhook backlog, open consoles).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from callroom.console.hub import ConsoleHub
from callroom.endpoints.media_process import MediaProcess
from callroom.model.messages import MediaFigures
from callroom.store import cooperative
from callroom.store import figures as store_figures
from callroom.store.engine import Store
from callroom.webhooks.dispatcher import Dispatcher

log = logging.getLogger(__name__)

HISTORY = 120  # samples kept for the console's charts (two minutes)
SAMPLE_SECS = 1.0


class OperationsFigures:
    """Samples the figures and keeps the last ``HISTORY`` samples; ``start``/``stop`` own its task."""

    def __init__(self, store: Store, node_id: str, media: MediaProcess, hub: ConsoleHub,
                 dispatcher: Callable[[], Dispatcher | None], *, cooperative: bool = False,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self.node_id = node_id
        self.media = media
        self.hub = hub
        self.dispatcher = dispatcher
        self.cooperative = cooperative
        self.clock = clock
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.counts = store_figures.Counts()
        self._accounts: dict[str, str] = {}  # conference -> account, as looked up for the floors
        self._last: tuple[float, int] | None = None  # (time, calls created) of the last sample
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.media.on_figures = lambda _figures: self._wake.set()
        self.hub.wake = self._wake.set
        self._task = asyncio.create_task(self._run(), name="operations-figures")

    async def stop(self) -> None:
        self.media.on_figures = lambda _figures: None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        next_sample = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SAMPLE_SECS)
            self._wake.clear()
            try:
                await self._floors()
                now = self.clock()
                if now >= next_sample:
                    next_sample = now + SAMPLE_SECS
                    self.counts = await cooperative.run_if(self.cooperative, self._counts)
                    sample = self.sample(now)
                    self.history.append(sample)
                    self.hub.broadcast("figures", sample)
            except Exception:
                log.exception("operations figures failed")

    def _counts(self) -> store_figures.Counts:
        with self.store.transaction(read_only=True) as tx:
            return store_figures.counts(tx, self.node_id)

    async def _floors(self) -> None:
        """Tell consoles who has the floor, and which conferences changed without a webhook."""
        media = self.media.figures
        floors = media.floors if media is not None else {}
        unknown = [c for c in (*floors, *self.hub.touched) if c not in self._accounts]
        if unknown:
            self._accounts.update(await cooperative.run_if(self.cooperative, self._conference_accounts, unknown))
        if len(self._accounts) > 10_000:  # conferences come and go: forget those nobody talks in
            for conf in [c for c in self._accounts if c not in floors]:
                del self._accounts[conf]
        self.hub.floors(floors, self._accounts)
        self.hub.tell_touched(self._accounts)

    def _conference_accounts(self, ids: list[str]) -> dict[str, str]:
        with self.store.transaction(read_only=True) as tx:
            return store_figures.conference_accounts(tx, ids)

    def sample(self, now: float) -> dict[str, Any]:
        """The figures now (calls per second since the last sample)."""
        created = self.hub.calls_created
        rate = 0.0
        if self._last is not None and now > self._last[0]:
            rate = (created - self._last[1]) / (now - self._last[0])
        self._last = (now, created)
        media = self.media.figures
        dispatcher = self.dispatcher()
        return {
            "at": now,
            "calls": sum(self.counts.calls_by_state.values()),
            "calls_by_state": self.counts.calls_by_state,
            "legs": media.legs if media is not None else 0,
            "conferences": self.counts.conferences,
            "queued": self.counts.queued,
            "calls_per_second": round(rate, 3),
            "sip_responses": _merged(media) if media is not None else {},
            "tick_late_p99_ms": round(media.late_ms[1], 3) if media is not None else 0.0,
            "tick_late_max_ms": round(media.late_ms[2], 3) if media is not None else 0.0,
            "webhook_backlog": dispatcher.queue_depth if dispatcher is not None else 0,
            "webhook_failed": dispatcher.failed if dispatcher is not None else 0,
            "consoles": self.hub.subscribers,
        }

    def render(self) -> str:
        """Prometheus text (after the webhook dispatcher's own)."""
        media = self.media.figures
        dispatcher = self.dispatcher()
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, values: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {value:g}" for labels, value in values)

        states = self.counts.calls_by_state
        metric("callroom_calls_active", "gauge", "This node's calls that have not ended, by state.",
               [(f'{{state="{s}"}}', n) for s, n in sorted(states.items())] or [('{state="parked"}', 0)])
        metric("callroom_calls_created_total", "counter", "Calls created on this node (call.initiated).",
               [("", self.hub.calls_created)])
        metric("callroom_media_legs", "gauge", "Audio legs in this node's media engine.",
               [("", media.legs if media else 0)])
        metric("callroom_conferences_active", "gauge", "Conferences not completed whose home is this node.",
               [("", self.counts.conferences)])
        metric("callroom_media_conferences_mixed", "gauge", "Conferences this node's mixer mixes.",
               [("", media.conferences if media else 0)])
        metric("callroom_queued_callers", "gauge", "Callers waiting in queues (every node's).",
               [("", self.counts.queued)])
        for direction, attr in (("sent", "sip_sent"), ("received", "sip_received")):
            codes: dict[int, int] = getattr(media, attr) if media else {}
            metric(f"callroom_sip_responses_{direction}_total", "counter", f"SIP responses {direction}, by code.",
                   [(f'{{code="{c}"}}', n) for c, n in sorted(codes.items())])
        metric("callroom_media_ticks_total", "counter", "20 ms media ticks run.", [("", media.ticks if media else 0)])
        late = media.late_ms if media else (0.0, 0.0, 0.0)
        metric("callroom_media_tick_lateness_seconds", "gauge",
               "How late the media ticks of the last half second started: p50, p99 and max.",
               [(f'{{stat="{stat}"}}', ms / 1000) for stat, ms in zip(("p50", "p99", "max"), late, strict=True)])
        metric("callroom_media_streams", "gauge", "Media streams (WebSockets) open or opening.",
               [("", media.streams if media else 0)])
        metric("callroom_media_stream_frames_dropped_total", "counter",
               "Audio messages of media streams dropped because their server did not take them in time.",
               [("", media.stream_frames_dropped if media else 0)])
        metric("callroom_webhook_backlog", "gauge", "Webhook events waiting for delivery (including in flight).",
               [("", dispatcher.queue_depth if dispatcher else 0)])
        metric("callroom_console_subscribers", "gauge", "Open consoles (push channels).",
               [("", self.hub.subscribers)])
        metric("callroom_console_events_total", "counter", "Account events pushed to open consoles.",
               [("", self.hub.events_published)])
        return "\n".join(out) + "\n"


def _merged(media: MediaFigures) -> dict[str, int]:
    """SIP responses by code, sent and received together (the console's chart)."""
    merged: dict[str, int] = {}
    for codes in (media.sip_sent, media.sip_received):
        for code, n in codes.items():
            merged[str(code)] = merged.get(str(code), 0) + n
    return merged
