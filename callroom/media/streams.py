"""Media streams inside the engine: a leg's audio to a WebSocket server, and a server's audio into the call.

``StreamTap`` is one stream without I/O: each tick it takes the frames of its leg's tracks and queues them
as Telnyx ``media`` messages (``stream_wire.py``); what the server sends back (``media``, ``mark``,
``clear``) it is handed as parsed messages (MP3 files decoded by the adapter) and plays out 20 ms per
tick (the tap is itself a mixer source, attached with its first audio). The WebSocket itself is an
adapter in the media process (``aio/media_stream.py``) that takes what is queued and hands over what
arrives, on the same loop but never inside a tick: the tick only appends to a bounded queue and never
waits. A server that takes the audio too slowly loses the oldest frames
(``QUEUE_FRAMES``), counted in ``dropped``; audio sent back beyond ``PLAYOUT_LIMIT_SAMPLES`` is not
queued either (counted in ``dropped_back``).

``Streams`` runs a node's taps for the engine: a dialled call's stream waits for the leg's audio to exist
(the answer), then the opener (the adapter) connects it; facts (started, ended) go to the control plane.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from callroom.media import stream_wire as w
from callroom.media.ports import FRAME_SAMPLES, SAMPLE_RATE, AudioLeg, Frame
from callroom.media.tones import FrameSource
from callroom.model import media as m
from callroom.rtp.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

log = logging.getLogger(__name__)

WAIT_FOR_ANSWER_SECONDS = 900.0  # a dialled call's stream waits this long for the answer (dials ring 600 s at most)
QUEUE_FRAMES = 250  # messages waiting for a slow server: 5 s of one track; older media is dropped past that
PLAYOUT_LIMIT_SAMPLES = 60 * SAMPLE_RATE  # a minute of audio sent back and not played yet
CODECS = ("PCMU", "PCMA", "L16")
_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


def encode(codec: str, frame: Frame, last: int = 0) -> tuple[bytes, int]:
    """20 ms of 8 kHz audio in a stream's codec: G.711 as is; L16 as 16 kHz big-endian samples, each new
    sample halfway between two (linear interpolation from ``last``, the previous frame's last sample).
    Returns the payload and the frame's last sample."""
    if codec == "PCMA":
        return alaw_encode(frame), 0
    if codec == "L16":
        x = frame.astype(np.int32)
        prev = np.concatenate(([last], x[:-1]))
        up = np.empty(2 * len(x), dtype=np.int32)
        up[0::2] = (prev + x) // 2
        up[1::2] = x
        return up.astype(">i2").tobytes(), int(x[-1])
    return ulaw_encode(frame), 0


def decode(codec: str, rate: int, payload: bytes) -> NDArray[np.int16]:
    """A server's audio as 8 kHz samples (L16 at 16 kHz: pairs averaged)."""
    if codec == "PCMA":
        return alaw_decode(payload)
    if codec == "L16":
        x = np.frombuffer(payload[: len(payload) // 2 * 2], dtype=">i2").astype(np.int32)
        if rate == 16000:
            x = x[: len(x) // 2 * 2].reshape(-1, 2).mean(axis=1).astype(np.int32)
        return x.astype(np.int16)
    return ulaw_decode(payload)


class StreamTap:
    """One stream: ``waiting`` (for its leg) -> ``connecting`` -> ``open`` -> ``stopping`` -> ``ended``.

    The adapter calls ``connected``, ``received`` and ``ended``, reads ``take`` and ``closing``, and sets
    ``notify`` (called when there is something to send)."""

    def __init__(self, op: m.StartStream) -> None:
        self.op = op
        self.state = "waiting"
        self.failure: str | None = None
        self.dropped = 0  # media messages a slow server did not take in time
        self.dropped_back = 0  # samples sent back past the playout limit
        self.notify: Callable[[], None] = lambda: None
        self._out: deque[w.StreamMessage] = deque()
        self._media_queued = 0
        self._seq = itertools.count(1)
        self._chunks = {"inbound": 0, "outbound": 0}
        self._last = {"inbound": 0, "outbound": 0}
        self._frames = 0
        self._playout: deque[NDArray[np.int16]] = deque()
        self._queued_samples = 0
        self._played = 0  # samples played since the stream opened
        self._marks: deque[tuple[int, str]] = deque()  # (played count at which it is reached, name)
        self.started_reported = False
        self.wants_player = op.bidirectional  # an mp3 stream's player is attached with its first audio
        self.attached = False

    @property
    def tracks(self) -> tuple[str, ...]:
        return {"inbound_track": ("inbound",), "outbound_track": ("outbound",)}.get(self.op.track,
                                                                                    ("inbound", "outbound"))

    # -- the adapter's side -------------------------------------------------------------------------

    def connected(self) -> None:
        if self.state != "connecting":
            return
        op = self.op
        rate = 16000 if op.codec == "L16" else SAMPLE_RATE
        self._send(w.Connected(auth_token=op.auth_token))
        self._send(w.Start(next(self._seq), op.job_id, op.call_control_id, op.call_session_id, op.from_, op.to,
                           w.MediaFormat(op.codec, rate), op.client_state, dict(op.custom_parameters)))
        self.state = "open"

    def take(self) -> list[w.StreamMessage]:
        out = list(self._out)
        self._out.clear()
        self._media_queued = 0
        return out

    @property
    def closing(self) -> bool:
        return self.state in ("stopping", "ended")

    def received(self, message: w.StreamMessage) -> None:
        """A message from the server. Its ``media`` is RTP payloads in the stream's bidirectional codec
        (``stream_bidirectional_mode`` rtp); otherwise (Telnyx's default, mp3) the adapter decodes the MP3
        files it carries off the tick and hands the audio to ``play`` instead."""
        if self.state != "open":
            return
        match message:
            case w.Media(payload=payload) if self.op.bidirectional:
                self.play(decode(self.op.bidirectional_codec, self.op.bidirectional_rate, payload))
            case w.Mark(name=name):
                self._marks.append((self._played + self._queued_samples, name))
                self._marks_reached()
            case w.Clear():
                self._playout.clear()
                self._queued_samples = 0
                while self._marks:
                    self._send(w.Mark(self._marks.popleft()[1], next(self._seq), self.op.job_id))
            case _:
                pass

    def play(self, samples: NDArray[np.int16]) -> None:
        """8 kHz audio to play into the call after what is queued (past the limit it is dropped)."""
        if self.state != "open":
            return
        self.wants_player = True
        room = PLAYOUT_LIMIT_SAMPLES - self._queued_samples
        if len(samples) > room:
            self.dropped_back += len(samples) - max(room, 0)
            samples = samples[: max(room, 0)]
        if len(samples):
            self._playout.append(samples)
            self._queued_samples += len(samples)

    def ended(self, failure: str | None) -> None:
        """The connection is over (``failure``: why, when it was not asked to stop)."""
        if self.state == "ended":
            return
        if self.state not in ("stopping",) and failure is not None:
            self.failure = failure
        self.state = "ended"

    # -- the engine's side --------------------------------------------------------------------------

    def capture(self, heard_from: Frame | None, heard_by: Frame | None) -> None:
        """The leg's frames of this tick: what its far end said (inbound) and what it heard (outbound)."""
        if self.state != "open":
            return
        self._frames += 1
        for track in self.tracks:
            frame = heard_from if track == "inbound" else heard_by
            payload, self._last[track] = encode(self.op.codec, _SILENCE if frame is None else frame, self._last[track])
            self._chunks[track] += 1
            self._media(w.Media(payload, track, self._chunks[track], (self._frames - 1) * 20, next(self._seq),
                                self.op.job_id))
        self.notify()

    def digit(self, digit: str) -> None:
        if self.state == "open":
            self._send(w.Dtmf(digit, next(self._seq), self.op.job_id))
            self.notify()

    def stop(self) -> None:
        if self.state == "waiting":
            self.state = "ended"
        elif self.state in ("connecting", "open"):
            if self.state == "open":
                self._send(w.Stop(self.op.call_control_id, next(self._seq), self.op.job_id))
            self.state = "stopping"
            self.notify()

    def next_frame(self) -> Frame:
        """20 ms of what the server sent back (silence when nothing is queued); marks reached are sent."""
        if not self._playout:
            return _SILENCE
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES and self._playout:
            head = self._playout[0]
            take = min(FRAME_SAMPLES - filled, len(head))
            out[filled : filled + take] = head[:take]
            filled += take
            if take == len(head):
                self._playout.popleft()
            else:
                self._playout[0] = head[take:]
        self._played += filled
        self._queued_samples -= filled
        self._marks_reached()
        return out

    def _marks_reached(self) -> None:
        sent = False
        while self._marks and self._marks[0][0] <= self._played:
            self._send(w.Mark(self._marks.popleft()[1], next(self._seq), self.op.job_id))
            sent = True
        if sent:
            self.notify()

    def _send(self, message: w.StreamMessage) -> None:
        self._out.append(message)

    def _media(self, message: w.Media) -> None:
        if self._media_queued >= QUEUE_FRAMES:
            for i, queued in enumerate(self._out):  # the oldest media goes; marks, DTMF and stop stay
                if isinstance(queued, w.Media):
                    del self._out[i]
                    self._media_queued -= 1
                    self.dropped += 1
                    break
        self._out.append(message)
        self._media_queued += 1


StreamOpener = Callable[[StreamTap], None]
"""Connects a tap (the media process's WebSocket adapter); the engine alone has none."""


class StreamHost(Protocol):
    """What the streams need of the engine."""

    @property
    def legs(self) -> Mapping[str, AudioLeg]: ...

    def attach_player(self, port: str, source: FrameSource, cids: tuple[str, ...], conference_id: str | None,
                      ) -> None: ...  # fmt: skip

    def detach(self, port: str) -> None: ...


class Streams:
    """The engine's streams by id."""

    def __init__(self, host: StreamHost, report: Callable[[m.MediaFact], None],
                 opener: StreamOpener | None = None) -> None:  # fmt: skip
        self.host = host
        self.report = report
        self.opener = opener
        self.taps: dict[str, StreamTap] = {}
        self._since: dict[str, float] = {}  # when each waiting tap was first seen by a tick
        self._dropped_ended = 0  # by the taps that ended

    @property
    def dropped(self) -> int:
        """Media messages slow servers did not take in time, since start."""
        return self._dropped_ended + sum(t.dropped for t in self.taps.values())

    @property
    def open(self) -> int:
        return sum(1 for t in self.taps.values() if t.state in ("connecting", "open", "stopping"))

    def __bool__(self) -> bool:
        return bool(self.taps)

    def apply(self, op: m.StartStream | m.StopStream) -> None:
        match op:
            case m.StartStream(job_id=job_id):
                old = self.taps.get(job_id)
                if old is None:
                    self.taps[job_id] = StreamTap(op)
            case m.StopStream(call_control_id=cid, job_id=job_id):
                for tap in self.of_leg(cid):
                    if job_id is None or tap.op.job_id == job_id:
                        tap.stop()

    def of_leg(self, cid: str) -> list[StreamTap]:
        return [t for t in self.taps.values() if t.op.call_control_id == cid]

    def digit(self, cid: str, digit: str) -> None:
        for tap in self.of_leg(cid):
            tap.digit(digit)

    def leg_gone(self, cid: str) -> None:
        for tap in self.of_leg(cid):
            tap.stop()

    def forget(self, cid: str) -> None:
        """The leg will never have audio (refused, released while ringing): its waiting streams end."""
        for tap in self.of_leg(cid):
            if tap.state == "waiting":
                tap.stop()

    def after_mix(self, inputs: Mapping[str, Frame | None], outputs: Mapping[str, Frame], now: float) -> None:
        for job_id, tap in list(self.taps.items()):
            cid = tap.op.call_control_id
            if tap.state == "waiting":
                if cid in self.host.legs:
                    self._since.pop(job_id, None)
                    self._open(tap)
                elif now - self._since.setdefault(job_id, now) > WAIT_FOR_ANSWER_SECONDS:
                    self._since.pop(job_id, None)
                    tap.stop()  # the call was never answered here
            if tap.wants_player and not tap.attached and tap.state == "open":
                tap.attached = True
                self.host.attach_player(_port(tap), tap, tap.op.play_to or (cid,), None)
            if tap.state == "open":
                if not tap.started_reported:
                    tap.started_reported = True
                    self.report(m.StreamStarted(job_id))
                tap.capture(inputs.get(cid), outputs.get(cid))
            if tap.state == "ended":
                del self.taps[job_id]
                self._dropped_ended += tap.dropped
                if tap.attached:
                    self.host.detach(_port(tap))
                if tap.started_reported or tap.failure is not None:
                    if tap.dropped or tap.dropped_back:
                        log.info("stream %s: %d frames not taken by the server in time, %d samples sent back "
                                 "not played", job_id, tap.dropped, tap.dropped_back)
                    self.report(m.StreamEnded(job_id, tap.failure, tap.dropped))

    def _open(self, tap: StreamTap) -> None:
        tap.state = "connecting"
        if self.opener is None:
            tap.ended("media streaming is not available here")
            return
        try:
            self.opener(tap)
        except Exception as exc:
            log.exception("opening stream %s failed", tap.op.job_id)
            tap.ended(f"could not open the stream: {type(exc).__name__}")

    def close(self) -> None:
        for tap in self.taps.values():
            tap.stop()


def _port(tap: StreamTap) -> str:
    return f"src:stream:{tap.op.job_id}"
