"""An RTP leg that speaks SRTP and SRTCP (RFC 3711) with keys agreed by SDES: every packet it sends is
protected, every packet it receives checked and decrypted before the ordinary leg sees it.

Only legs of calls that may be secure (a trunk with ``srtp`` on) are made of this class; plain legs are
``RtpLeg`` and pay nothing for it. A secure leg never enters the batch's array lanes (``steady`` is None) and
never has the batch send its packets (``send_encoded`` is False): each packet goes through ``receive`` and
``push_frame``, where libsrtp works on it.

Until the call's keys are known (``secure``), nothing is sent and nothing received is played; a call whose
negotiation ended in plain RTP (``plain``: an ``optional`` trunk whose far end did not take SRTP) is an
``RtpLeg`` in all but name, the lanes included.
"""

from __future__ import annotations

import asyncio
from typing import Any

from callroom.aio.rtp_leg import Addr, RtpLeg
from callroom.aio.rtp_socket import RtpSocket
from callroom.aio.rtp_steady import LegSteady
from callroom.audio.pcm import Frame
from callroom.rtp.srtp import SrtpContext

__all__ = ["SrtpLeg"]


class _SrtcpTransport(asyncio.DatagramTransport):
    """The leg's RTCP transport as its ``RtcpSession`` sees it: reports protected on the way out."""

    def __init__(self, inner: asyncio.DatagramTransport, leg: SrtpLeg) -> None:
        super().__init__()
        self._inner = inner
        self._leg = leg

    def sendto(self, data: Any, addr: Any = None) -> None:
        out = self._leg.protect_rtcp(bytes(data))
        if out is not None:
            self._inner.sendto(out, addr)

    def close(self) -> None:
        self._inner.close()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)


class SrtpLeg(RtpLeg):
    """``RtpLeg`` with libsrtp between it and the network. Create with ``open`` as an ``RtpLeg``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rtp: RtpSocket, rtcp: asyncio.DatagramTransport,
                 **kwargs: Any) -> None:  # fmt: skip
        self._srtp: SrtpContext | None = None
        self.keys: tuple[str, bytes, bytes] | None = None  # (suite, send key, receive key) in use
        self._plain = False
        self.auth_failures = 0  # packets that failed SRTP/SRTCP authentication (or came before the keys)
        super().__init__(loop, rtp, _SrtcpTransport(rtcp, self), **kwargs)

    def secure(self, suite: str, send_key: bytes, receive_key: bytes) -> None:
        """The keys the SDP offer and answer agreed (``sip.sdes.SrtpKeys``); may be called again to rekey."""
        self._own()  # out of the lanes first, if a plain call is becoming secure
        self._srtp = SrtpContext(suite, send_key, receive_key)
        self.keys = (suite, send_key, receive_key)
        self._plain = False

    def plain(self) -> None:
        """The negotiation ended in plain RTP: packets pass unchanged."""
        self._own()
        self._srtp = self.keys = None
        self._plain = True

    @property
    def suite(self) -> str | None:
        """The SRTP suite in use, or None (plain, or not negotiated yet)."""
        return self._srtp.suite if self._srtp is not None else None

    # ---- the batch: a secure leg's every packet through its own path ------------------------------
    def steady(self) -> LegSteady | None:
        return super().steady() if self._plain else None

    def send_encoded(self, buf: bytearray, view: memoryview, offset: int) -> bool:
        return super().send_encoded(buf, view, offset) if self._plain else False

    # ---- receive -----------------------------------------------------------------------------------
    def receive(self, data: bytes, addr: Addr, now: float) -> None:
        if self._plain:
            super().receive(data, addr, now)
            return
        if len(data) >= 2 and 192 <= data[1] <= 223:  # SRTCP multiplexed on the RTP port (RFC 5761)
            super().receive(data, addr, now)  # reaches _on_rtcp, which checks it
            return
        srtp = self._srtp
        plain = srtp.unprotect(bytes(data)) if srtp is not None else None
        if plain is None:
            self.auth_failures += 1
            return
        super().receive(plain, addr, now)

    def _on_rtcp(self, data: bytes, addr: Addr) -> None:
        if not self._plain:
            srtp = self._srtp
            plain = srtp.unprotect_rtcp(bytes(data)) if srtp is not None else None
            if plain is None:
                self.auth_failures += 1
                return
            data = plain
        super()._on_rtcp(data, addr)

    # ---- send --------------------------------------------------------------------------------------
    def push_frame(self, frame: Frame) -> None:
        """``RtpLeg.push_frame`` with the packet protected (or not sent before the keys are known)."""
        self._own()
        remote = self._remote
        data = self._tx.packet(frame, self._pt, self.encode_table, self._can_send and remote is not None
                               and not self._closed and (self._plain or self._srtp is not None))
        if data is None or remote is None:
            return
        if self._srtp is not None and not self._plain:
            data = self._srtp.protect(bytes(data))
        self._rtp.sendto(data, remote)

    def protect_rtcp(self, data: bytes) -> bytes | None:
        """An RTCP packet as it goes out: protected, unchanged on a plain call, None before the keys."""
        if self._plain:
            return data
        return self._srtp.protect_rtcp(data) if self._srtp is not None else None
