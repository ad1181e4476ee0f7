"""What the control plane asks of the media plane, and what the media plane reports back.

This is the narrow interface between call control and media: the control plane never touches a socket,
a SIP dialog or an audio frame; it emits these instructions after its transaction commits, and the
media plane (virtual phones in-process today; SIP/RTP legs and the mixer next) carries them out and
reports far-end facts back through the ``Control.remote_*`` entry points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Ring:
    """Place an outgoing leg: ring ``endpoint`` (``virtual:...`` or a SIP URI)."""

    call_control_id: str
    endpoint: str
    from_: str
    to: str
    timeout_secs: int


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer an incoming leg that is ringing."""

    call_control_id: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse an incoming leg with a SIP status."""

    call_control_id: str
    sip_status: int


@dataclass(frozen=True, slots=True)
class Release:
    """End a leg from our side (BYE, or CANCEL while it rings)."""

    call_control_id: str


@dataclass(frozen=True, slots=True)
class Park:
    """The leg is connected to nothing: it hears silence and is heard by no one."""

    call_control_id: str


@dataclass(frozen=True, slots=True)
class Bridge:
    """Two legs hear each other."""

    a: str
    b: str


@dataclass(frozen=True, slots=True)
class HoldInQueue:
    """The leg waits in a queue hearing hold audio."""

    call_control_id: str
    queue_id: str


@dataclass(frozen=True, slots=True)
class ConferenceMember:
    call_control_id: str
    muted: bool
    on_hold: bool
    supervisor_role: str
    whisper_to: tuple[str, ...] = ()
    hold_audio: str | None = None


@dataclass(frozen=True, slots=True)
class ConferenceMix:
    """The whole who-hears-whom of one conference, as it should be from now on."""

    conference_id: str
    members: tuple[ConferenceMember, ...]
    comfort_noise: bool = True
    beep: str | None = None  # "enter" | "exit": play a beep to the conference now
    hold_audio: str | None = None


@dataclass(frozen=True, slots=True)
class ConferenceClosed:
    conference_id: str


MediaOp = Ring | Answer | Reject | Release | Park | Bridge | HoldInQueue | ConferenceMix | ConferenceClosed


@dataclass(slots=True)
class MediaBatch:
    ops: list[MediaOp] = field(default_factory=list)


class MediaPlane(Protocol):
    """Whatever carries out media instructions (the in-process engine, or a remote media node)."""

    def apply(self, ops: list[MediaOp]) -> None: ...


# -- facts the media plane reports back ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    call_control_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class FloorChanged:
    conference_id: str
    call_control_id: str


MediaFact = DtmfReceived | FloorChanged
