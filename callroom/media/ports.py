"""What the media engine needs from a leg's audio, whatever carries it (RTP from a SIP peer, or a
virtual phone inside the node), and what legs report back.

Every 20 ms the engine asks each leg for the frame it received (``pull_frame``), mixes, and gives each
leg the frame it should hear (``push_frame``). Frames are 160 int16 samples at 8 kHz.
"""

from __future__ import annotations

from typing import Protocol

from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Frame
from callroom.rtp.dtmf import DtmfCallback, DtmfDigit

__all__ = ["FRAME_SAMPLES", "SAMPLE_RATE", "AudioLeg", "DtmfCallback", "DtmfDigit", "Frame"]


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

