"""What a node is started with (``NodeConfig``): ``callroom serve``'s options (callroom/config.py) once read,
or what a test or a benchmark embedding a node chooses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from callroom.admission import Limits
from callroom.cluster.membership import HEARTBEAT_SECS, TIME_TO_LIVE_SECS
from callroom.control.service import DEFAULT_RING_TIMEOUT_SECS
from callroom.drain import DEFAULT_GRACE_SECS
from callroom.model.messages import SipConfig
from callroom.model.numbers import NO_NUMBERS, NumberPlan
from callroom.model.trunks import TrunkSettings
from callroom.store.blobs import DEFAULT_CACHE_BYTES
from callroom.webhooks.dispatcher import BACKOFF


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
