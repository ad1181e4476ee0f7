"""The media plane in its own process: the engine, the SIP phones and the virtual phones' audio.

The API process and the media process share nothing but two pipes: instructions one way (framed by
``pipe.py``, written without ever blocking the API), facts and replies the other. The API side sends
instructions (the control plane's media ops, virtual phones' keys, SIP routing decisions) and requests (what a
virtual phone heard, tick statistics); the media side sends facts back (DTMF, floor changes,
playback/recording/gather results, SIP calls arriving and ending). Separate processes mean separate
interpreters: database and HTTP work in the API process can neither delay a tick nor contend with it
for the GIL, and the node uses a second core.

Messages are tuples whose first item names them:

    API -> media: ("batch", [message, ...]) ("ops", [MediaOp]) ("add_virtual", cid, tone_hz) ("remove_leg", cid)
                  ("press", cid, digits, ms) ("sip_accept", sip_call_id, cid) ("sip_refuse", sip_call_id, status)
                  ("request", req_id, what, args) ("stop",)
    media -> API: ("ready", sip_port) ("fact", MediaFact) ("sip_incoming", Incoming)
                  ("sip_report", fact, cid, detail) ("reply", req_id, value | None, error | None)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from callroom.endpoints.sip import Incoming, SipConfig, SipPhones
from callroom.media.engine import MediaEngine, TickStats
from callroom.media.op_batches import without_superseded_mixes
from callroom.media.pipe import FrameReader, PipeWriter, write_all
from callroom.media.virtual_audio import VirtualPhoneAudio
from callroom.model import media as m
from callroom.outbound import UNRESTRICTED, AddressPolicy

log = logging.getLogger(__name__)


def _merged_ops(messages: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Consecutive ``ops`` messages as one, less the conference mixes a later one supersedes (fewer to
    pickle here and to apply there; the media process leaves out more across a whole tick)."""
    out: list[tuple[Any, ...]] = []
    for message in messages:
        if message[0] == "ops" and out and out[-1][0] == "ops":
            out[-1] = ("ops", [*out[-1][1], *message[1]])
        else:
            out.append(message)
    return [("ops", without_superseded_mixes(msg[1])) if msg[0] == "ops" else msg for msg in out]

PIPE_BUFFER_BYTES = 1024 * 1024  # the default /proc/sys/fs/pipe-max-size


# -- the media process ---------------------------------------------------------------------------------


class MediaWorker:
    """Everything that runs in the media process, around one engine."""

    def __init__(self, conn: Connection, commands: Connection, sip_config: SipConfig | None,
                 url_policy: AddressPolicy = UNRESTRICTED) -> None:
        self.conn = conn  # facts and replies to the API process
        self.commands = commands  # the API's instructions, framed by ``pipe.py``
        self._frames = FrameReader()
        self.engine = MediaEngine(on_fact=lambda fact: self.send(("fact", fact)), url_policy=url_policy)
        self.sip: SipPhones | None = None
        if sip_config is not None:
            self.sip = SipPhones(
                self.engine, sip_config,
                on_incoming=lambda call: self.send(("sip_incoming", call)),
                report=lambda fact, cid, detail: self.send(("sip_report", fact, cid, detail)),
            )
        self.virtual: dict[str, VirtualPhoneAudio] = {}
        self._stopped = asyncio.Event()

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            write_all(self.conn.fileno(), message)
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
        self.send(("ready", self.sip.port if self.sip is not None else None))
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
            for one in message[1] if message[0] == "batch" else (message,):
                if one[0] == "ops":
                    ops.extend(one[1])
                else:
                    self._apply(ops)
                    ops = []
                    self._handle(one)
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

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        try:
            if kind == "batch":
                for one in message[1]:
                    self._handle(one)
            elif kind == "ops":
                self._apply(message[1])
            elif kind == "add_virtual":
                _, cid, tone_hz = message
                audio = VirtualPhoneAudio(tone_hz, self.engine.dtmf_from(cid))
                self.virtual[cid] = audio
                self.engine.add_leg(cid, audio)
            elif kind == "remove_leg":
                self.virtual.pop(message[1], None)
                self.engine.remove_leg(message[1])
            elif kind == "press":
                _, cid, digits, ms = message
                if cid in self.virtual:
                    self.virtual[cid].press(digits, ms)
            elif kind == "sip_accept" and self.sip is not None:
                self.sip.accept(message[1], message[2])
            elif kind == "sip_refuse" and self.sip is not None:
                self.sip.refuse(message[1], message[2])
            elif kind == "request":
                _, req_id, what, args = message
                self._reply(req_id, what, args)
            elif kind == "stop":
                self._stopped.set()
        except Exception:
            log.exception("media message %s failed", kind)

    def _reply(self, req_id: int, what: str, args: tuple[Any, ...]) -> None:
        try:
            if what == "heard":
                cid, seconds = args
                audio = self.virtual.get(cid)
                value: Any = None if audio is None else audio.heard(seconds)
            elif what == "quality":  # a SIP leg's call_quality_stats, for the hangup we are about to send
                (cid,) = args
                value = self.sip.quality(cid) if self.sip is not None else None
            elif what == "stats":  # args: ("reset",) starts the tick figures afresh after reading them
                value = {"tick": self.engine.stats.summary(), "legs": len(self.engine.legs),
                         "ports": len(self.engine.mixer.ports), "conferences": len(self.engine.conferences),
                         "sip": self.sip.counters() if self.sip is not None else None}
                if "reset" in args:
                    self.engine.stats = TickStats()
            else:
                raise ValueError(f"unknown request {what!r}")
        except Exception as exc:
            self.send(("reply", req_id, None, f"{type(exc).__name__}: {exc}"))
            return
        self.send(("reply", req_id, value, None))


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


class MediaProcess:
    """The API process's handle on the media process."""

    def __init__(
        self,
        sip_config: SipConfig | None,
        *,
        on_fact: Callable[[m.MediaFact], None],
        on_sip_incoming: Callable[[Incoming], None],
        on_sip_report: Callable[[str, str, int | str | None], None],
        url_policy: AddressPolicy = UNRESTRICTED,
    ) -> None:
        self.sip_config = sip_config
        self.url_policy = url_policy  # where media URLs may be fetched from (outbound.py)
        self.on_fact = on_fact
        self.on_sip_incoming = on_sip_incoming
        self.on_sip_report = on_sip_report
        self.sip_port: int | None = None
        self._conn: Connection | None = None
        self._replies_in = FrameReader()  # facts and replies (framed as in pipe.py)
        self._process: multiprocessing.process.BaseProcess | None = None
        self._ready: asyncio.Future[int | None] | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outgoing: list[tuple[Any, ...]] = []
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

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue a message for the media process: what queues up during one turn of the event loop goes
        as one ``("batch", [...])`` frame, in order, so a burst of commands costs one pickle and one
        write; the write never blocks (``pipe.PipeWriter``)."""
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
        self._commands.write(batch[0] if len(batch) == 1 else ("batch", batch))

    def apply(self, ops: list[m.MediaOp]) -> None:
        self.send(("ops", ops))

    async def request(self, what: str, *args: Any, timeout: float = 10.0) -> Any:
        assert self._loop is not None
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._replies[req_id] = fut
        self.send(("request", req_id, what, args))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._replies.pop(req_id, None)

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

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        try:
            if kind == "fact":
                self.on_fact(message[1])
            elif kind == "sip_incoming":
                self.on_sip_incoming(message[1])
            elif kind == "sip_report":
                self.on_sip_report(message[1], message[2], message[3])
            elif kind == "reply":
                _, req_id, value, error = message
                fut = self._replies.get(req_id)
                if fut is not None and not fut.done():
                    if error is None:
                        fut.set_result(value)
                    else:
                        fut.set_exception(RuntimeError(error))
            elif kind == "ready" and self._ready is not None and not self._ready.done():
                self._ready.set_result(message[1])
        except Exception:
            log.exception("handling media message %s failed", kind)

    async def stop(self) -> None:
        if self._process is None:
            return
        self.send(("stop",))
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
