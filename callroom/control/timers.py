"""Firing a timer the store kept (dial timeout, call time limit, unanswered call, a transfer's leg whose call
ended, queue wait, conference expiry): claimed by one command, so that it fires once even with several workers."""

from __future__ import annotations

import logging

from callroom.control import calls, conferences, queues
from callroom.control.legs import CALL_TIMERS as CANCELLED_WITH_THE_CALL
from callroom.control.world import Steps, World
from callroom.model import reads as r
from callroom.model.records import Timer

log = logging.getLogger(__name__)

# A call's timers: those cancelled when it ends, and "transfer_cancel" (due at once: a transfer's leg whose
# call ended; left to fire as nothing when the leg ended first, which saves every hangup a statement).
CALL_TIMERS = (*CANCELLED_WITH_THE_CALL, "transfer_cancel")


def fire(w: World, timer: Timer) -> Steps[None]:
    claim = r.ClaimTimer.of(timer)
    yield from w.load(claim)
    if not w.result(claim):
        return  # another worker took it, or it was cancelled meanwhile
    if timer.kind in CALL_TIMERS:
        yield from calls.on_timer(w, timer.kind, timer.ref)
    elif timer.kind == "queue_timeout":
        yield from queues.on_timeout(w, timer.ref)
    elif timer.kind == "conference_expiry":
        yield from conferences.on_expiry(w, timer.ref)
    else:
        log.warning("unknown timer kind %r", timer.kind)
