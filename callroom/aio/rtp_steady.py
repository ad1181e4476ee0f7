"""What passes between an RTP leg and the lanes that run it in its steady state (``rtp_lanes.py``).

A leg in its steady state (one in-order 20 ms packet a tick from its latched peer, nothing to conceal, no
DTMF to send) hands that state to a lane as a ``LegSteady`` (``steady``), is told how to ask for it back
(``lease``), and gets it back when anything unusual happens (``resume``); meanwhile its figures are brought
up to date on demand (``catch_up``). ``SteadyLeg`` is what the lanes need of a leg, so the leg knows
nothing of the lanes or the batch, and the lanes nothing of the rest of the leg.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple, Protocol

from callroom.audio.pcm import Frame
from callroom.rtp.leg_dtmf import DtmfIn

__all__ = ["WINDOW_FRAMES", "LegSteady", "SteadyLeg"]

Addr = tuple[str, int]

WINDOW_FRAMES: Final = 48
"""The frames a lane's jitter buffer takes: the next to play and the 47 after it (fewer than
``JitterBuffer`` holds, so a leg's buffer always fits)."""


class LegSteady(NamedTuple):
    """What a leg in its steady state hands to a lane, and gets back."""

    # the stream received: RFC 3550 statistics
    ssrc: int
    max_seq: int
    cycles: int
    received: int
    transit: int
    jitter: float
    # the jitter buffer
    last_ext: int
    jb_transit: int
    next: int
    offset: int
    jb_jitter: float
    frames: dict[int, bytes]
    # playout
    pt: int
    src: tuple[object, ...]  # the peer's address as the socket reports it
    playout: int
    last_rx: float
    last_rx_ts: int
    max_jitter: float
    silence_timeout: float
    wants_inband: bool
    quiet_frames: int
    inband_idle: bool
    # the stream sent
    out_ssrc: int
    seq: int
    ts: int
    marker: bool
    remote: Addr


class SteadyLeg(Protocol):
    """A leg as the lanes see it (``rtp_leg.RtpLeg``)."""

    @property
    def dtmf_in(self) -> DtmfIn:
        """Its DTMF receiver, which the lanes' in-band search advances."""
        ...

    def steady(self) -> LegSteady | None:
        """Its state, when it is in its steady state; None when it is not."""
        ...

    def lease(self, release: Callable[[], None], sync: Callable[[], None]) -> None:
        """The lanes now hold its state: ``release`` asks for it back, ``sync`` for its figures."""
        ...

    def resume(self, s: LegSteady, accepted: int, counted: int, sent: int, played_from: int,
               last_frame: Frame | None) -> None:  # fmt: skip
        """Its state back, with what happened to it while the lanes held it."""
        ...

    def catch_up(self, max_seq: int, cycles: int, received: int, transit: int, jitter: float, max_jitter: float,
                 counted: int, seq: int, ts: int, marker: bool, sent: int) -> None:  # fmt: skip
        """Its figures brought up to date, the lanes keeping its state."""
        ...
