"""What nodes of a cluster ask each other over the bus, and answer. One frozen dataclass per message;
``wire.py`` turns them into bytes and back.

    Apply          media instructions for the calls and conferences that live on the node asked, with where
                   every call and conference they name lives (``Placements``)          -> Done
    Link           open a relay leg bridged to a call of the node asked, sending to the
                   relay leg another node opened for it                              -> Linked
    PhoneKeys      a virtual phone of the node asked presses keys                    -> Done
    PhoneHangup    a virtual phone of the node asked hangs up                        -> Done
    PhoneHeard     what a virtual phone of the node asked heard                      -> PhoneAudio
    CallQuality    a SIP leg's call_quality_stats, before the call is ended          -> Quality

Any request may instead be answered with ``Failed`` (the node could not do it, and says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from callroom.model.media import MediaOp

Placements: TypeAlias = tuple[tuple[str, str], ...]
"""(call_control_id or conference id, node id) pairs: where each lives."""


@dataclass(frozen=True, slots=True)
class Apply:
    ops: tuple[MediaOp, ...]
    placements: Placements = ()


@dataclass(frozen=True, slots=True)
class Link:
    relay_id: str  # the relay leg's name on the node asked
    call_control_id: str  # the node's own call it is bridged to
    remote: tuple[str, int]  # where it sends: the other node's relay leg


@dataclass(frozen=True, slots=True)
class PhoneKeys:
    call_control_id: str
    digits: str
    duration_ms: int = 100


@dataclass(frozen=True, slots=True)
class PhoneHangup:
    call_control_id: str


@dataclass(frozen=True, slots=True)
class PhoneHeard:
    call_control_id: str
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class CallQuality:
    call_control_id: str


@dataclass(frozen=True, slots=True)
class Done:
    found: bool = True  # False: the node asked has no such call or phone


@dataclass(frozen=True, slots=True)
class Linked:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class PhoneAudio:
    samples: bytes | None  # 8 kHz 16-bit little-endian; None: no such phone


@dataclass(frozen=True, slots=True)
class Quality:
    stats: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Failed:
    detail: str


BusRequest: TypeAlias = Apply | Link | PhoneKeys | PhoneHangup | PhoneHeard | CallQuality
BusReply: TypeAlias = Done | Linked | PhoneAudio | Quality | Failed
BusMessage: TypeAlias = BusRequest | BusReply
