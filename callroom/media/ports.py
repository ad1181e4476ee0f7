"""What the media engine needs from a leg's audio, whatever carries it (RTP from a SIP peer, or a
virtual phone inside the node), and what legs report back.

Every 20 ms the engine asks each leg for the frame it received (``pull_frame``), mixes, and gives each
leg the frame it should hear (``push_frame``). Frames are 160 int16 samples at 8 kHz.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Frame
from callroom.rtp.dtmf import DtmfCallback, DtmfDigit

__all__ = ["FRAME_SAMPLES", "SAMPLE_RATE", "AudioLeg", "DtmfCallback", "DtmfDigit", "Frame", "LegBatch"]


class AudioLeg(Protocol):
    """One leg's audio as the mixer sees it."""

    def pull_frame(self) -> Frame | None:
        """The next 20 ms received from the far end (concealed if lost), or None if it sends nothing."""
        ...

    def push_frame(self, frame: Frame) -> None:
        """The 20 ms this leg should hear now (encoded and sent, or recorded)."""
        ...

    def send_dtmf(self, digits: str, duration_ms: int) -> None:
        """Send digits to the far end (RFC 4733 for RTP legs)."""
        ...

    def close(self) -> None: ...


class LegBatch(Protocol):
    """Legs of one kind run together once per tick instead of leg by leg (``aio.rtp_batch.RtpBatch`` for
    RTP legs): each tick the engine calls ``receive``, ``pull`` for their frames and ``push`` with what each
    should hear, in the order of ``keys``."""

    @property
    def keys(self) -> list[str]:
        """The legs in the batch, in the order ``pull`` and ``push`` use."""
        ...

    @property
    def generation(self) -> int:
        """Changes whenever a leg joins or leaves."""
        ...

    def __len__(self) -> int: ...

    def take(self, key: str, leg: AudioLeg) -> bool:
        """Run ``leg`` in the batch if it is of the batch's kind; False if not (the engine runs it)."""
        ...

    def discard(self, key: str) -> None:
        """Stop running the leg (if the batch runs it)."""
        ...

    def receive(self) -> int:
        """Read what arrived for the legs; returns how many datagrams."""
        ...

    def pull(self) -> tuple[list[int], NDArray[np.int16]]:
        """The positions (in ``keys``) of the legs that have a frame this tick, and their frames, row for row."""
        ...

    def push(self, frames: NDArray[np.int16]) -> None:
        """Every leg's frame to hear, in the order of ``keys``."""
        ...

    def close(self) -> None: ...
