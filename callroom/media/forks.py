"""Forks: a leg's audio as RTP to UDP targets, as Telnyx's ``fork_start`` sends it (``rx``: what the far end
says, ``tx``: what it hears; PCMU, one packet per 20 ms, an SSRC of its own per direction).

``ForkTap`` is one fork without I/O: each tick it makes the packets and keeps them in a bounded queue
(``QUEUE_PACKETS``; the oldest are dropped and counted past that) for the media process's UDP adapter
(``aio/media_fork.py``), which sends them off the tick. ``Forks`` runs a node's forks for the engine.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Mapping

import numpy as np

from callroom.media.ports import FRAME_SAMPLES, AudioLeg, Frame
from callroom.model import media as m
from callroom.rtp.g711 import ULAW_ENCODE
from callroom.rtp.sender import RtpSender

log = logging.getLogger(__name__)

QUEUE_PACKETS = 100  # per direction: 2 s of packets not sent yet
PCMU = 0
_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


class ForkTap:
    def __init__(self, op: m.StartFork, rng: random.Random | None = None) -> None:
        self.op = op
        rng = rng or random.Random()
        self.senders = {"rx": RtpSender(rng.getrandbits(32), rng), "tx": RtpSender(rng.getrandbits(32), rng)}
        self.targets = {"rx": op.rx, "tx": op.tx}
        self.queue: deque[tuple[str, bytes]] = deque()
        self.dropped = 0
        self.stopped = False
        self.notify: Callable[[], None] = lambda: None

    def capture(self, heard_from: Frame | None, heard_by: Frame | None) -> None:
        for direction, frame in (("rx", heard_from), ("tx", heard_by)):
            if self.targets[direction] is None:
                continue
            packet = self.senders[direction].packet(_SILENCE if frame is None else frame, PCMU, ULAW_ENCODE, True)
            if packet is None:
                continue
            if len(self.queue) >= 2 * QUEUE_PACKETS:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append((direction, packet))
        self.notify()

    def take(self) -> list[tuple[str, bytes]]:
        out = list(self.queue)
        self.queue.clear()
        return out

    def stop(self) -> None:
        self.stopped = True
        self.notify()


ForkOpener = Callable[[ForkTap], None]


class Forks:
    def __init__(self, legs: Callable[[], Mapping[str, AudioLeg]], opener: ForkOpener | None = None) -> None:
        self.legs = legs
        self.opener = opener
        self.taps: dict[str, ForkTap] = {}  # by call_control_id
        self._open: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.taps)

    def apply(self, op: m.StartFork | m.StopFork) -> None:
        match op:
            case m.StartFork(call_control_id=cid):
                self.stop(cid)
                self.taps[cid] = ForkTap(op)
            case m.StopFork(call_control_id=cid):
                self.stop(cid)

    def stop(self, cid: str) -> None:
        tap = self.taps.pop(cid, None)
        self._open.discard(cid)
        if tap is not None:
            tap.stop()
            if tap.dropped:
                log.info("fork of %s: %d packets dropped (not sent in time)", cid, tap.dropped)

    def after_mix(self, inputs: Mapping[str, Frame | None], outputs: Mapping[str, Frame]) -> None:
        legs = self.legs()
        for cid, tap in list(self.taps.items()):
            if cid not in legs:
                continue
            if cid not in self._open:
                self._open.add(cid)
                if self.opener is None:
                    log.warning("fork of %s: forks are not available here", cid)
                else:
                    self.opener(tap)
            tap.capture(inputs.get(cid), outputs.get(cid))

    def close(self) -> None:
        for cid in list(self.taps):
            self.stop(cid)
