"""The media process: the engine, the SIP phones and the virtual phones' audio, and the loop that carries
out the API process's messages around them.

It shares nothing with the API process but two pipes (``callroom/aio/pipe.py``): instructions and requests
come in on one, read once per tick; facts, SIP arrivals and replies go out on the other. Separate processes
mean separate interpreters: database and HTTP work in the API process can neither delay a tick nor contend
with it for the GIL, and the node uses a second core. The messages are the typed ones of
``callroom/model/messages.py``, dispatched on their classes; the API process's end is
``callroom/endpoints/media_process.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import time
from multiprocessing.connection import Connection

import numpy as np

from callroom import logs
from callroom.admission import Admission, Limits, Load
from callroom.aio.media_fork import ForkSockets
from callroom.aio.media_stream import StreamClients
from callroom.aio.pipe import PIPE_BUFFER_BYTES, FrameReader, write_all
from callroom.aio.rtp_batch import RtpBatch
from callroom.aio.rtp_leg import RtpLeg
from callroom.media.engine import MediaEngine, TickStats
from callroom.media.op_batches import without_superseded_mixes
from callroom.media.virtual_audio import VirtualPhoneAudio
from callroom.media_worker.relays import RelayLegs
from callroom.media_worker.sip_phones import SipPhones
from callroom.media_worker.stored_files import StoredFiles
from callroom.model import media as m
from callroom.model.messages import (
    FIGURES_INTERVAL,
    AcceptSipCall,
    AddVirtualLeg,
    AdmissionReport,
    DrainSip,
    FileReady,
    FromMedia,
    HeardReply,
    HeardRequest,
    Instructions,
    MediaFigures,
    Message,
    NotStarted,
    OpenRelay,
    PressKeys,
    QualityReply,
    QualityRequest,
    Ready,
    RefuseSipCall,
    RelayOpened,
    RelayPeer,
    RelayPorts,
    RemoveLeg,
    Reply,
    Request,
    RequestFailed,
    SetTrunks,
    SipConfig,
    StatsReply,
    StatsRequest,
    Stop,
    UseRelay,
)
from callroom.outbound import UNRESTRICTED, AddressPolicy

log = logging.getLogger(__name__)

REPORT_EVERY_TICKS = 5  # the admission figures go to the API process at most every 100 ms, when they changed


class MediaWorker:
    """Everything that runs in the media process, around one engine."""

    batch_rtp = True  # RTP legs run as one batch per tick (False: leg by leg, to measure the difference)

    def __init__(self, conn: Connection, commands: Connection, sip_config: SipConfig | None,
                 url_policy: AddressPolicy = UNRESTRICTED, relay_host: str = "127.0.0.1",
                 relay_pool: int = 0, limits: Limits | None = None) -> None:
        self.conn = conn  # facts and replies to the API process
        self.commands = commands  # the API's instructions, framed by ``pipe.py``
        self._frames = FrameReader()
        self.streams = StreamClients(url_policy)  # media streams' WebSockets
        self.forks = ForkSockets(url_policy)  # forks' UDP sockets
        self.engine = MediaEngine(on_fact=self.send, url_policy=url_policy,
                                  batch=RtpBatch() if self.batch_rtp else None, stream_opener=self.streams.open,
                                  fork_opener=self.forks.open)
        self.files = StoredFiles(self.send)  # uploads and hold audio, copied here by the node
        self.engine.actions.preparer.stored_file = self.files.path
        self.sip: SipPhones | None = None
        self.virtual: dict[str, VirtualPhoneAudio] = {}
        self.admission = Admission(limits or Limits())
        if sip_config is not None:
            self.sip = SipPhones(self.engine, sip_config, on_incoming=self.send, report=self.send,
                                 admission=self.admission, load=self.load)
            self.sip.trunks.on_status = self.send
        self._ticks = 0
        self._reported: tuple[object, ...] = ()
        self._refusing = False  # refused a call within the last second
        self._refused_at = 0.0
        self._refused_before: tuple[tuple[str, int], ...] = ()
        self.relays = RelayLegs(self.engine, relay_host, (sip_config or SipConfig()).rtp_ports)
        self.relay_pool = relay_pool  # relay ports kept open ahead (a cluster's node)
        self._stopped = asyncio.Event()
        self._opening: set[asyncio.Task[None]] = set()
        self._filling: asyncio.Task[None] | None = None
        self._figures_seen: tuple[TickStats | None, int] = (None, 0)  # the tick figures reported so far

    def send(self, message: FromMedia) -> None:
        try:
            write_all(self.conn.fileno(), (message,))
        except (OSError, ValueError):  # the API process has gone: stop
            self._stopped.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        if self.sip is not None:
            try:
                await self.sip.start()
            except OSError as exc:  # the port is taken, or the address is not this machine's
                config = self.sip.config
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                self.send(NotStarted(f"cannot listen for SIP on udp {config.host}:{config.port}: {reason}"))
                return
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
        self._refill()
        reporting = loop.create_task(self._report_figures())
        await self._stopped.wait()
        reporting.cancel()
        self.engine.before_tick = lambda: None
        if self.sip is not None:
            self.sip.close()
        self.relays.close_all()
        self.engine.stop()
        await ticking
        await self.engine.aclose()
        await self.streams.close()
        await self.forks.close()

    def load(self) -> Load:
        """The node's figures for admitting a new call: its calls up (SIP legs, ringing or answered, and
        virtual phones' legs), the INVITEs the control plane has not taken yet, the tick's lateness."""
        sip = self.sip
        calls = len(self.virtual) + (len(sip.by_sip) if sip is not None else 0)
        return Load(calls, len(sip.awaiting) if sip is not None else 0, self.engine.stats.recent_late_ms)

    def _report_admission(self) -> None:
        """Send the admission figures when they changed (``REPORT_EVERY_TICKS``), and log when the node
        starts and stops refusing calls."""
        now = time.monotonic()
        load, adm = self.load(), self.admission
        budget = adm.budget(now)
        refused = tuple(sorted((str(r), n) for r, n in adm.refused.items()))
        if refused != self._refused_before:
            if not self._refusing:
                log.warning("overloaded: refusing new calls (limits: %s; refused so far: %s)",
                            adm.limits.describe(), ", ".join(f"{r} {n}" for r, n in refused))
            self._refusing, self._refused_at, self._refused_before = True, now, refused
        elif self._refusing and now - self._refused_at >= 1.0:
            log.warning("admitting new calls again")
            self._refusing = False
        key = (load.calls, load.setup_backlog, round(load.tick_late_ms), round(budget, 1), adm.admitted, refused)
        if key == self._reported:
            return
        self._reported = key
        self.send(AdmissionReport(load.calls, load.setup_backlog, load.tick_late_ms, budget, now, adm.admitted,
                                  refused))

    def _readable(self) -> None:
        if self._stopped.is_set():
            return
        self._ticks += 1
        if self._ticks % REPORT_EVERY_TICKS == 0:
            self._report_admission()
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
            now = time.monotonic()
            for op in ops:  # an outgoing call (admitted by the API process) takes from the per-second budget
                if isinstance(op, m.Ring):
                    self.admission.charge(now)
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
                case AddVirtualLeg(call_control_id=cid, tone_hz=tone_hz, cadence_ms=cadence, beep_hz=beep_hz,
                                   speech=speech):
                    audio = VirtualPhoneAudio(tone_hz, self.engine.dtmf_from(cid), cadence, beep_hz,
                                              speaks=speech is not None)
                    self.virtual[cid] = audio
                    self.engine.add_leg(cid, audio)
                    if speech is not None:
                        self.engine.actions.prepare(speech, audio.speak, f"virtual phone {cid}")
                case RemoveLeg(call_control_id=cid) if cid in self.relays.legs:
                    self.relays.close(cid)
                case RemoveLeg(call_control_id=cid):
                    self.virtual.pop(cid, None)
                    self.engine.remove_leg(cid)
                case OpenRelay():
                    task = asyncio.get_running_loop().create_task(self._open_relay(message))
                    self._opening.add(task)
                    task.add_done_callback(self._opening.discard)
                case UseRelay(leg_id=leg_id, port=port, remote=remote, attach=attach):
                    self.relays.use(leg_id, port, remote, attach)
                    self._refill()
                case RelayPeer(leg_id=leg_id, remote=remote):
                    self.relays.peer(leg_id, remote)
                case PressKeys(call_control_id=cid, digits=digits, duration_ms=ms):
                    if cid in self.virtual:
                        self.virtual[cid].press(digits, ms)
                case SetTrunks(trunks=trunks) if self.sip is not None:
                    self.sip.set_trunks(trunks)
                case AcceptSipCall(sip_call_id=sip_call_id, call_control_id=cid) if self.sip is not None:
                    self.sip.accept(sip_call_id, cid)
                case RefuseSipCall(sip_call_id=sip_call_id, status=status) if self.sip is not None:
                    self.sip.refuse(sip_call_id, status)
                case FileReady():
                    self.files.ready(message)
                case HeardRequest() | QualityRequest() | StatsRequest():
                    self.send(self.answer(message))
                case DrainSip(retry_after=retry_after) if self.sip is not None:
                    self.sip.drain(retry_after)
                case Stop():
                    self._stopped.set()
                case _:
                    log.warning("media process: unexpected message %r", message)
        except Exception:
            log.exception("media message %r failed", message)

    async def _report_figures(self) -> None:
        while True:
            await asyncio.sleep(FIGURES_INTERVAL)
            try:
                self.send(self.figures())
            except Exception:
                log.exception("media process: figures failed")

    def figures(self) -> MediaFigures:
        """The figures now; the tick lateness is that of the ticks since the last call."""
        engine = self.engine
        stats = engine.stats
        seen_stats, seen_ticks = self._figures_seen
        new = stats.ticks - (seen_ticks if seen_stats is stats else 0)
        self._figures_seen = (stats, stats.ticks)
        late = np.asarray(stats.late_ms[-new:] if new > 0 else [], dtype=np.float64)
        lateness = ((float(np.percentile(late, 50)), float(np.percentile(late, 99)), float(late.max()))
                    if late.size else (0.0, 0.0, 0.0))
        transport = self.sip.transport if self.sip is not None else None
        floors = {conf: d.current for conf, d in engine.talkers.items() if d.current is not None}
        return MediaFigures(
            legs=len(engine.legs), conferences=len(engine.conferences), ticks=stats.ticks, late_ms=lateness,
            sip_sent=dict(transport.responses_sent) if transport is not None else {},
            sip_received=dict(transport.responses_received) if transport is not None else {},
            floors=floors, streams=engine.actions.streams.open, stream_frames_dropped=engine.actions.streams.dropped,
        )

    def _refill(self) -> None:
        """Open relay ports ahead up to ``relay_pool`` (in the background) and report them."""
        if self.relay_pool and (self._filling is None or self._filling.done()):
            self._filling = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        try:
            opened = await self.relays.fill(self.relay_pool)
        except Exception:
            log.exception("opening relay ports ahead failed")
            return
        if opened:
            self.send(RelayPorts(self.relays.host, tuple(opened)))

    async def _open_relay(self, request: OpenRelay) -> None:
        try:
            host, port = await self.relays.open(request.leg_id, request.remote, request.attach)
        except Exception as exc:
            log.exception("opening relay leg %s failed", request.leg_id)
            self.send(RequestFailed(request.request_id, f"{type(exc).__name__}: {exc}"))
            return
        self.send(RelayOpened(request.request_id, host, port))

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
                case OpenRelay(request_id=rid):  # answered once its socket is bound (``_open_relay``)
                    return RequestFailed(rid, "OpenRelay is answered asynchronously")
        except Exception as exc:
            return RequestFailed(request.request_id, f"{type(exc).__name__}: {exc}")


def media_main(conn: Connection, commands: Connection, sip_config: SipConfig | None, log_level: int,
               url_policy: AddressPolicy = UNRESTRICTED, relay_host: str = "127.0.0.1", relay_pool: int = 0,
               limits: Limits | None = None) -> None:
    """Entry point of the media process."""
    # A terminal's Ctrl-C and a service manager's SIGTERM reach the whole process group: the node drains
    # first and then stops this process itself (``Stop``, or its pipe closing), so that the calls it carries
    # end with their BYEs and its recordings are saved.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.configure(log_level, logs.format_from_env(), process="media")
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        worker = MediaWorker(conn, commands, sip_config, url_policy, relay_host, relay_pool, limits)
        loop.run_until_complete(worker.serve())
    finally:
        loop.close()
