"""A callroom node: the store, the control plane, the media plane, the webhook dispatcher and the API,
wired together and started and stopped as one."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from callroom import logs
from callroom.admission import Load, Reason, ReportedAdmission
from callroom.api.app import create_app, serving
from callroom.api.compiled import CompiledRoutes
from callroom.cluster.bus import Bus
from callroom.cluster.console_feed import ConsoleFeed
from callroom.cluster.media import ClusterMedia
from callroom.cluster.membership import Membership
from callroom.console.figures import OperationsFigures
from callroom.console.hub import ConsoleHub
from callroom.control import calls, conferences, listening, media_facts, sip_actions
from callroom.control.service import Control, job_fact, remote_fact
from callroom.drain import Drain
from callroom.endpoints.media_process import MediaProcess
from callroom.endpoints.virtual import VirtualPhones
from callroom.errors import Overloaded, StoreError
from callroom.identity import DEFAULT_ACCOUNT, node_id_for, recording_link_secret
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
    IncomingSipCall,
    RefuseSipCall,
    SipAnswered,
    SipFact,
    SipFailed,
    SipHangup,
    SipMediaTimeout,
    SipQuality,
    SipReferProgress,
)
from callroom.node_config import NodeConfig, relay_host_of
from callroom.node_files import NodeFiles
from callroom.outbound import AddressPolicy
from callroom.store import cooperative, nodes
from callroom.store.blobs import Blobs
from callroom.store.engine import Store
from callroom.store.outbox import PendingDelivery
from callroom.store.trunk_config import put_trunks
from callroom.trunk_sync import TrunkSync
from callroom.webhooks.dispatcher import Dispatcher
from callroom.webhooks.signing import WebhookSigner

log = logging.getLogger(__name__)

RELAY_POOL = 16  # a cluster's node keeps this many relay ports open ahead (a link across nodes then waits for none)


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
        took the command, then stored for every node (``NodeFiles.recording_saved``)."""
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
        self.virtual_phones = VirtualPhones(self.media)
        self.node_media = NodeMedia(self.virtual_phones, self.media, config.data_dir / "recordings")
        self.control = Control(self.store, self.node_id, self.node_media)
        self.files = NodeFiles(self.blobs, self.media, self.control, self.link_secret, config.data_dir / "media")
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
        self._timer_look_at = math.inf  # when the timer loop looks next (wall clock, as timers are)
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
        self.app.state.blob_dropped = self.files.dropped  # a stored file deleted or replaced (routes_files.py)
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
        await self.files.join(bus)
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
                    self.files.recording_saved(fact)
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
        self.control.on_timers = self._timer_set
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
        self.files.start()
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
        await self.files.stop()
        await self.control.settle_facts()
        if self.dispatcher:
            await self.dispatcher.stop()
        if self.console_feed is not None:
            await self.console_feed.stop()
        if self.bus is not None:
            await self.bus.close()
        await self.media.stop()
        await self.files.settle()
        await self.control.settle_facts()  # what the media process reported while stopping (kept in the outbox)
        if self.membership is not None and self.cluster_media is not None:
            await self.membership.hand_over_webhooks()
        self.store.dispose()

    def _timer_set(self, due_at: float) -> None:
        """A command here set a timer: look again now if it is due before the loop planned to."""
        if due_at < self._timer_look_at:
            self._timer_wake.set()

    async def _timers(self) -> None:
        """Fire due timers: a pass when the soonest is due, when a command here sets a sooner one, and at
        least every second (timers set through other nodes)."""
        while not self._stopping:
            self._timer_wake.clear()
            self._timer_look_at = math.inf  # during the pass every new timer counts (the pass may miss it)
            try:
                next_due = await self.control.arun_due_timers()
            except Exception:
                log.exception("timer pass failed")
                next_due = None
            delay = 1.0 if next_due is None else max(0.0, min(1.0, next_due - time.time()))
            self._timer_look_at = time.time() + delay
            with suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), delay)
