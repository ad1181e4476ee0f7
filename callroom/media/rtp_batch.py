"""Every RTP leg of the media engine, run once per tick as a batch.

Per leg and per 20 ms, a leg receives one packet and sends one. Done leg by leg (an event-loop callback per
datagram, a decode and an encode per frame) the Python overhead around those two system calls was most of
the media plane's cost. Here one tick does, for all legs at once:

1. ``receive``: one ``epoll`` poll over every leg's RTP socket, then one read per ready socket (again while
   sockets still hold datagrams), each datagram handled by its leg's receive path (RFC 3550 statistics, the
   jitter buffer's fast path). Nothing runs between ticks, so a burst of packets cannot delay a tick.
2. ``pull``: each leg's playout step (``RtpLeg.next_payload``), then one G.711 table lookup decodes all the
   payloads as an (N, 160) array, and the in-band DTMF search checks all frames' power in one operation and
   classifies the loud ones with one matrix product (``DtmfDetector.classify_many``).
3. ``push``: one table lookup encodes every leg's output frame straight into a buffer of packets; each leg
   writes its 12-byte header in front of its payload and sends the packet (``RtpLeg.send_encoded``). A leg
   sending DTMF or on hold takes the ordinary ``push_frame`` instead.

Legs join with ``add`` (the batch reads their sockets from then on) and leave with ``discard`` (or by being
closed).
"""

from __future__ import annotations

import contextlib
import logging
import select
import time
from collections.abc import Callable
from typing import Final

import numpy as np
from numpy.typing import NDArray

from callroom.media.dtmf import DtmfDetector
from callroom.media.jitter import LOST
from callroom.media.ports import FRAME_SAMPLES, Frame
from callroom.media.rtp_leg import RtpLeg
from callroom.media.rtp_socket import ANC_SPACE, MAX_DATAGRAM, RtpSocket, kernel_arrival, realtime_offset

__all__ = ["RtpBatch"]

log = logging.getLogger(__name__)

_F: Final = FRAME_SAMPLES
_PACKET: Final = 12 + FRAME_SAMPLES
_READ_ROUNDS: Final = 8  # polls per tick: a socket holding more datagrams than this catches up next tick
_NO_FRAMES: Final[Frame] = np.zeros((0, FRAME_SAMPLES), dtype=np.int16)

Addr = tuple[str, int]
# the socket, its recvmsg, the leg's handler for its datagrams, the leg
_Reader = tuple[RtpSocket, Callable[..., tuple[bytes, list[tuple[int, int, bytes]], int, Addr]],
                Callable[[bytes, Addr, float], None], RtpLeg]


class RtpBatch:
    """The RTP legs of one engine, keyed like the engine's legs; see the module docstring for a tick."""

    def __init__(self) -> None:
        self._legs: dict[str, RtpLeg] = {}
        self._order: list[RtpLeg] = []  # self._legs' values
        self.generation = 0  # changes whenever a leg joins or leaves
        self._by_fd: dict[int, _Reader] = {}
        self._fd_of: dict[str, int] = {}
        self.read_errors = 0
        self._poll = select.epoll() if hasattr(select, "epoll") else None
        self._detector = DtmfDetector()  # the classifier shared by the in-band search (no state)
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._legs)

    def __contains__(self, key: object) -> bool:
        return key in self._legs

    @property
    def keys(self) -> list[str]:
        """The legs in the order ``push`` takes their frames."""
        return list(self._legs)

    def add(self, key: str, leg: RtpLeg) -> None:
        self.discard(key)
        sock, handler = leg.join_batch(self)
        fd = -1 if leg.closed else sock.fileno()  # a closed leg is run (it plays out, sends nothing), not read
        self._legs[key] = leg
        self._changed()
        self._fd_of[key] = fd
        if fd >= 0:
            self._by_fd[fd] = (sock, sock.sock.recvmsg, handler, leg)
            if self._poll is not None:
                self._poll.register(fd, select.EPOLLIN)

    def discard(self, key: str) -> None:
        """Stop running the leg (which goes back to being read by the event loop, unless closed)."""
        leg = self._legs.get(key)
        if leg is not None:
            self._drop(key, leg)
            leg.leave_batch()

    def forget(self, leg: RtpLeg) -> None:
        """The leg is closing: drop it (before its socket closes, so the fd is not yet reused)."""
        for key, known in list(self._legs.items()):
            if known is leg:
                self._drop(key, leg)

    def _drop(self, key: str, leg: RtpLeg) -> None:
        del self._legs[key]
        self._changed()
        fd = self._fd_of.pop(key)
        reader = self._by_fd.get(fd)
        if reader is not None and reader[3] is leg:
            del self._by_fd[fd]
            if self._poll is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._poll.unregister(fd)

    def _changed(self) -> None:
        self._order = list(self._legs.values())
        self.generation += 1

    def close(self) -> None:
        for key in list(self._legs):
            self.discard(key)
        if self._poll is not None:
            self._poll.close()

    # -- 1. receive --------------------------------------------------------------------------------

    def receive(self) -> int:
        """Read every datagram waiting on the legs' sockets (up to a bound per tick); returns how many."""
        if not self._legs:
            return 0
        offset = realtime_offset()
        count = 0
        poll = self._poll
        if poll is None:  # no epoll (not Linux): try every socket
            for sock, _recvmsg, handler, _leg in list(self._by_fd.values()):
                count += sock.read(handler, offset, _READ_ROUNDS)
            return count
        by_fd = self._by_fd
        monotonic = time.monotonic
        for _ in range(_READ_ROUNDS):
            ready = poll.poll(0)
            if not ready:
                break
            for fd, _events in ready:
                reader = by_fd.get(fd)
                if reader is None:
                    continue
                # RtpSocket.read(handler, offset, 1), inlined: this runs for every packet
                try:
                    data, ancillary, _flags, addr = reader[1](MAX_DATAGRAM, ANC_SPACE)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:  # an ICMP error reported on the socket
                    self.read_errors += 1
                    continue
                count += 1
                arrival = kernel_arrival(ancillary, offset) if ancillary else 0.0
                try:
                    reader[2](data, addr, arrival or monotonic())
                except Exception:
                    log.exception("RTP receive failed")
        return count

    # -- 2. pull -----------------------------------------------------------------------------------

    def pull(self) -> tuple[list[int], Frame]:
        """Every leg's frame for this tick: the positions (in the order of ``keys``) of the legs that have
        one, and their frames, row for row."""
        legs = self._order
        if not legs:
            return [], _NO_FRAMES
        now = legs[0].loop_time()
        got_at: list[int] = []
        got_legs: list[RtpLeg] = []
        payloads: list[bytes] = []
        concealed: list[tuple[int, RtpLeg, Frame]] = []
        for i, leg in enumerate(legs):
            try:
                got = leg.next_payload(now)
            except Exception:
                log.exception("RTP leg failed to give a frame")
                continue
            if got is None:
                continue
            if got is LOST:
                concealed.append((i, leg, leg.conceal()))
            else:
                assert isinstance(got, bytes)
                got_at.append(i)
                got_legs.append(leg)
                payloads.append(got)

        frames = self._decode(got_legs, payloads)
        self._search_inband(got_legs, frames, now)
        at: list[int] = []
        rows: list[int] = []
        for row, leg in enumerate(got_legs):
            if leg.take_frame(frames[row], now):
                at.append(got_at[row])
                rows.append(row)
        out = frames if len(rows) == len(got_legs) else frames[rows]
        audible_lost = [(i, frame) for i, leg, frame in concealed if leg.audible(now)]
        if audible_lost:
            at.extend(i for i, _ in audible_lost)
            out = np.concatenate([out, np.stack([frame for _, frame in audible_lost])])
        return at, out

    @staticmethod
    def _decode(legs: list[RtpLeg], payloads: list[bytes]) -> Frame:
        if not payloads:
            return _NO_FRAMES
        joined = b"".join(payloads)
        if len(joined) != len(payloads) * _F:  # not one 20 ms frame each (never, from the jitter buffer)
            return np.stack([_fit(leg.decode_table[np.frombuffer(p, dtype=np.uint8)])
                             for leg, p in zip(legs, payloads, strict=True)])
        codes = np.frombuffer(joined, dtype=np.uint8).reshape(len(payloads), _F)
        tables = [leg.decode_table for leg in legs]
        first = tables[0]
        if all(t is first for t in tables):
            return first[codes]
        frames = np.empty((len(payloads), _F), dtype=np.int16)
        for table in {id(t): t for t in tables}.values():
            rows = [i for i, t in enumerate(tables) if t is table]
            frames[rows] = table[codes[rows]]
        return frames

    def _search_inband(self, legs: list[RtpLeg], frames: Frame, now: float) -> None:
        """In-band DTMF: the power check for every frame at once, the classification of the loud ones in one
        matrix product; each leg's detector then advances as ``RtpLeg.pull_frame`` would advance it."""
        wanted = [i for i, leg in enumerate(legs) if leg.wants_inband]
        if not wanted:
            return
        searched = frames[wanted]
        x = searched.astype(np.float32)
        power = np.einsum("ij,ij->i", x, x) * np.float32(4.0 / _F)
        loud = power >= np.float32(self._detector.min_power)
        for j in np.flatnonzero(~loud).tolist():
            legs[wanted[j]].inband_quiet(now)
        loud_rows = np.flatnonzero(loud).tolist()
        if loud_rows:
            digits = self._detector.classify_many(searched[loud_rows])
            for j, digit in zip(loud_rows, digits, strict=True):
                legs[wanted[j]].inband_classified(digit, now)

    # -- 3. push -----------------------------------------------------------------------------------

    def push(self, frames: Frame) -> None:
        """Send every leg its frame: ``frames`` is (len(self), 160), in the order of ``keys``."""
        legs = self._order
        n = len(legs)
        if not n:
            return
        if frames.shape != (n, _F):
            raise ValueError(f"push needs ({n}, {_F}) frames, got {frames.shape}")
        if len(self._buf) < n * _PACKET:
            self._buf = bytearray(2 * n * _PACKET)
        buf = self._buf
        packets: NDArray[np.uint8] = np.frombuffer(buf, dtype=np.uint8, count=n * _PACKET).reshape(n, _PACKET)
        samples = frames.view(np.uint16)
        tables = [leg.encode_table for leg in legs]
        first = tables[0]
        if all(t is first for t in tables):
            packets[:, 12:] = first[samples]
        else:
            for table in {id(t): t for t in tables}.values():
                rows = [i for i, t in enumerate(tables) if t is table]
                packets[rows, 12:] = table[samples[rows]]
        view = memoryview(buf)
        try:
            for i, leg in enumerate(legs):
                try:
                    if not leg.send_encoded(buf, view, i * _PACKET):
                        leg.push_frame(frames[i])
                except Exception:
                    log.exception("leg failed to take a frame")
        finally:
            view.release()


def _fit(frame: Frame) -> Frame:
    """A decoded payload cut or padded to one frame, as ``RtpLeg.pull_frame`` does."""
    if len(frame) == _F:
        return frame
    return np.resize(frame, _F) if len(frame) > _F else np.pad(frame, (0, _F - len(frame)))
