"""Every message that crosses a process: between the API process and its media process today, between
nodes over a bus later. One frozen dataclass per message; ``codec.py`` turns them into bytes and back.

    API -> media     Instructions (the control plane's MediaOps), AddVirtualLeg, RemoveLeg, PressKeys,
                     AcceptSipCall, RefuseSipCall, UseRelay, RelayPeer, SetTrunks, the requests (HeardRequest,
                     QualityRequest, StatsRequest, OpenRelay), Stop
    media -> API     Ready, RelayPorts, the MediaFacts of ``media.py`` as they are, IncomingSipCall, the SIP
                     facts (SipAnswered, SipFailed, SipQuality, SipHangup, SipMediaTimeout,
                     SipReferProgress), TrunkStatus, MediaFigures
                     (unasked, twice a second), and one reply per request (HeardReply, QualityReply, StatsReply,
                     RelayOpened, or RequestFailed)

A request carries an id its reply repeats. ``SipConfig`` is what the media process is started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from callroom.model.media import AudioSpec, MediaFact, MediaOp
from callroom.model.trunks import Trunk

# -- the media process's start -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SipConfig:
    host: str = "127.0.0.1"
    port: int = 5060
    advertise: str | None = None  # the address put in Contact/SDP when host is a wildcard
    rtp_ports: tuple[int, int] = (20000, 30000)
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Digest credentials (username, password) callers must prove; empty: the networks above suffice.
    credentials: tuple[tuple[str, str], ...] = ()
    realm: str = "callroom"
    # An answered call whose far end sends nothing (no RTP, no RTCP) for this long, while not on hold, is hung
    # up (0: never). PBXs use 30-60 s.
    rtp_timeout: float = 60.0
    # Every SIP message in and out, whole, on the ``callroom.sip.trace`` log (``--sip-trace``).
    trace: bool = False
    # The SIP trunks (every account's, with their credentials): calls to numbers go out through them, and their
    # INVITEs come in by source address. Changed later with ``SetTrunks``.
    trunks: tuple[Trunk, ...] = ()
    # SIP over TCP and TLS besides UDP (None: not listened for; 0: a free port). TLS needs the server's
    # certificate and key (PEM files); trunks' certificates are checked against the system's CAs, or ``tls_ca``.
    tcp_port: int | None = None
    tls_port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None


# -- API -> media --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instructions:
    """What the control plane asks of the media plane, in order."""

    ops: tuple[MediaOp, ...]


@dataclass(frozen=True, slots=True)
class AddVirtualLeg:
    """A virtual phone answered: its audio (a tone, speech, a file, silence, keys pressed) becomes a leg of
    the engine."""

    call_control_id: str
    tone_hz: tuple[float, ...] = ()
    cadence_ms: tuple[int, ...] = ()  # the tone's cadence (``VirtualSpec``)
    beep_hz: float | None = None  # after the cadence or the speech
    speech: AudioSpec | None = None  # what it says once (say=: tts, play=: a URL or an uploaded file)


@dataclass(frozen=True, slots=True)
class RemoveLeg:
    call_control_id: str


@dataclass(frozen=True, slots=True)
class PressKeys:
    """A virtual phone's user presses keys (in-band tones in its audio)."""

    call_control_id: str
    digits: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class AcceptSipCall:
    """The control plane made a leg of an incoming SIP call: it rings until the application answers."""

    sip_call_id: str
    call_control_id: str


@dataclass(frozen=True, slots=True)
class RefuseSipCall:
    sip_call_id: str
    status: int


@dataclass(frozen=True, slots=True)
class SetTrunks:
    """The SIP trunks changed: the whole new set (registrations of trunks gone or changed start afresh)."""

    trunks: tuple[Trunk, ...]


@dataclass(frozen=True, slots=True)
class HeardRequest:
    """What a virtual phone heard: the last ``seconds`` (None: all it kept)."""

    request_id: int
    call_control_id: str
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class QualityRequest:
    """A SIP leg's call_quality_stats, for the hangup the API is about to report."""

    request_id: int
    call_control_id: str


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """The media process's figures; ``reset`` starts the tick figures afresh after reading them,
    ``per_leg`` adds every RTP leg's counters."""

    request_id: int
    reset: bool = False
    per_leg: bool = False


@dataclass(frozen=True, slots=True)
class OpenRelay:
    """A relay leg: an RTP port carrying one leg's audio to and from another node of the cluster (a member
    of a conference mixed elsewhere, or one side of a bridge across nodes). ``leg_id`` is its name in the
    engine; ``remote`` where it sends (None: not known yet, ``RelayPeer`` sets it); ``attach`` a local leg
    it is bridged to. Answered with ``RelayOpened``: where the other node sends."""

    request_id: int
    leg_id: str
    remote: tuple[str, int] | None = None
    attach: str | None = None


@dataclass(frozen=True, slots=True)
class UseRelay:
    """``OpenRelay`` with a relay port the media process opened ahead (``RelayPorts``): nothing to wait for."""

    leg_id: str
    port: int
    remote: tuple[str, int] | None = None
    attach: str | None = None


@dataclass(frozen=True, slots=True)
class RelayPeer:
    """Where a relay leg opened without one sends (and the only address it takes audio from)."""

    leg_id: str
    remote: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class DrainSip:
    """The node drains: new INVITEs get 503 with Retry-After at once, and OPTIONS 503, so that a proxy's probes
    take the node out of its set (the calls in progress go on)."""

    retry_after: int = 30


@dataclass(frozen=True, slots=True)
class FileReady:
    """The answer to ``FileWanted``: where this node's copy of the stored file is (``path``), or why there is
    none (``error``)."""

    ask_id: int
    path: str | None
    error: str | None = None


Request: TypeAlias = HeardRequest | QualityRequest | StatsRequest | OpenRelay
ToMedia: TypeAlias = (
    Instructions | AddVirtualLeg | RemoveLeg | PressKeys | AcceptSipCall | RefuseSipCall | UseRelay | RelayPeer
    | SetTrunks | DrainSip | Request | FileReady | Stop
)


# -- media -> API --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The media process runs; its SIP socket's port (None: no SIP)."""

    sip_port: int | None


@dataclass(frozen=True, slots=True)
class FileWanted:
    """The media process is to play a stored file (an upload, hold audio: ``AudioSpec("file", key)``) and
    reads files, not the database: its node makes a local copy and answers with ``FileReady``."""

    ask_id: int
    key: str


@dataclass(frozen=True, slots=True)
class NotStarted:
    """The media process could not start (its SIP socket could not be bound, ...): why, in one line."""

    reason: str


@dataclass(frozen=True, slots=True)
class RelayPorts:
    """Relay ports opened ahead, for ``UseRelay`` (at ``host``, where other nodes send)."""

    host: str
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class IncomingSipCall:
    """A new INVITE, for the control plane to route: answered with ``AcceptSipCall`` or ``RefuseSipCall``."""

    sip_call_id: str
    user: str
    from_: str
    to: str
    # The trunks its source address is of (several accounts may share a provider): routed by number.
    trunk_ids: tuple[str, ...] = ()
    # Its source is in the networks allowed to call in (--sip-allow): when no trunk's number matches, it is
    # routed as a phone's call (by user), as without trunks.
    phone: bool = True
    headers: tuple[tuple[str, str], ...] = ()  # the INVITE's X- headers and User-to-User


@dataclass(frozen=True, slots=True)
class SipAnswered:
    """The far end answered a call we placed."""

    call_control_id: str


@dataclass(frozen=True, slots=True)
class SipReferProgress:
    """How a REFER we sent on a leg fares: ``accepted`` (its 2xx), ``notified`` (a NOTIFY's sipfrag status),
    ``failed`` (its own final status, or 408 unanswered)."""

    call_control_id: str
    phase: str
    status: int


@dataclass(frozen=True, slots=True)
class SipFailed:
    """A call we placed was not answered: the final SIP status (404, 486, 488, 503 ...)."""

    call_control_id: str
    status: int


@dataclass(frozen=True, slots=True)
class SipQuality:
    """The call_quality_stats of a leg about to end: the hangup reported right after carries them."""

    call_control_id: str
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SipHangup:
    """The call ended on the far end's side or failed on the way to being answered: the SIP cause
    ("200" for a BYE, "487" cancelled, or the status we answered with)."""

    call_control_id: str
    cause: str


@dataclass(frozen=True, slots=True)
class SipMediaTimeout:
    """We hung up an answered call whose far end sent nothing for the RTP timeout."""

    call_control_id: str


@dataclass(frozen=True, slots=True)
class AdmissionReport:
    """The media process's admission figures (``callroom/admission.py``), sent when they change, at most
    every few ticks: the API process admits ``POST /calls`` with them and shows the counters."""

    calls: int  # calls up: SIP legs (ringing or answered, in or out) and virtual phones' legs
    setup_backlog: int  # INVITEs admitted that the control plane has not taken or refused yet
    tick_late_ms: float  # the media tick's recent lateness
    budget: float  # the per-second budget left at ``at`` (inf: no per-second limit)
    at: float  # time.monotonic() of the figures
    admitted: int  # INVITEs admitted so far
    refused: tuple[tuple[str, int], ...]  # INVITEs refused so far, by reason


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """A trunk's registration with its provider changed (``state``: registering, registered, failed,
    unregistered), with the status of the last answer and when the registration expires (wall clock)."""

    trunk_id: str
    state: str
    status: int | None = None
    expires_at: float | None = None
    detail: str = ""


SipFact: TypeAlias = SipAnswered | SipFailed | SipQuality | SipHangup | SipMediaTimeout | SipReferProgress


@dataclass(frozen=True, slots=True)
class MediaFigures:
    """The media process's operations figures, sent unasked every ``FIGURES_INTERVAL`` seconds (the API's
    ``/metrics`` and the console show them): legs and mixed conferences now, the lateness of the ticks
    since the last report (ms), SIP responses sent and received by status code since start, and who has
    the floor of each conference now (talker detection; conferences whose floor is free are left out)."""

    legs: int
    conferences: int
    ticks: int  # ticks run since start
    late_ms: tuple[float, float, float]  # p50, p99, max of the ticks since the last report (0s: none ran)
    sip_sent: dict[int, int]
    sip_received: dict[int, int]
    floors: dict[str, str]  # conference id -> call_control_id of its current talker
    streams: int = 0  # media streams open or opening (WebSockets)
    stream_frames_dropped: int = 0  # since start: audio messages slow stream servers did not take in time


FIGURES_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class HeardReply:
    request_id: int
    samples: NDArray[np.int16] | None  # None: no such virtual phone


@dataclass(frozen=True, slots=True)
class QualityReply:
    request_id: int
    stats: dict[str, Any] | None  # None: not a live SIP leg


@dataclass(frozen=True, slots=True)
class StatsReply:
    request_id: int
    tick: dict[str, float]  # lateness and work of the ticks since the last reset (``TickStats.summary``)
    legs: int
    ports: int
    conferences: int
    sip: dict[str, int] | None  # the SIP plane's counters (None: no SIP)
    rtp: dict[str, dict[str, Any]] = field(default_factory=dict)  # per RTP leg, when asked (``per_leg``)


@dataclass(frozen=True, slots=True)
class RelayOpened:
    request_id: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class RequestFailed:
    request_id: int
    error: str


Reply: TypeAlias = HeardReply | QualityReply | StatsReply | RelayOpened | RequestFailed
FromMedia: TypeAlias = (Ready | NotStarted | FileWanted | RelayPorts | MediaFact | IncomingSipCall | SipFact
                          | AdmissionReport | MediaFigures | TrunkStatus | Reply)
Message: TypeAlias = ToMedia | FromMedia
