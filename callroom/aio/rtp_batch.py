"""Every RTP leg of the media engine, run once per tick as a batch.

Per leg and per 20 ms, a leg receives one packet and sends one. Done leg by leg (an event-loop callback per
datagram, a decode and an encode per frame) the Python overhead around those two system calls was most of
the media plane's cost. Here one tick does, for all legs at once:

1. ``receive``: one ``epoll`` poll over every leg's RTP socket, then one read per ready socket straight into
   the next row of a buffer of packets, with the kernel's receive time (again while sockets still hold
   datagrams). The headers of each leg's first datagrams, then of the second ones of the legs that had two,
   and so on, are checked and the usual ones taken as whole-array operations (``RtpLanes.receive``); any
   other datagram goes to its leg's receive path. Nothing runs between ticks, so a burst cannot delay a tick.
2. ``pull``: the playout step of every leg, then one G.711 table lookup decodes all the payloads as an
   (N, 160) array, and the in-band DTMF search checks all frames' power in one operation and classifies
   the loud ones with one matrix product (``DtmfDetector.find_digits``).
3. ``push``: one table lookup encodes every leg's output frame straight into a buffer of packets; the
   headers are written as one array and each packet is sent. A leg sending DTMF or on hold takes the
   ordinary ``push_frame`` instead.

A leg in its steady state runs in the arrays of ``RtpLanes`` (see there); any other leg, and any leg the
moment something unusual happens to it, runs leg by leg through ``RtpLeg``'s staged methods
(``next_payload``, ``take_frame``, ``send_encoded`` ...), which do what ``pull_frame``/``push_frame`` do.
At the end of a tick the legs that have settled are leased again.

Legs join with ``add`` (the batch reads their sockets from then on) and leave with ``discard`` (or by being
closed).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import select
import time
from collections.abc import Callable
from typing import Final, NoReturn

import numpy as np
from numpy.typing import NDArray

from callroom.aio.rtp_lanes import PACKET, RtpLanes
from callroom.aio.rtp_leg import RtpLeg
from callroom.aio.rtp_socket import (
    ANC_SPACE,
    MAX_DATAGRAM,
    TIMESPEC_SIZE,
    kernel_arrival,
    realtime_offset,
    timespec_arrival,
)
from callroom.audio.pcm import FRAME_SAMPLES, Frame
from callroom.rtp.dtmf import DtmfDetector
from callroom.rtp.g711 import ALAW_ENCODE, PT_PCMA, PT_PCMU, ULAW_ENCODE, decode_frame
from callroom.rtp.jitter import LOST

__all__ = ["RtpBatch"]

log = logging.getLogger(__name__)

_F: Final = FRAME_SAMPLES
_READ_ROUNDS: Final = 8  # polls per tick: a socket holding more datagrams than this catches up next tick
_NO_FRAMES: Final[Frame] = np.zeros((0, FRAME_SAMPLES), dtype=np.int16)
_ENCODE: Final = {PT_PCMU: ULAW_ENCODE, PT_PCMA: ALAW_ENCODE}
_NO_STAMP: Final = b"\xff" * 16  # a receive time the lanes cannot use (sec < 0)
_STAMPS: Final = TIMESPEC_SIZE == 16  # the kernel's timespec is two int64, as RtpLanes reads it

Addr = tuple[str, int]
Handler = Callable[[bytes, Addr, float], None]
_Datagram = tuple[int, bytes, list[tuple[int, int, bytes]], Addr]  # the lane, the datagram, ancillary data, source
# a lane's later datagram of a tick: which one (1: the second), the lane, its row, size, receive time, source
_Later = tuple[int, int, int, int, bytes, Addr]
_RecvInto = Callable[..., tuple[int, list[tuple[int, int, bytes]], int, Addr]]  # a socket's recvmsg_into
_Recv = Callable[..., tuple[bytes, list[tuple[int, int, bytes]], int, Addr]]  # and its recvmsg


def _no_recv(*args: object) -> NoReturn:
    raise BlockingIOError  # a lane without a socket to read


class RtpBatch:
    """The RTP legs of one engine, keyed like the engine's legs; see the module docstring for a tick."""

    def __init__(self) -> None:
        self._legs: dict[str, RtpLeg] = {}
        self._order: list[RtpLeg] = []  # self._legs' values
        self._lane_of: dict[str, int] = {}
        self._lane_at: NDArray[np.intp] = np.zeros(0, dtype=np.intp)  # the lane of each leg of _order
        self._pos_of: NDArray[np.intp] = np.zeros(0, dtype=np.intp)  # the place in _order of each lane
        self._lane_list: list[int] = []  # _lane_at as a list
        self.generation = 0  # changes whenever a leg joins or leaves
        self._lanes = RtpLanes(_READ_ROUNDS)
        self._handler: dict[int, Handler] = {}  # by lane: the leg's handler for a datagram
        self._lane_of_fd: list[int] = []  # by file descriptor: the lane reading it, or -1
        self._recv_into: list[_RecvInto] = []  # by lane
        self._recv: list[_Recv] = []
        self._fd_of: dict[str, int] = {}
        self.read_errors = 0
        self._poll = select.epoll() if hasattr(select, "epoll") else None
        self._detector = DtmfDetector()  # the classifier shared by the in-band search (no state)

    def __len__(self) -> int:
        return len(self._legs)

    def __contains__(self, key: object) -> bool:
        return key in self._legs

    @property
    def keys(self) -> list[str]:
        """The legs in the order ``push`` takes their frames."""
        return list(self._legs)

    def take(self, key: str, leg: object) -> bool:
        """Run ``leg`` here if it is an RTP leg (``add``); False if it is not."""
        if not isinstance(leg, RtpLeg):
            return False
        self.add(key, leg)
        return True

    def add(self, key: str, leg: RtpLeg) -> None:
        self.discard(key)
        sock = leg.join_batch(functools.partial(self.forget, leg))
        handler = leg.receive
        lane = self._lanes.add(leg, sock)
        fd = -1 if leg.closed else sock.fileno()  # a closed leg is run (it plays out, sends nothing), not read
        self._legs[key] = leg
        self._lane_of[key] = lane
        self._handler[lane] = handler
        self._changed()
        self._fd_of[key] = fd
        if fd >= 0:
            if fd >= len(self._lane_of_fd):
                self._lane_of_fd += [-1] * (fd + 1 - len(self._lane_of_fd))
            self._lane_of_fd[fd] = lane
            if lane >= len(self._recv):
                self._recv_into += [_no_recv] * (lane + 1 - len(self._recv))
                self._recv += [_no_recv] * (lane + 1 - len(self._recv))
            self._recv_into[lane], self._recv[lane] = sock.sock.recvmsg_into, sock.sock.recvmsg
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
        lane = self._lane_of.pop(key)
        self._lanes.remove(lane)
        del self._handler[lane]
        self._changed()
        fd = self._fd_of.pop(key)
        if 0 <= fd < len(self._lane_of_fd) and self._lane_of_fd[fd] == lane:
            self._lane_of_fd[fd] = -1
            self._recv_into[lane] = self._recv[lane] = _no_recv
            if self._poll is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._poll.unregister(fd)

    def _changed(self) -> None:
        self._order = list(self._legs.values())
        self._lane_at = np.array([self._lane_of[k] for k in self._legs], dtype=np.intp)
        self._pos_of = np.full(self._lanes.cap, -1, dtype=np.intp)
        self._pos_of[self._lane_at] = np.arange(len(self._lane_at))
        self._lane_list = self._lane_at.tolist()
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
        poll = self._poll
        if poll is None:  # no epoll (not Linux): try every socket, leg by leg
            count = 0
            for lane in [lane for lane in self._lane_of_fd if lane >= 0]:
                sock = self._lanes.socket(lane)
                if sock is not None:
                    count += sock.read(self._handler[lane], offset, _READ_ROUNDS)
            return count
        lanes = self._lanes
        pool = lanes.rx_rows
        src = lanes.src
        recv_into = self._recv_into
        lane_of_fd = self._lane_of_fd
        # Each lane's first datagram of the tick goes to the next row of the pool from the front, a later one
        # to the next from the back. Only plain values are kept (nothing the garbage collector tracks).
        got: list[int] = []  # the lane of the datagram in row i
        sizes: list[int] = []
        stamps: list[bytes] = []  # the kernel's receive time (SO_TIMESTAMPNS, the sockets' only ancillary data)
        addr_of: dict[int, Addr] = {}  # row -> the source, when it is not the lane's peer
        longer: dict[int, bytes] = {}  # row -> a datagram longer than a row
        ready = poll.poll(0)
        for fd, _events in ready:  # the first round: one datagram from each socket
            lane = lane_of_fd[fd]
            if lane < 0:
                continue
            row = len(got)
            try:
                size, ancillary, _flags, addr = recv_into[lane](pool[row], ANC_SPACE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # an ICMP error reported on the socket
                self.read_errors += 1
                continue
            got.append(lane)
            sizes.append(size)
            stamps.append(ancillary[0][2] if ancillary else _NO_STAMP)
            if addr != src[lane]:
                addr_of[row] = addr
            if size > PACKET:
                longer[row] = lanes.read(row, size)
        more: list[_Later] = []
        late: list[_Datagram] = []  # read when the pool ran out
        if ready:
            self._read_more(poll, got, sizes, stamps, addr_of, longer, more, late)
        count = len(got) + len(more) + len(late)
        if got:
            same = np.ones(len(got), dtype=np.bool_)
            if addr_of:
                same[list(addr_of)] = False
            self._take(np.arange(len(got)), got, sizes, stamps, same, addr_of, longer, offset)
        if more:  # every lane's second datagram after every lane's first, and so on
            more.sort(key=lambda m: m[0])
            start = 0
            while start < len(more):
                end = start
                while end < len(more) and more[end][0] == more[start][0]:
                    end += 1
                layer_reads = more[start:end]
                rows = [m[2] for m in layer_reads]
                addrs = [m[5] for m in layer_reads]
                lanes_of = [m[1] for m in layer_reads]
                self._take(np.array(rows, dtype=np.intp), lanes_of, [m[3] for m in layer_reads],
                           [m[4] for m in layer_reads],
                           np.array([a == src[lane] for a, lane in zip(addrs, lanes_of, strict=True)], dtype=np.bool_),
                           dict(zip(rows, addrs, strict=True)), longer, offset)
                start = end
        if late:
            self._hand_over(late, offset)
        return count

    def _read_more(self, poll: select.epoll, got: list[int], sizes: list[int], stamps: list[bytes],
                   addr_of: dict[int, Addr], longer: dict[int, bytes], more: list[_Later], late: list[_Datagram],
                   ) -> None:  # fmt: skip
        """The rounds after the first, while sockets hold datagrams: a lane's first datagram of the tick
        joins ``got`` (and the lists beside it), a later one goes to ``more`` (``late`` once the pool is
        full)."""
        lanes = self._lanes
        pool = lanes.rx_rows
        src = lanes.src
        recv_into, recv = self._recv_into, self._recv
        lane_of_fd = self._lane_of_fd
        seen = bytearray(lanes.cap)  # datagrams read per lane
        for lane in got:
            seen[lane] = 1
        back = len(pool)
        for _ in range(_READ_ROUNDS - 1):
            ready = poll.poll(0)
            if not ready:
                break
            for fd, _events in ready:
                lane = lane_of_fd[fd]
                if lane < 0:
                    continue
                layer = seen[lane]
                row = back - 1 if layer else len(got)
                try:
                    if row < len(got):
                        data, ancillary, _flags, addr = recv[lane](MAX_DATAGRAM, ANC_SPACE)
                        late.append((lane, data, ancillary, addr))
                        continue
                    size, ancillary, _flags, addr = recv_into[lane](pool[row], ANC_SPACE)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    self.read_errors += 1
                    continue
                seen[lane] = layer + 1
                stamp = ancillary[0][2] if ancillary else _NO_STAMP
                if size > PACKET:
                    longer[row] = lanes.read(row, size)
                if layer:
                    back = row
                    more.append((layer, lane, row, size, stamp, addr))
                    continue
                got.append(lane)
                sizes.append(size)
                stamps.append(stamp)
                if addr != src[lane]:
                    addr_of[row] = addr

    def _take(self, rows: NDArray[np.intp], got: list[int], sizes: list[int], stamps: list[bytes],
              same: NDArray[np.bool_], addr_of: dict[int, Addr], longer: dict[int, bytes], offset: float,
              ) -> None:  # fmt: skip
        """Datagrams read into ``rows`` of the pool, at most one per lane: the lanes take the usual ones, the
        legs the others (``same``: from the lane's peer; ``addr_of``: the source of the others, by row)."""
        lanes = self._lanes
        joined = b"".join(stamps)
        if not _STAMPS or len(joined) != 16 * len(stamps):
            joined = b"".join([s if _STAMPS and len(s) == 16 else _NO_STAMP for s in stamps])
        taken = lanes.receive(np.array(got, dtype=np.intp), rows, np.array(sizes, dtype=np.intp), same, joined,
                              offset)
        if taken.all():
            return
        handler = self._handler
        src = lanes.src
        monotonic = time.monotonic
        for i in np.flatnonzero(~taken).tolist():
            lane, row = got[i], int(rows[i])
            on_rtp = handler.get(lane)
            addr = addr_of.get(row) or src[lane]
            if on_rtp is None or addr is None:  # the leg left during this tick
                continue
            data = longer.get(row) or lanes.read(row, sizes[i])
            try:
                on_rtp(data, addr, timespec_arrival(stamps[i], offset) or monotonic())  # type: ignore[arg-type]
            except Exception:
                log.exception("RTP receive failed")

    def _hand_over(self, datagrams: list[_Datagram], offset: float) -> None:
        """Datagrams the lanes did not take, to their legs."""
        handler = self._handler
        monotonic = time.monotonic
        for lane, data, ancillary, addr in datagrams:
            on_rtp = handler.get(lane)
            if on_rtp is None:  # the leg left during this tick
                continue
            arrival = kernel_arrival(ancillary, offset) if ancillary else 0.0
            try:
                on_rtp(data, addr, arrival or monotonic())
            except Exception:
                log.exception("RTP receive failed")

    # -- 2. pull -----------------------------------------------------------------------------------

    def pull(self) -> tuple[list[int], Frame]:
        """Every leg's frame for this tick: the positions (in the order of ``keys``) of the legs that have
        one, and their frames, row for row."""
        legs = self._order
        if not legs:
            return [], _NO_FRAMES
        now = legs[0].loop_time()
        lanes = self._lanes
        played, fast_frames = lanes.play(now)
        got_legs: list[RtpLeg] = []
        got_at: list[int] = []
        payloads: list[bytes] = []
        concealed: list[tuple[int, RtpLeg, Frame]] = []
        for i in self._by_leg():
            leg = legs[i]
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
        fast_audible = lanes.audible(played, now)
        heard = [leg.take_frame(frames[row], now) for row, leg in enumerate(got_legs)]
        self._search_inband(played, fast_frames, got_legs, frames, now)

        at: list[int] = self._pos_of[played[fast_audible]].tolist()
        parts = [fast_frames if len(at) == len(played) else fast_frames[fast_audible]]
        if got_legs:
            at += [i for i, ok in zip(got_at, heard, strict=True) if ok]
            parts.append(frames if all(heard) else frames[np.array(heard, dtype=np.bool_)])
        for i, leg, frame in concealed:
            if leg.audible(now):
                at.append(i)
                parts.append(frame[None])
        return at, np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _by_leg(self) -> list[int]:
        """The positions of the legs not running in the lanes."""
        result: list[int] = np.flatnonzero(~self._lanes.leased_mask()[self._lane_at]).tolist()
        return result

    @staticmethod
    def _decode(legs: list[RtpLeg], payloads: list[bytes]) -> Frame:
        if not payloads:
            return _NO_FRAMES
        joined = b"".join(payloads)
        if len(joined) != len(payloads) * _F:  # not one 20 ms frame each (never, from the jitter buffer)
            return np.stack([decode_frame(leg.decode_table, p, _F) for leg, p in zip(legs, payloads, strict=True)])
        codes = np.frombuffer(joined, dtype=np.uint8).reshape(len(payloads), _F)
        tables = [leg.decode_table for leg in legs]
        first = tables[0]
        if all(t is first for t in tables):
            return np.take(first, codes)
        frames = np.empty((len(payloads), _F), dtype=np.int16)
        for table in {id(t): t for t in tables}.values():
            rows = [i for i, t in enumerate(tables) if t is table]
            frames[rows] = np.take(table, codes[rows])
        return frames

    def _search_inband(self, played: NDArray[np.intp], fast_frames: Frame, legs: list[RtpLeg], frames: Frame,
                       now: float) -> None:  # fmt: skip
        """In-band DTMF: the power check for every frame at once, the classification of the loud ones in one
        matrix product; each leg's detector then advances as ``RtpLeg.pull_frame`` would advance it."""
        lanes = self._lanes
        wanted_fast = lanes.wants_inband(played)
        fast_rows = played[wanted_fast]
        wanted = [i for i, leg in enumerate(legs) if leg.wants_inband]
        if not len(fast_rows) and not wanted:
            return
        searched = np.concatenate([fast_frames[wanted_fast], frames[wanted]]) if wanted else fast_frames[wanted_fast]
        x = searched.astype(np.float32)
        power = np.einsum("ij,ij->i", x, x) * np.float32(4.0 / _F)
        loud = power >= np.float32(self._detector.min_power)
        loud_rows = np.flatnonzero(loud)
        found = self._detector.find_digits(searched[loud_rows]) if len(loud_rows) else {}
        digits = {int(loud_rows[j]): d for j, d in found.items()}
        n = len(fast_rows)
        steps = lanes.inband(fast_rows, loud[:n], {row: d for row, d in digits.items() if row < n})
        for j, is_loud in enumerate(loud[n:].tolist()):  # the legs run leg by leg
            leg = legs[wanted[j]]
            if is_loud:
                leg.dtmf_in.classified(digits.get(n + j), now)
            else:
                leg.dtmf_in.quiet(now)
        if steps:
            lanes.advance(steps, now)

    # -- 3. push -----------------------------------------------------------------------------------

    def push(self, frames: Frame) -> None:
        """Send every leg its frame: ``frames`` is (len(self), 160), in the order of ``keys``."""
        legs = self._order
        n = len(legs)
        if not n:
            return
        if frames.shape != (n, _F):
            raise ValueError(f"push needs ({n}, {_F}) frames, got {frames.shape}")
        lanes = self._lanes
        lane_at = self._lane_at
        by_leg = self._by_leg()
        pts = lanes.payload_types(lane_at)  # of the leased lanes; the others' legs know theirs
        if by_leg:
            pts[by_leg] = [legs[i].payload_type for i in by_leg]
        payload = lanes.tx["payload"]
        samples = frames.view(np.uint16)
        if (pts == pts[0]).all():
            payload[lane_at] = np.take(_ENCODE[int(pts[0])], samples)
        else:
            for pt, table in _ENCODE.items():
                rows = pts == pt
                payload[lane_at[rows]] = np.take(table, samples[rows])
        lanes.send()
        buf = lanes.tx_buf
        view = memoryview(buf)
        lane_list = self._lane_list
        try:
            for i in by_leg:
                leg = legs[i]
                try:
                    if not leg.send_encoded(buf, view, lane_list[i] * PACKET):
                        leg.push_frame(frames[i])
                except Exception:
                    log.exception("leg failed to take a frame")
        finally:
            view.release()
        if self._poll is not None:
            for i in by_leg:
                lanes.lease(lane_list[i])
