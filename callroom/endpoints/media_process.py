"""The API process's end of the media process: starts it, sends it messages, reads what it reports.

The media process (``callroom/media_worker``) runs the engine, the SIP phones and every leg's audio; from
here it is one more endpoint driver, beside the virtual phones. What one turn of the event loop sends
goes as one frame, written without ever blocking (``callroom/aio/pipe.py``); facts, SIP arrivals and
replies are read as they come and dispatched on their classes (``callroom/model/messages.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from callroom.admission import Limits
from callroom.aio.pipe import PIPE_BUFFER_BYTES, FrameReader, PipeWriter
from callroom.errors import StartupError
from callroom.media.op_batches import without_superseded_mixes
from callroom.media_worker.main import media_main
from callroom.model import media as m
from callroom.model.messages import (
    AdmissionReport,
    FileReady,
    FileWanted,
    HeardReply,
    HeardRequest,
    IncomingSipCall,
    Instructions,
    MediaFigures,
    Message,
    NotStarted,
    OpenRelay,
    QualityReply,
    QualityRequest,
    Ready,
    RelayOpened,
    RelayPeer,
    RelayPorts,
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
    SipReferProgress,
    StatsReply,
    StatsRequest,
    Stop,
    ToMedia,
    TrunkStatus,
    UseRelay,
)
from callroom.outbound import UNRESTRICTED, AddressPolicy

log = logging.getLogger(__name__)

# The media process is ready in well under a second (importing numpy and binding its sockets); on a machine
# whose cores are busy it may take a few. Its failures to start are reported at once (``NotStarted``, or its
# pipe closing), not waited out.
READY_TIMEOUT_SECS = 30.0


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



_Answer = TypeVar("_Answer", HeardReply, QualityReply, StatsReply, RelayOpened)


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
        relay_host: str = "127.0.0.1",
        relay_pool: int = 0,
        limits: Limits | None = None,
        on_admission: Callable[[AdmissionReport], None] = lambda _report: None,
    ) -> None:
        self.sip_config = sip_config
        self.limits = limits or Limits()  # the node's admission limits, applied by the media process
        self.on_admission = on_admission
        self.relay_host = relay_host  # where other nodes of a cluster reach this node's relay legs
        self.relay_pool = relay_pool  # relay ports the media process keeps open ahead (a cluster's node)
        self._relay_ports: list[int] = []  # those it reported open ahead and not used yet
        self.url_policy = url_policy  # where media URLs may be fetched from (outbound.py)
        self.on_fact = on_fact
        self.on_sip_incoming = on_sip_incoming
        self.on_sip_fact = on_sip_fact
        self.sip_port: int | None = None
        self.figures: MediaFigures | None = None  # the latest the media process reported
        self.on_figures: Callable[[MediaFigures], None] = lambda _figures: None
        self.on_trunk_status: Callable[[TrunkStatus], None] = lambda _status: None
        # A stored file the media process is to play: its node answers with ``FileReady`` (node.py).
        self.on_file_wanted: Callable[[FileWanted], None] = lambda wanted: self.send(
            FileReady(wanted.ask_id, None, "this node keeps no stored files"))
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
            args=(child, commands_in, self.sip_config, logging.getLogger().getEffectiveLevel(), self.url_policy,
                  self.relay_host, self.relay_pool, self.limits),
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
        try:
            self.sip_port = await asyncio.wait_for(self._ready, READY_TIMEOUT_SECS)
        except TimeoutError:
            raise StartupError(f"the media process was not ready within {READY_TIMEOUT_SECS:g} s") from None

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

    async def open_relay(self, leg_id: str, remote: tuple[str, int] | None = None, attach: str | None = None,
                         timeout: float = 5.0) -> tuple[str, int]:  # fmt: skip
        """Open a relay leg; where the other node sends to it. With a port opened ahead at once
        (``UseRelay``), else by asking for one (``OpenRelay``: up to a tick's wait)."""
        if self._relay_ports:
            port = self._relay_ports.pop()
            self.send(UseRelay(leg_id, port, remote, attach))
            return self.relay_host, port
        reply = await self._request(OpenRelay(next(self._ids), leg_id, remote, attach), RelayOpened, timeout)
        return reply.host, reply.port

    def relay_peer(self, leg_id: str, remote: tuple[str, int]) -> None:
        self.send(RelayPeer(leg_id, remote))

    def close_relay(self, leg_id: str) -> None:
        self.send(RemoveLeg(leg_id))

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
            if self._ready is not None and not self._ready.done():  # it died while starting
                self._ready.set_exception(StartupError("the media process ended before it was ready"))
                return
            log.error("the media process closed its pipe")
            return
        for message in self._replies_in.feed(data):
            self._handle(message)

    def _handle(self, message: Message) -> None:
        try:
            match message:
                case (m.DtmfReceived() | m.FloorChanged() | m.PlaybackStarted() | m.PlaybackEnded()
                      | m.RecordingSaved() | m.RecordingFailed() | m.GatherEnded() | m.StreamStarted()
                      | m.StreamEnded() | m.MachineDetection() | m.Transcribed()):
                    self.on_fact(message)
                case (SipAnswered() | SipFailed() | SipQuality() | SipHangup() | SipMediaTimeout()
                      | SipReferProgress()):
                    self.on_sip_fact(message)
                case IncomingSipCall():
                    self.on_sip_incoming(message)
                case AdmissionReport():
                    self.on_admission(message)
                case FileWanted():
                    self.on_file_wanted(message)
                case TrunkStatus():
                    self.on_trunk_status(message)
                case MediaFigures():
                    self.figures = message
                    self.on_figures(message)
                case HeardReply() | QualityReply() | StatsReply() | RelayOpened() | RequestFailed():
                    fut = self._replies.get(message.request_id)
                    if fut is not None and not fut.done():
                        fut.set_result(message)
                case RelayPorts(host=host, ports=ports):
                    self.relay_host = host
                    self._relay_ports += ports
                case Ready(sip_port=port):
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_result(port)
                case NotStarted(reason=reason):
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_exception(StartupError(reason))
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
