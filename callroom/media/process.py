"""The media plane in its own process: the engine, the SIP phones and the virtual phones' audio.

The API process and the media process share nothing but two pipes: instructions one way (framed by
``pipe.py``, written without ever blocking the API), facts and replies the other. The API side sends
instructions (the control plane's media ops, virtual phones' keys, SIP routing decisions) and requests (what a
virtual phone heard, a SIP leg's call quality, tick statistics); the media side sends facts back (DTMF, floor
changes, playback/recording/gather results, SIP calls arriving and ending). Separate processes mean separate
interpreters: database and HTTP work in the API process can neither delay a tick nor contend with it
for the GIL, and the node uses a second core.

The messages are the typed ones of ``callroom/model/messages.py``; each side dispatches on their classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from callroom.endpoints.sip import SipPhones
from callroom.media.engine import MediaEngine, TickStats
from callroom.media.op_batches import without_superseded_mixes
from callroom.media.pipe import FrameReader, PipeWriter, write_all
from callroom.media.rtp_leg import RtpLeg
from callroom.media.virtual_audio import VirtualPhoneAudio
from callroom.model import media as m
from callroom.model.messages import (
    AcceptSipCall,
    AddVirtualLeg,
    FromMedia,
    HeardReply,
    HeardRequest,
    IncomingSipCall,
    Instructions,
    Message,
    PressKeys,
    QualityReply,
    QualityRequest,
    Ready,
    RefuseSipCall,
    RemoveLeg,
    Reply,
    Request,
    RequestFailed,
    SipAnswered,
    SipConfig,
    SipFact,
    SipFailed,
    SipHangup,
    SipMediaTimeout,
    SipQuality,
    StatsReply,
    StatsRequest,
    Stop,
    ToMedia,
)
from callroom.outbound import UNRESTRICTED, AddressPolicy

log = logging.getLogger(__name__)


def _merged_ops(messages: list[ToMedia]) -> list[ToMedia]:
    """Consecutive ``Instructions`` as one, less the conference mixes a later one supersedes (fewer to
    encode here and to apply there; the media process leaves out more across a whole tick)."""
    out: list[ToMedia] = []
    ops: list[m.MediaOp] = []
    for message in messages:
        if isinstance(message, Instructions):
            ops += message.ops
            continue
        if ops:
            out.append(Instructions(tuple(without_superseded_mixes(ops))))
            ops = []
        out.append(message)
    if ops:
        out.append(Instructions(tuple(without_superseded_mixes(ops))))
    return out

PIPE_BUFFER_BYTES = 1024 * 1024  # the default /proc/sys/fs/pipe-max-size


# -- the media process ---------------------------------------------------------------------------------


class MediaWorker:
    """Everything that runs in the media process, around one engine."""

    batch_rtp = True  # RTP legs run as one batch per tick (False: leg by leg, to measure the difference)

    def __init__(self, conn: Connection, commands: Connection, sip_config: SipConfig | None,
                 url_policy: AddressPolicy = UNRESTRICTED) -> None:
        self.conn = conn  # facts and replies to the API process
        self.commands = commands  # the API's instructions, framed by ``pipe.py``
        self._frames = FrameReader()
        self.engine = MediaEngine(on_fact=self.send, url_policy=url_policy, batch_rtp=self.batch_rtp)
        self.sip: SipPhones | None = None
        if sip_config is not None:
            self.sip = SipPhones(self.engine, sip_config, on_incoming=self.send, report=self.send)
        self.virtual: dict[str, VirtualPhoneAudio] = {}
        self._stopped = asyncio.Event()

    def send(self, message: FromMedia) -> None:
        try:
            write_all(self.conn.fileno(), (message,))
        except (OSError, ValueError):  # the API process has gone: stop
            self._stopped.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        if self.sip is not None:
            await self.sip.start()
        os.set_blocking(self.commands.fileno(), False)
        # The instructions are read once per tick, where they take effect anyway: an API write to the
        # pipe then never wakes this process (on a shared core each wake-up cost the API ~10 % of its
        # time under load). Replies to requests wait at most one tick.
        self.engine.before_tick = self._readable
        # What exists now lives as long as the process: kept out of the collector's full passes, which
        # walk every tracked object (a pause of the tick each time).
        gc.collect()
        gc.freeze()
        ticking = loop.create_task(self.engine.run())
        self.send(Ready(self.sip.port if self.sip is not None else None))
        await self._stopped.wait()
        self.engine.before_tick = lambda: None
        if self.sip is not None:
            self.sip.close()
        self.engine.stop()
        await ticking
        await self.engine.aclose()

    def _readable(self) -> None:
        if self._stopped.is_set():
            return
        try:
            data = os.read(self.commands.fileno(), PIPE_BUFFER_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the API process has gone
            self._stopped.set()
            return
        # Consecutive instructions are applied together, less the conference mixes a later one supersedes
        # (``op_batches``); every other message keeps its place between them.
        ops: list[m.MediaOp] = []
        for message in self._frames.feed(data):
            if isinstance(message, Instructions):
                ops += message.ops
            else:
                self._apply(ops)
                ops = []
                self._handle(message)
        self._apply(ops)

    def _apply(self, ops: list[m.MediaOp]) -> None:
        if not ops:
            return
        try:
            ops = without_superseded_mixes(ops)
            if self.sip is not None:
                self.sip.apply(ops)
            self.engine.apply(ops)
        except Exception:
            log.exception("media process: instructions failed")

    def _handle(self, message: Message) -> None:
        try:
            match message:
                case Instructions(ops=ops):
                    self._apply(list(ops))
                case AddVirtualLeg(call_control_id=cid, tone_hz=tone_hz):
                    audio = VirtualPhoneAudio(tone_hz, self.engine.dtmf_from(cid))
                    self.virtual[cid] = audio
                    self.engine.add_leg(cid, audio)
                case RemoveLeg(call_control_id=cid):
                    self.virtual.pop(cid, None)
                    self.engine.remove_leg(cid)
                case PressKeys(call_control_id=cid, digits=digits, duration_ms=ms):
                    if cid in self.virtual:
                        self.virtual[cid].press(digits, ms)
                case AcceptSipCall(sip_call_id=sip_call_id, call_control_id=cid) if self.sip is not None:
                    self.sip.accept(sip_call_id, cid)
                case RefuseSipCall(sip_call_id=sip_call_id, status=status) if self.sip is not None:
                    self.sip.refuse(sip_call_id, status)
                case HeardRequest() | QualityRequest() | StatsRequest():
                    self.send(self.answer(message))
                case Stop():
                    self._stopped.set()
                case _:
                    log.warning("media process: unexpected message %r", message)
        except Exception:
            log.exception("media message %r failed", message)

    def answer(self, request: Request) -> Reply:
        """The reply to a request (``RequestFailed`` when answering it raised)."""
        try:
            match request:
                case HeardRequest(request_id=rid, call_control_id=cid, seconds=seconds):
                    audio = self.virtual.get(cid)
                    return HeardReply(rid, None if audio is None else audio.heard(seconds))
                case QualityRequest(request_id=rid, call_control_id=cid):
                    return QualityReply(rid, self.sip.quality(cid) if self.sip is not None else None)
                case StatsRequest(request_id=rid, reset=reset, per_leg=per_leg):
                    engine = self.engine
                    reply = StatsReply(
                        rid, engine.stats.summary(), len(engine.legs), len(engine.mixer.ports),
                        len(engine.conferences), self.sip.counters() if self.sip is not None else None,
                        {cid: dataclasses.asdict(leg.stats()) for cid, leg in engine.legs.items()
                         if isinstance(leg, RtpLeg)} if per_leg else {},
                    )
                    if reset:
                        engine.stats = TickStats()
                    return reply
        except Exception as exc:
            return RequestFailed(request.request_id, f"{type(exc).__name__}: {exc}")


def media_main(conn: Connection, commands: Connection, sip_config: SipConfig | None, log_level: int,
               url_policy: AddressPolicy = UNRESTRICTED) -> None:
    """Entry point of the media process."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s media %(name)s: %(message)s")
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(MediaWorker(conn, commands, sip_config, url_policy).serve())
    finally:
        loop.close()


# -- the API side --------------------------------------------------------------------------------------

_Answer = TypeVar("_Answer", HeardReply, QualityReply, StatsReply)


class MediaProcess:
    """The API process's handle on the media process."""

    def __init__(
        self,
        sip_config: SipConfig | None,
        *,
        on_fact: Callable[[m.MediaFact], None],
        on_sip_incoming: Callable[[IncomingSipCall], None],
        on_sip_fact: Callable[[SipFact], None],
        url_policy: AddressPolicy = UNRESTRICTED,
    ) -> None:
        self.sip_config = sip_config
        self.url_policy = url_policy  # where media URLs may be fetched from (outbound.py)
        self.on_fact = on_fact
        self.on_sip_incoming = on_sip_incoming
        self.on_sip_fact = on_sip_fact
        self.sip_port: int | None = None
        self._conn: Connection | None = None
        self._replies_in = FrameReader()  # facts and replies (framed as in pipe.py)
        self._process: multiprocessing.process.BaseProcess | None = None
        self._ready: asyncio.Future[int | None] | None = None
        self._replies: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outgoing: list[ToMedia] = []
        self._commands_conn: Connection | None = None
        self._commands: PipeWriter | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # One core's worth of work per media process: BLAS thread pools would spin on the other cores
        # for the tick's small matrix products. (Read by the child when it imports numpy.)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        commands_in, commands_out = ctx.Pipe(duplex=False)
        self._conn = parent
        self._process = ctx.Process(
            target=media_main,
            args=(child, commands_in, self.sip_config, logging.getLogger().getEffectiveLevel(), self.url_policy),
            name="callroom-media", daemon=True,
        )
        self._process.start()
        child.close()
        commands_in.close()
        self._commands_conn = commands_out
        with contextlib.suppress(OSError, AttributeError):  # Linux: a 1 MiB pipe absorbs bursts
            fcntl.fcntl(commands_out.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BUFFER_BYTES)
        self._commands = PipeWriter(self._loop, commands_out.fileno())
        self._ready = self._loop.create_future()
        os.set_blocking(parent.fileno(), False)
        self._loop.add_reader(parent.fileno(), self._readable)
        self.sip_port = await asyncio.wait_for(self._ready, 60)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def send(self, message: ToMedia) -> None:
        """Queue a message for the media process: what queues up during one turn of the event loop goes
        as one frame, in order, so a burst of commands costs one encoding and one write; the write never
        blocks (``pipe.PipeWriter``)."""
        if self._commands is None:
            return
        self._outgoing.append(message)
        if len(self._outgoing) == 1:
            if self._loop is not None and self._loop.is_running():
                self._loop.call_soon(self._flush)
            else:
                self._flush()

    def _flush(self) -> None:
        batch, self._outgoing = self._outgoing, []
        if not batch or self._commands is None:
            return
        batch = _merged_ops(batch)
        if self._commands.broken:
            log.error("the media process is gone; dropped %d message(s)", len(batch))
            return
        self._commands.write(batch)

    def apply(self, ops: list[m.MediaOp]) -> None:
        self.send(Instructions(tuple(ops)))

    async def heard(self, call_control_id: str, seconds: float | None, timeout: float = 10.0,
                    ) -> NDArray[np.int16] | None:  # fmt: skip
        """What a virtual phone heard (None: no such phone)."""
        reply = await self._request(HeardRequest(next(self._ids), call_control_id, seconds), HeardReply, timeout)
        return reply.samples

    async def quality(self, call_control_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """A live SIP leg's call_quality_stats (None for other legs)."""
        reply = await self._request(QualityRequest(next(self._ids), call_control_id), QualityReply, timeout)
        return reply.stats

    async def stats(self, reset: bool = False, per_leg: bool = False, timeout: float = 10.0) -> StatsReply:
        """The media process's figures (``StatsRequest``)."""
        return await self._request(StatsRequest(next(self._ids), reset, per_leg), StatsReply, timeout)

    async def _request(self, request: Request, expected: type[_Answer], timeout: float) -> _Answer:
        """Send ``request`` and wait for its reply; ``RuntimeError`` if the media process could not answer."""
        assert self._loop is not None
        fut: asyncio.Future[Reply] = self._loop.create_future()
        self._replies[request.request_id] = fut
        self.send(request)
        try:
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._replies.pop(request.request_id, None)
        if isinstance(reply, RequestFailed):
            raise RuntimeError(reply.error)
        if not isinstance(reply, expected):
            raise RuntimeError(f"{type(request).__name__} answered with {type(reply).__name__}")
        return reply

    def _readable(self) -> None:
        # Read what is there and keep a partial message for later: the media process writes a large
        # message in pieces, and ``Connection.recv`` on this non-blocking end would fail mid-message.
        assert self._conn is not None
        try:
            data = os.read(self._conn.fileno(), PIPE_BUFFER_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if self._loop is not None:
                self._loop.remove_reader(self._conn.fileno())
            log.error("the media process closed its pipe")
            return
        for message in self._replies_in.feed(data):
            self._handle(message)

    def _handle(self, message: Message) -> None:
        try:
            match message:
                case (m.DtmfReceived() | m.FloorChanged() | m.PlaybackStarted() | m.PlaybackEnded()
                      | m.RecordingSaved() | m.RecordingFailed() | m.GatherEnded()):
                    self.on_fact(message)
                case SipAnswered() | SipFailed() | SipQuality() | SipHangup() | SipMediaTimeout():
                    self.on_sip_fact(message)
                case IncomingSipCall():
                    self.on_sip_incoming(message)
                case HeardReply() | QualityReply() | StatsReply() | RequestFailed():
                    fut = self._replies.get(message.request_id)
                    if fut is not None and not fut.done():
                        fut.set_result(message)
                case Ready(sip_port=port):
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_result(port)
                case _:
                    log.warning("unexpected message from the media process: %r", message)
        except Exception:
            log.exception("handling media message %r failed", message)

    async def stop(self) -> None:
        if self._process is None:
            return
        self.send(Stop())
        self._flush()
        if self._commands is not None:
            await self._commands.drain(5.0)
        if self._loop is not None and self._conn is not None:
            self._loop.remove_reader(self._conn.fileno())
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
        if self._conn is not None:
            self._conn.close()
        if self._commands_conn is not None:
            self._commands_conn.close()
        self._process = None
