"""A callroom node: the store, the control plane, the media plane, the webhook dispatcher and the API,
wired together and started and stopped as one."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from callroom import logs
from callroom.admission import Limits, Load, Reason, ReportedAdmission
from callroom.api.app import create_app, serving
from callroom.api.common import hash_key
from callroom.api.compiled import CompiledRoutes
from callroom.cluster.bus import Bus
from callroom.cluster.console_feed import ConsoleFeed
from callroom.cluster.media import ClusterMedia
from callroom.cluster.membership import HEARTBEAT_SECS, TIME_TO_LIVE_SECS, Membership
from callroom.console.figures import OperationsFigures
from callroom.console.hub import ConsoleHub
from callroom.control import calls, conferences, listening, media_facts, sip_actions
from callroom.control.service import DEFAULT_RING_TIMEOUT_SECS, Control, job_fact, remote_fact
from callroom.drain import DEFAULT_GRACE_SECS, Drain
from callroom.endpoints.media_process import MediaProcess
from callroom.endpoints.virtual import VirtualPhones
from callroom.errors import Overloaded, StoreError
from callroom.model import signed_links
from callroom.model.media import (
    ConferenceMix,
    DtmfReceived,
    FloorChanged,
    GatherEnded,
    MachineDetection,
    MediaFact,
    MediaOp,
    MemberFlags,
    PlaybackEnded,
    PlaybackStarted,
    RecordingFailed,
    RecordingSaved,
    Release,
    StartRecording,
    StreamEnded,
    StreamStarted,
    Transcribed,
)
from callroom.model.messages import (
    AcceptSipCall,
    AdmissionReport,
    DrainSip,
    FileReady,
    FileWanted,
    IncomingSipCall,
    RefuseSipCall,
    SipAnswered,
    SipConfig,
    SipFact,
    SipFailed,
    SipHangup,
    SipMediaTimeout,
    SipQuality,
    SipReferProgress,
)
from callroom.model.numbers import NO_NUMBERS, NumberPlan
from callroom.model.records import Account
from callroom.model.trunks import TrunkSettings
from callroom.outbound import AddressPolicy
from callroom.store import cooperative, nodes
from callroom.store.blobs import DEFAULT_CACHE_BYTES, Blobs, recording_key
from callroom.store.engine import Store
from callroom.store.outbox import PendingDelivery
from callroom.store.trunk_config import put_trunks
from callroom.trunk_sync import TrunkSync
from callroom.webhooks.dispatcher import BACKOFF, Dispatcher
from callroom.webhooks.signing import WebhookSigner

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT = "default"
BLOBS_DROPPED = "blobs.dropped"  # a topic of the bus: the key of a stored file deleted or replaced
RELAY_POOL = 16  # a cluster's node keeps this many relay ports open ahead (a link across nodes then waits for none)


@dataclass
class NodeConfig:
    database_url: str
    data_dir: Path
    node_id: str | None = None
    webhook_concurrency: int = 64
    webhook_backoff: tuple[float, ...] = BACKOFF
    sip: SipConfig | None = field(default_factory=SipConfig)  # None: no SIP plane (virtual phones only)
    rate_limit: tuple[float, float] | None = (1000.0, 2000.0)  # per API key: requests/s and burst
    # A node that owns its process: once started, what exists then is kept out of the garbage collector's
    # full passes (``gc.freeze``), which walk every tracked object: 45-65 ms pauses of the whole API were
    # measured with the ~155,000 objects of a started node. Off for nodes embedded in another process.
    freeze_startup_objects: bool = False
    # An incoming call nobody answers or rejects is ended after this long (SIP 480; 0: never).
    ring_timeout_secs: float = DEFAULT_RING_TIMEOUT_SECS
    # Webhook and media URLs may name public addresses only, and these networks ("127.0.0.0/8", "::1/128"
    # for receivers on this machine): an application's URLs must not reach the node's own services or its
    # network (callroom/outbound.py). None are allowed unless said.
    allow_url_networks: tuple[str, ...] = ()
    # Where this node's API answers (as other nodes and `callroom cluster status` show it).
    api_url: str | None = None
    # The cluster's heartbeat: every ``heartbeat_secs``; a node silent for ``node_ttl_secs`` is dead.
    heartbeat_secs: float = HEARTBEAT_SECS
    node_ttl_secs: float = TIME_TO_LIVE_SECS
    # A cluster's bus (``nats://host:4222``): nodes on one PostgreSQL database with a bus carry out each
    # other's calls' media (None: a node on its own).
    nats_url: str | None = None
    # Where the other nodes reach this node's relay legs (default: the SIP address, else 127.0.0.1).
    relay_host: str | None = None
    # A drain (SIGTERM, Ctrl-C, ``callroom drain``) lets the calls in progress run this long (callroom/drain.py).
    drain_grace_secs: float = DEFAULT_GRACE_SECS
    # Where numbers dialled through the API ring on this node (callroom/model/numbers.py).
    numbers: NumberPlan = NO_NUMBERS
    # One ``callroom.access`` line per API request (callroom/logs.py).
    access_log: bool = False
    # Overload control (``callroom/admission.py``): new calls past these limits are refused at once (SIP 503,
    # ``POST /calls`` 503 / 90115). ``Limits()``: none; ``callroom serve`` runs with ``Limits.defaults()``.
    admission: Limits = field(default_factory=Limits)
    # SIP trunks given at start (``--trunk``, a trunks file): created or changed in the default account, beside
    # those added through the API or ``callroom trunks`` (callroom/model/trunks.py).
    trunks: tuple[TrunkSettings, ...] = ()
    # Copies of stored files (recordings, uploads) kept in ``data_dir/files``, at most (callroom/store/blobs.py).
    file_cache_bytes: int = DEFAULT_CACHE_BYTES


def relay_host_of(config: NodeConfig) -> str:
    if config.relay_host:
        return config.relay_host
    sip = config.sip
    if sip is not None:
        host = sip.advertise or sip.host
        if host not in ("0.0.0.0", "::", ""):
            return host
    return "127.0.0.1"


def node_id_for(data_dir: Path) -> str:
    """A stable id for this node, kept in its data directory."""
    path = data_dir / "node-id"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    node_id = f"node-{uuid.uuid4().hex[:12]}"
    path.write_text(node_id + "\n")
    return node_id


def create_api_key(store: Store, account_name: str = DEFAULT_ACCOUNT, label: str | None = None) -> str:
    """A new API key for ``account_name`` (created if needed). Only its hash is stored."""
    key = "KEY" + secrets.token_urlsafe(32).replace("-", "A").replace("_", "B")
    with store.transaction() as tx:
        account = tx.get_account_by_name(account_name)
        if account is None:
            account = Account(id=str(uuid.uuid4()), name=account_name, created_at=time.time())
            tx.insert_account(account)
        tx.insert_api_key(str(uuid.uuid4()), account.id, key[:10], hash_key(key), label)
    return key


def recording_link_secret(store: Store) -> bytes:
    """The secret of public recording links, the same for every node of the database (the first one stored)."""
    with store.transaction() as tx:
        stored = tx.add_setting(signed_links.SECRET_SETTING, base64.b64encode(secrets.token_bytes(32)).decode())
    return base64.b64decode(stored)


def ensure_first_key(store: Store) -> str | None:
    """On a node's first start: create the default account and its first API key (returned once)."""
    with store.transaction() as tx:
        if tx.list_accounts():
            return None
    return create_api_key(store, DEFAULT_ACCOUNT, "created on first start")


class NodeMedia:
    """The node's media plane as the control plane sees it: virtual phones' signalling here, then
    everything else (SIP, audio legs, the engine) in the media process, in the same order."""

    def __init__(self, virtual_phones: VirtualPhones, media: MediaProcess, recordings_dir: Path) -> None:
        self.virtual_phones = virtual_phones
        self.media = media
        self.recordings_dir = recordings_dir
        # The conferences whose mix changed (a mute, a hold, a role: changes no webhook reports), for the console.
        self.on_conferences: Callable[[set[str]], None] = lambda _ids: None

    def apply(self, ops: list[MediaOp]) -> None:
        ops = [self._written_here(op) if isinstance(op, StartRecording) else op for op in ops]
        self.virtual_phones.apply(ops)
        self.media.apply(ops)
        mixes = {op.conference_id for op in ops if isinstance(op, ConferenceMix | MemberFlags)}
        if mixes:
            self.on_conferences(mixes)

    def _written_here(self, op: StartRecording) -> StartRecording:
        """A recording is written in this node's recordings folder (``<account>/<id>``), whichever node's API
        took the command, then stored for every node (``Node._store_recording``)."""
        path = Path(op.path)
        return dataclasses.replace(op, path=str(self.recordings_dir / path.parent.name / path.name))


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.store = Store(config.database_url)
        if config.nats_url and self.store.is_sqlite:
            raise StoreError("a cluster (a NATS URL) needs a PostgreSQL database shared by its nodes, not SQLite")
        self.store.migrate()
        if config.trunks:
            put_trunks(self.store, DEFAULT_ACCOUNT, config.trunks)
        self.node_id = config.node_id or node_id_for(config.data_dir)
        self.signer = WebhookSigner.load_or_create(self.store)
        self.link_secret = recording_link_secret(self.store)
        self.url_policy = AddressPolicy.allowing(config.allow_url_networks)
        self._quality: dict[str, dict[str, Any]] = {}  # call quality of SIP legs that just ended
        # Dials are admitted here with the media process's figures (it admits the INVITEs itself).
        self.admission = ReportedAdmission(config.admission)
        self.admission_report: AdmissionReport | None = None
        self.media = MediaProcess(config.sip, on_fact=self._handle_fact, on_sip_incoming=self._route_sip_call,
                                  on_sip_fact=self._handle_sip_fact, url_policy=self.url_policy,
                                  relay_host=relay_host_of(config), relay_pool=RELAY_POOL if config.nats_url else 0,
                                  limits=config.admission, on_admission=self._admission_report)
        # Recordings and uploads: in the database every node shares, copies in the data directory's ``files``.
        self.blobs = Blobs(self.store, config.data_dir / "files", config.file_cache_bytes)
        self._file_work: set[asyncio.Task[None]] = set()  # copies for the media process, recordings stored
        self.media.on_file_wanted = self._file_wanted
        self.virtual_phones = VirtualPhones(self.media)
        self.node_media = NodeMedia(self.virtual_phones, self.media, config.data_dir / "recordings")
        self.control = Control(self.store, self.node_id, self.node_media)
        self.control.ring_timeout_secs = config.ring_timeout_secs
        self.control.numbers = config.numbers
        self.trunks = TrunkSync(self.store, self.control, self.media, sip=config.sip is not None)
        directory = self.trunks.load()
        if config.sip is not None:  # the media process starts with every trunk it dials, registers and admits
            self.media.sip_config = dataclasses.replace(config.sip, trunks=tuple(directory.trunks.values()))
        self.control.admit_dial = self._admit_dial
        self.virtual_phones.bind(self.control)
        if config.sip is not None:
            self.control.dialable = ("virtual:", "sip:", "trunk:")
            self.control.quality_source = self._sip_quality
        if not self.store.is_sqlite:
            # PostgreSQL: API transactions run cooperatively on the loop, so round trips overlap instead
            # of stalling it. (SQLite is one writer and fast in-process: it stays inline.)
            self.control.cooperative = True
        self.dispatcher: Dispatcher | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self.membership: Membership | None = None
        self.bus: Bus | None = None
        self.cluster_media: ClusterMedia | None = None
        self._timer_wake = asyncio.Event()
        self._stopping = False
        self.drain = Drain(self.control, grace=config.drain_grace_secs, dispatcher=lambda: self.dispatcher,
                           mark_draining=self._mark_draining)
        self._started = False
        self.app: FastAPI = create_app(
            self.control, self.virtual_phones, self.signer.public_key_b64, self.config.data_dir / "recordings",
            rate_limit=config.rate_limit, lifespan=self._lifespan, url_policy=self.url_policy,
        )
        self.app.state.webhook_signer = self.signer
        self.app.state.blobs = self.blobs
        self.app.state.blob_dropped = self._blob_dropped  # a stored file deleted or replaced (routes_files.py)
        self.console_hub = ConsoleHub()  # the console's push channel (callroom/console)
        self.figures = OperationsFigures(self.store, self.node_id, self.media, self.console_hub,
                                         lambda: self.dispatcher, cooperative=self.control.cooperative)
        self.node_media.on_conferences = self._conferences_touched
        self.console_feed: ConsoleFeed | None = None  # a cluster's: the other nodes' events to these consoles
        self.app.state.console_hub = self.console_hub
        self.app.state.operations_figures = self.figures
        self.app.state.link_secret = self.link_secret  # public recording links (model/signed_links.py)
        self.app.state.cluster_media = None
        self.app.state.admission_metrics = self.admission_metrics
        self.app.state.trunks = self.trunks  # /v2/trunks and /v2/phone_numbers reload it after a change
        self.asgi: CompiledRoutes | logs.AccessLog = serving(self.app)  # what the HTTP server runs
        if config.access_log:
            self.asgi = logs.AccessLog(self.asgi)

    def _admission_report(self, report: AdmissionReport) -> None:
        self.admission_report = report
        self.admission.report(Load(report.calls, report.setup_backlog, report.tick_late_ms), report.budget,
                              report.at)

    def _admit_dial(self) -> None:
        refused = self.admission.decide(time.monotonic())
        if refused is not None:
            raise Overloaded(refused.reason, refused.detail, refused.retry_after)

    def admission_metrics(self) -> str:
        """The admission counters in Prometheus text: INVITEs (counted by the media process) and dials."""
        report = self.admission_report
        sip_refused = dict(report.refused) if report is not None else {}
        api = self.admission.admission
        lines = ["# HELP callroom_calls_admitted_total New calls admitted, by how they came (sip: INVITEs; api: "
                 "POST /calls).", "# TYPE callroom_calls_admitted_total counter",
                 f'callroom_calls_admitted_total{{via="sip"}} {report.admitted if report is not None else 0}',
                 f'callroom_calls_admitted_total{{via="api"}} {api.admitted}',
                 "# HELP callroom_calls_refused_total New calls refused at once (overload), by limit.",
                 "# TYPE callroom_calls_refused_total counter"]  # fmt: skip
        for reason in Reason:
            lines.append(f'callroom_calls_refused_total{{via="sip",reason="{reason}"}} {sip_refused.get(reason, 0)}')
            lines.append(f'callroom_calls_refused_total{{via="api",reason="{reason}"}} {api.refused[reason]}')
        return "\n".join(lines) + "\n"

    async def _sip_quality(self, call_control_id: str) -> dict[str, Any] | None:
        """A SIP leg's call_quality_stats from the media process (of the node it lives on, in a cluster),
        before the API releases the leg."""
        if call_control_id in self.virtual_phones.legs:
            return None
        try:
            # This node's media process first: it knows its own legs, with no read of the database.
            here = await self.media.quality(call_control_id, timeout=0.5)
            if here is not None or self.cluster_media is None:
                return here
            node = await cooperative.run_if(self.control.cooperative, self._node_of, call_control_id)
            if node is not None and node != self.node_id:
                return await self.cluster_media.quality(node, call_control_id)
            return None
        except Exception:  # no quality rather than a slow or failed hangup
            return None

    def _node_of(self, call_control_id: str) -> str | None:
        with self.store.transaction(read_only=True) as tx:
            call = tx.get_call_any_account(call_control_id)
        return call.node_id if call is not None else None

    async def _join_cluster(self, url: str) -> None:
        """Connect to the cluster's bus; from now on media instructions go where their calls live."""
        name = await cooperative.run_if(self.control.cooperative, self._cluster_name)
        bus = Bus(url, name, self.node_id, lambda request: media.serve(request))
        media = ClusterMedia(self.node_id, self.node_media, self.media, self.virtual_phones, bus,
                             alive=lambda node: self.membership is None or self.membership.alive(node))
        try:
            await bus.start()
        except Exception as exc:
            raise StoreError(f"cannot reach the cluster's bus at {url}: {type(exc).__name__}: {exc}") from exc
        self.bus, self.cluster_media = bus, media
        self.console_feed = ConsoleFeed(bus, self.console_hub, self.node_id)
        await self.console_feed.start()
        await bus.listen(BLOBS_DROPPED, self._heard_blob_dropped)
        self.control.placement = media
        self.app.state.cluster_media = media
        log.info("node %s joined cluster %s on %s", self.node_id, name, url)

    def _cluster_name(self) -> str:
        with self.store.transaction() as tx:
            return nodes.cluster_name(tx)

    @asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def _handle_fact(self, fact: MediaFact) -> None:
        try:
            match fact:
                case DtmfReceived(call_control_id=cid, digit=digit):
                    remote_fact(self.control, cid, lambda ctx: calls.dtmf_received(ctx, cid, digit))
                case FloorChanged(conference_id=conf_id, call_control_id=cid):
                    remote_fact(self.control, cid, lambda ctx: conferences.floor_changed(ctx, conf_id, cid))
                case PlaybackStarted(job_id=job):
                    job_fact(self.control, job, lambda ctx: media_facts.playback_started(ctx, job))
                case PlaybackEnded(job_id=job, status=status, detail=detail):
                    job_fact(self.control, job, lambda ctx: media_facts.playback_ended(ctx, job, status, detail))
                case GatherEnded(job_id=job, digits=digits, status=status):
                    job_fact(self.control, job, lambda ctx: media_facts.gather_ended(ctx, job, digits, status))
                case RecordingSaved():
                    self._spawn_file_work(self._store_recording(fact))
                case RecordingFailed(job_id=job, detail=detail):
                    job_fact(self.control, job, lambda ctx: media_facts.recording_failed(ctx, job, detail))
                case StreamStarted(job_id=job):
                    job_fact(self.control, job, lambda ctx: listening.stream_started(ctx, job))
                case StreamEnded(job_id=job, failure=failure):
                    job_fact(self.control, job, lambda ctx: listening.stream_ended(ctx, job, failure))
                case MachineDetection(job_id=job, kind=kind, result=result):
                    job_fact(self.control, job, lambda ctx: listening.machine_detection(ctx, job, kind, result))
                case Transcribed():
                    job_fact(self.control, fact.job_id, lambda ctx: listening.transcribed(ctx, fact))
        except Exception:
            log.exception("media fact %r failed", fact)

    # -- stored files ------------------------------------------------------------------------------------

    def _spawn_file_work(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._file_work.add(task)
        task.add_done_callback(self._file_work.discard)

    async def _settle_file_work(self) -> None:
        """Until the recordings being stored and the copies being made are done (a stopping node)."""
        while self._file_work:
            await asyncio.gather(*self._file_work, return_exceptions=True)

    async def _store_recording(self, fact: RecordingSaved) -> None:
        """A recording's file is written: stored in the database (so that any node serves it and it outlives
        this one) before its ``*.recording.saved`` is committed; the file stays here as this node's copy."""
        key = recording_key(Path(fact.path).name)
        job = fact.job_id
        try:
            await asyncio.to_thread(self.blobs.put_file, key, Path(fact.path))
        except Exception as exc:
            log.exception("recording %s could not be stored", job)
            detail = f"the recording could not be stored: {type(exc).__name__}"
            job_fact(self.control, job, lambda ctx: media_facts.recording_failed(ctx, job, detail))
            return
        job_fact(self.control, job, lambda ctx: media_facts.recording_saved(
            ctx, job, key, fact.size_bytes, fact.duration_millis, fact.started_at, fact.ended_at, fact.tracks,
            self.link_secret))

    async def _prune_files(self) -> None:
        try:
            removed = await asyncio.to_thread(self.blobs.prune)
        except Exception:
            log.exception("pruning this node's copies of stored files failed")
            return
        if removed:
            log.info("removed %d copies of stored files deleted meanwhile", removed)

    def _file_wanted(self, wanted: FileWanted) -> None:
        self._spawn_file_work(self._copy_for_media(wanted))

    async def _copy_for_media(self, wanted: FileWanted) -> None:
        try:
            path = await asyncio.to_thread(self.blobs.materialise, wanted.key)
        except Exception as exc:
            log.warning("stored file %s for the media process: %s", wanted.key, exc)
            self.media.send(FileReady(wanted.ask_id, None, str(exc)))
            return
        self.media.send(FileReady(wanted.ask_id, str(path)))

    async def _blob_dropped(self, key: str) -> None:
        """A stored file was deleted or replaced: this node's copy goes, and, in a cluster, the others' too
        (a node that misses the word removes its copy when it next starts: ``Blobs.prune``)."""
        await asyncio.to_thread(self.blobs.drop_copy, key)
        if self.bus is not None:
            await self.bus.tell(BLOBS_DROPPED, key.encode())

    def _heard_blob_dropped(self, data: bytes) -> None:
        self.blobs.drop_copy(data.decode(errors="replace"))

    # -- SIP: facts reported by the media process -------------------------------------------------------

    def _route_sip_call(self, call: IncomingSipCall) -> None:
        """An INVITE arrived: find the application its request-URI names, or refuse it with 404."""
        self.control.report(lambda: self._route(call))

    def _route(self, call: IncomingSipCall) -> None:
        if self.control.draining:  # (a cluster's front door tries another node)
            self.media.send(RefuseSipCall(call.sip_call_id, 503))
            return
        from_, to = call.from_, call.to
        target = self.trunks.inbound_target(call.trunk_ids, call.user, call.from_, call.to) if call.trunk_ids else 404
        if isinstance(target, tuple):  # from a trunk, to one of our numbers
            account_id, connection_id, from_, to = target
            with self.store.transaction() as tx:
                app = tx.get_application(account_id, connection_id)
        elif call.trunk_ids and not call.phone:  # from a trunk only: to one of our numbers, or nowhere
            self.media.send(RefuseSipCall(call.sip_call_id, target))
            return
        else:
            with self.store.transaction() as tx:
                app = tx.application_for_sip_user(call.user)
        if app is None or not app.active:
            self.media.send(RefuseSipCall(call.sip_call_id, 404))
            return
        try:
            leg = self.control.write(app.account_id, lambda ctx: calls.incoming(
                ctx, connection_id=app.id, from_=from_, to=to, endpoint=f"sip-in:{call.sip_call_id}",
                headers=call.headers))
        except Exception:
            log.exception("incoming SIP call %s failed", call.sip_call_id)
            self.media.send(RefuseSipCall(call.sip_call_id, 500))
            return
        self.media.send(AcceptSipCall(call.sip_call_id, leg.call_control_id))

    def _handle_sip_fact(self, fact: SipFact) -> None:
        try:
            match fact:
                case SipAnswered(call_control_id=cid):
                    remote_fact(self.control, cid, lambda ctx: calls.remote_answered(ctx, cid))
                case SipReferProgress(call_control_id=cid, phase=phase, status=status):
                    remote_fact(self.control, cid, lambda ctx: sip_actions.refer_progress(ctx, cid, phase, status))
                case SipFailed(call_control_id=cid, status=status):
                    remote_fact(self.control, cid, lambda ctx: calls.remote_failed(ctx, cid, status or 500))
                case SipQuality(call_control_id=cid, stats=stats):
                    self._quality[cid] = stats  # used by the hangup reported right after
                case SipMediaTimeout(call_control_id=cid):
                    quality = self._quality.pop(cid, None)
                    remote_fact(self.control, cid, lambda ctx: calls.media_timeout(ctx, cid, quality))
                case SipHangup(call_control_id=cid, cause=cause):
                    quality = self._quality.pop(cid, None)
                    remote_fact(self.control, cid,
                                lambda ctx: calls.remote_hangup(ctx, cid, cause or "200", quality=quality))
        except Exception:
            log.exception("SIP fact %r failed", fact)

    async def start(self) -> None:
        """Start the media process, the dispatcher, the cluster's membership and the timers (once: the HTTP
        server's lifespan calls this too). What started is stopped again when a later step fails."""
        if self._started:
            return
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self.media.start()
        log.info("webhook and media URLs may name %s", self.url_policy.describe())
        if self.config.sip is not None:
            log.info("SIP listening on udp %s:%s", self.config.sip.host, self.media.sip_port)
        self.dispatcher = Dispatcher(
            self.store, self.signer, concurrency=self.config.webhook_concurrency, backoff=self.config.webhook_backoff,
            cooperative=self.control.cooperative, url_policy=self.url_policy, owner=self.node_id,
        )
        self.control.on_events = self._committed_events
        self.app.state.webhook_dispatcher = self.dispatcher
        self.control.on_timers = self._timer_wake.set
        if self.config.nats_url:
            await self._join_cluster(self.config.nats_url)
        ended = await cooperative.run_if(self.control.cooperative, self.control.recover)
        if ended:
            log.warning("ended %d call legs left alive by a previous run of %s", ended, self.node_id)
        self.dispatcher.start()
        sip = self.config.sip
        self.membership = Membership(
            self.store, self.control, self.node_id, api_url=self.config.api_url,
            sip_host=(sip.advertise or sip.host) if sip is not None else None,
            sip_port=self.media.sip_port if sip is not None else None, load=self._load,
            took_over=self.dispatcher.reload, declared_dead=self._declared_dead, drain_asked=self.drain.start,
            reachable=lambda: self.bus is None or self.bus.connected,
            interval=self.config.heartbeat_secs,
            ttl=self.config.node_ttl_secs,
        )
        await self.membership.start()
        # Copies of files deleted while this node was down, and files a dead node left half-written.
        self._spawn_file_work(self._prune_files())
        self._timer_task = asyncio.create_task(self._timers(), name="control-timers")
        self.trunks.start()
        self.figures.start()
        if self.config.freeze_startup_objects:
            gc.collect()
            gc.freeze()

    async def _mark_draining(self) -> None:
        if self.config.sip is not None:  # INVITEs and a proxy's OPTIONS get 503 in the media process
            self.media.send(DrainSip(max(1, round(self.config.drain_grace_secs))))
        if self.membership is not None:
            await self.membership.draining()

    def _committed_events(self, rows: list[PendingDelivery]) -> None:
        """Outbox rows just committed: to the webhook dispatcher and to the account's open consoles."""
        assert self.dispatcher is not None
        self.dispatcher.enqueue(rows)
        self.console_hub.publish(rows)
        if self.console_feed is not None:
            self.console_feed.committed(rows)

    def _conferences_touched(self, conference_ids: set[str]) -> None:
        self.console_hub.touch(conference_ids)
        if self.console_feed is not None:
            self.console_feed.touched(conference_ids)

    def _declared_dead(self, ended: list[str]) -> None:
        """The cluster took this node for dead (cut off, or stalled) and ended its calls: their media here
        goes too (SIP legs get their BYE), and so do the relay legs of conferences moved meanwhile."""
        if self.cluster_media is not None:
            self.cluster_media.forget_relays()
        if ended:
            self.node_media.apply([Release(cid) for cid in ended])

    async def _load(self) -> dict[str, Any]:
        """What this node's heartbeat tells the cluster: its media legs and the tick's lateness."""
        stats = await self.media.stats(timeout=0.5)
        return {"legs": stats.legs, "conferences": stats.conferences, "tick_late_p99_ms": stats.tick.get("late_p99_ms"),
                "sip": stats.sip or {}}  # fmt: skip

    async def stop(self) -> None:
        await self.figures.stop()
        await self.trunks.stop()
        if self.membership is not None:
            await self.membership.stop()
        if self._timer_task:
            # Not cancelled mid-transaction: the loop ends after the pass under way.
            self._stopping = True
            self._timer_wake.set()
            await self._timer_task
        await self._settle_file_work()
        await self.control.settle_facts()
        if self.dispatcher:
            await self.dispatcher.stop()
        if self.console_feed is not None:
            await self.console_feed.stop()
        if self.bus is not None:
            await self.bus.close()
        await self.media.stop()
        await self._settle_file_work()
        await self.control.settle_facts()  # what the media process reported while stopping (kept in the outbox)
        if self.membership is not None and self.cluster_media is not None:
            await self.membership.hand_over_webhooks()
        self.store.dispose()

    async def _timers(self) -> None:
        while not self._stopping:
            self._timer_wake.clear()
            try:
                next_due = await self.control.arun_due_timers()
            except Exception:
                log.exception("timer pass failed")
                next_due = None
            delay = 1.0 if next_due is None else max(0.0, min(1.0, next_due - time.time()))
            with suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), delay)
