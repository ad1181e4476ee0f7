"""Many RTP legs' steady state as arrays, one lane per leg, so that a tick runs the usual case of every leg
with a few numpy operations instead of a few dozen Python steps per leg.

The usual case: one 20 ms packet in per leg and tick, the next of its stream (same SSRC, the negotiated
payload type, no marker, from the latched peer), a frame to play that is in the jitter buffer, and one
packet out. A leg in that state hands it over (``steady``, then ``lease``: the contract is ``rtp_steady.py``)
and the lane's arrays are its state from then on: the RFC 3550 receive statistics (A.1 sequence numbers,
A.8 jitter), the jitter buffer (the frames of the next ``WINDOW_FRAMES`` periods, in a ring, and its own
jitter estimate), the playout clock, the in-band DTMF search's count of quiet frames, the sender's sequence
number, timestamp and marker. Each step here does what the leg's own code does for the same packet, with the
same integer and floating-point operations, so the figures do not depend on the path taken.

Anything else, and anything that changes the leg (a packet out of order or of another kind, a frame to
conceal, DTMF to send, a re-INVITE), first gives the state back (``release``, which calls ``RtpLeg.resume``);
the leg then runs leg by leg until the batch leases it again, at the end of a tick. What the leg reports
(``stats()``, its RTCP reports) is brought up to date without that (``sync``, ``RtpLeg.catch_up``).

The arrays are indexed by lane. Received datagrams are read straight into rows of ``rx_buf`` (in the order
read, one 172-byte row each) and their headers checked as one array; each lane has a 172-byte row in
``tx_buf`` where its outgoing packet is encoded and its header written, all lanes' at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, TypeVar

import numpy as np
from numpy.typing import NDArray

from callroom.aio.rtp_socket import MAX_DATAGRAM, RtpSocket
from callroom.aio.rtp_steady import WINDOW_FRAMES, LegSteady, SteadyLeg
from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Frame
from callroom.rtp.g711 import ALAW_DECODE, PT_PCMA, PT_PCMU, ULAW_DECODE
from callroom.rtp.leg_dtmf import DtmfIn

__all__ = ["HEADER", "PACKET", "RING_FRAMES", "RtpLanes"]

Addr = tuple[str, int]
_G = TypeVar("_G", bound=np.generic)

RING_FRAMES: Final = 64  # a lane's jitter buffer: a ring of frames, each in the slot of its timestamp
PACKET: Final = 12 + FRAME_SAMPLES  # a plain 20 ms G.711 packet
HEADER: Final = np.dtype([("b0", "u1"), ("b1", "u1"), ("seq", ">u2"), ("ts", ">u4"), ("ssrc", ">u4"),
                          ("payload", "u1", (FRAME_SAMPLES,))])
"""One plain packet: the fixed RTP header and 160 bytes of G.711."""

_F: Final = FRAME_SAMPLES
_K: Final = RING_FRAMES
_W: Final = WINDOW_FRAMES * FRAME_SAMPLES
_RESYNC: Final = 3 * FRAME_SAMPLES  # as RtpLeg: playout vs loop clock drift that re-anchors the playout clock
_RETRY: Final = 10  # ticks before a leg that could not be leased is tried again
_SHORT: Final = 2  # a lease given back within this many ticks counts as short
_MAX_PAUSE: Final = 63  # ticks: the longest pause after short leases (a leg whose peer sends nothing, say)
_DECODE: Final = {PT_PCMU: ULAW_DECODE, PT_PCMA: ALAW_DECODE}
_NO_FRAMES: Final[Frame] = np.zeros((0, FRAME_SAMPLES), dtype=np.int16)
_NO_LANES: Final[NDArray[np.intp]] = np.zeros(0, dtype=np.intp)

# Rows of RtpLanes.ints, those each step uses next to each other: receive [_SSRC, _RX), play [_NEXT, _PLAY),
# send [_PT, _TX). _HEAD is the first 32-bit word of the header expected, but for the sequence number:
# 0x80 << 24 | payload type << 16.
(_SSRC, _HEAD, _MAX_SEQ, _CYCLES, _RECEIVED, _TRANSIT, _LAST_EXT, _JB_TRANSIT, _LAST_RX_TS, _NEXT, _OFFSET,
 _PLAYOUT, _PT, _OUT_SSRC, _SEQ, _TS, _MARKER, _SENT, _QUIET, _MIN_OFF, _RECEIVED0, _COUNTED, _NEXT0,
 _INTS) = range(24)
# _SENT: packets sent since the leg's counters were last brought up to date; _COUNTED: packets received then;
# _RECEIVED0, _NEXT0: packets received and the next frame to play at the lease
_RX: Final = _NEXT + 1
_PLAY: Final = _PT + 1
_TX: Final = _SENT + 1
# rows of RtpLanes.floats (receive uses the first three)
_JITTER, _JB_JITTER, _LAST_RX, _MAX_JITTER, _SILENCE, _FLOATS = range(6)
# rows of RtpLanes.flags
_LEASED, _INBAND, _IDLE, _PLAYED, _FLAGS = range(5)


class RtpLanes:
    """The lanes of one batch. ``add`` gives a leg a lane; ``lease`` moves its steady state into the lane."""

    def __init__(self, reads_per_lane: int = 8) -> None:
        self.reads_per_lane = reads_per_lane  # datagrams a tick may read per lane: rows for as many
        self.cap = 0
        self.legs: list[SteadyLeg | None] = []
        self.src: list[tuple[object, ...] | None] = []  # leased lanes: the peer's address as read
        self._remote: list[Addr | None] = []  # leased lanes: where packets go
        self._dtmf: list[DtmfIn | None] = []
        self._socks: list[RtpSocket | None] = []
        self._sendto: list[Callable[[memoryview, Addr], object]] = []  # each lane's socket's sendto
        self._free: list[int] = []
        self._retry: list[int] = []  # per lane: the tick from which a lease may be tried again
        self._leased_at: list[int] = []  # per lane: the tick of its lease
        self._pause: list[int] = []  # per lane: ticks without a lease after one given back early (doubling)
        self.ticks = 0  # counted by ``play``
        self.ints: NDArray[np.int64] = np.zeros((_INTS, 0), dtype=np.int64)
        self.floats: NDArray[np.float64] = np.zeros((_FLOATS, 0), dtype=np.float64)
        self.flags: NDArray[np.bool_] = np.zeros((_FLAGS, 0), dtype=np.bool_)
        self._ring: NDArray[np.uint8] = np.zeros((0, _K, _F), dtype=np.uint8)
        self._has: NDArray[np.bool_] = np.zeros((0, _K), dtype=np.bool_)
        self._last: Frame = np.zeros((0, _F), dtype=np.int16)
        self.rx_buf = bytearray()
        self.tx_buf = bytearray()
        self._overflow = memoryview(bytearray(MAX_DATAGRAM - PACKET))
        self._resize(8)

    # -- lanes ------------------------------------------------------------------------------------

    def add(self, leg: SteadyLeg, sock: RtpSocket) -> int:
        if not self._free:
            self._resize(2 * self.cap)
        lane = self._free.pop()
        self.legs[lane] = leg
        self._socks[lane] = sock
        self._sendto[lane] = sock.sock.sendto
        self._retry[lane] = self._pause[lane] = 0
        self.flags[:, lane] = False
        return lane

    def remove(self, lane: int) -> None:
        self.release(lane)
        self.legs[lane] = self.src[lane] = self._remote[lane] = self._dtmf[lane] = self._socks[lane] = None
        self._sendto[lane] = _no_send
        self._free.append(lane)

    def _resize(self, cap: int) -> None:
        old = self.cap
        self.cap = cap
        self.legs += [None] * (cap - old)
        self.src += [None] * (cap - old)
        self._remote += [None] * (cap - old)
        self._dtmf += [None] * (cap - old)
        self._socks += [None] * (cap - old)
        self._sendto += [_no_send] * (cap - old)
        self._retry += [0] * (cap - old)
        self._leased_at += [0] * (cap - old)
        self._pause += [0] * (cap - old)
        self._free += range(cap - 1, old - 1, -1)  # the lowest lanes first
        self.ints = _grown(self.ints, cap, 1)
        self.floats = _grown(self.floats, cap, 1)
        self.flags = _grown(self.flags, cap, 1)
        self._ring = _grown(self._ring, cap, 0)
        self._has = _grown(self._has, cap, 0)
        self._last = _grown(self._last, cap, 0)
        rows = self.reads_per_lane * cap
        self.rx_buf = bytearray(rows * PACKET)  # rows for the datagrams of a tick, in the order read
        tx = self.tx_buf + bytearray((cap - old) * PACKET)
        tx[old * PACKET :: PACKET] = b"\x80" * (cap - old)  # RTP version 2, no padding, extension or CSRC
        self.tx_buf = tx
        self._rx_bytes: NDArray[np.uint8] = np.frombuffer(self.rx_buf, dtype=np.uint8).reshape(-1, PACKET)
        self.tx: NDArray[np.void] = np.frombuffer(self.tx_buf, dtype=HEADER)
        self._tx_words = np.frombuffer(self.tx_buf, dtype=">u4").reshape(-1, PACKET // 4)
        rx, txv = memoryview(self.rx_buf), memoryview(self.tx_buf)
        self.rx_rows = [[rx[i * PACKET : (i + 1) * PACKET], self._overflow] for i in range(rows)]
        """The buffers to read the i-th datagram of a tick into: its row, then what does not fit (shared)."""
        self.tx_rows = [txv[i * PACKET : (i + 1) * PACKET] for i in range(cap)]

    def read(self, row: int, size: int) -> bytes:
        """The datagram of ``size`` bytes read into ``row`` (just read, if longer than a row)."""
        if size <= PACKET:
            return bytes(self.rx_buf[row * PACKET : row * PACKET + size])
        return bytes(self.rx_buf[row * PACKET : (row + 1) * PACKET]) + bytes(self._overflow[: size - PACKET])

    # -- lease and release ------------------------------------------------------------------------

    def lease(self, lane: int) -> bool:
        """Run the lane's leg from the arrays, if it is in its steady state; True if it now is."""
        leg = self.legs[lane]
        if leg is None or self.flags[_LEASED, lane] or self._retry[lane] > self.ticks:
            return False
        self._retry[lane] = self.ticks + _RETRY  # unless it works
        s = leg.steady()
        if s is None or s.pt not in _DECODE:
            return False
        ring, has = self._ring[lane], self._has[lane]
        has[:] = False
        for ext, payload in s.frames.items():
            ahead = ext - s.next
            if not 0 <= ahead < _W or ahead % _F or len(payload) != _F:
                return False
            slot = (ext // _F) % _K
            ring[slot] = np.frombuffer(payload, dtype=np.uint8)
            has[slot] = True
        self.ints[:, lane] = (s.ssrc, 0x80 << 24 | s.pt << 16, s.max_seq, s.cycles, s.received, s.transit,
                              s.last_ext, s.jb_transit, s.last_rx_ts, s.next, s.offset, s.playout, s.pt, s.out_ssrc,
                              s.seq, s.ts, s.marker, 0, s.quiet_frames, leg.dtmf_in.detector.min_off_frames,
                              s.received, s.received, s.next)
        self.floats[:, lane] = (s.jitter, s.jb_jitter, s.last_rx, s.max_jitter, s.silence_timeout)
        self.flags[:, lane] = (True, s.wants_inband, s.inband_idle, False)
        self.src[lane], self._remote[lane], self._dtmf[lane] = s.src, s.remote, leg.dtmf_in
        leg.lease(functools.partial(self.release, lane), functools.partial(self.sync, lane))
        self._retry[lane], self._leased_at[lane] = 0, self.ticks
        return True

    def release(self, lane: int) -> None:
        """Give the leg its state back (it runs leg by leg until leased again). A leg that keeps leaving the
        lanes soon after joining them (its peer sends nothing, every packet is unusual ...) waits longer and
        longer before it is leased again: leasing and releasing every tick would cost more than running it leg
        by leg."""
        flags = self.flags
        if not flags[_LEASED, lane]:
            return
        flags[_LEASED, lane] = False
        pause = 0
        if self.ticks - self._leased_at[lane] < _SHORT:
            pause = min(_MAX_PAUSE, 2 * self._pause[lane] + 1)
        self._pause[lane] = pause
        self._retry[lane] = self.ticks + pause
        leg = self.legs[lane]
        assert leg is not None
        (ssrc, _head, max_seq, cycles, received, transit, last_ext, jb_transit, last_rx_ts, nxt, offset, playout, pt,
         out_ssrc, seq, ts, marker, sent, quiet, _min_off, received0, counted, next0) = self.ints[:, lane].tolist()
        jitter, jb_jitter, last_rx, max_jitter, silence = self.floats[:, lane].tolist()
        _leased, inband, idle, played = flags[:, lane].tolist()
        frames: dict[int, bytes] = {}
        has = self._has[lane].tolist()
        base = nxt // _F
        for k in range(WINDOW_FRAMES):
            slot = (base + k) % _K
            if has[slot]:
                frames[nxt + k * _F] = self._ring[lane, slot].tobytes()
        src, remote = self.src[lane], self._remote[lane]
        assert src is not None and remote is not None
        state = LegSteady(ssrc, max_seq, cycles, received, transit, jitter, last_ext, jb_transit, nxt, offset,
                          jb_jitter, frames, pt, src, playout, last_rx, last_rx_ts, max_jitter, silence, inband,
                          quiet, idle, out_ssrc, seq, ts, bool(marker), remote)
        leg.resume(state, received - received0, received - counted, sent, next0,
                   self._last[lane].copy() if played else None)

    def sync(self, lane: int) -> None:
        """Bring the figures the leg reports (``RtpLeg.stats``, RTCP) up to date, the lane keeping its state."""
        if not self.flags[_LEASED, lane]:
            return
        leg = self.legs[lane]
        assert leg is not None
        ints = self.ints
        max_seq, cycles, received, transit = ints[_MAX_SEQ : _TRANSIT + 1, lane].tolist()
        seq, ts, marker, sent = ints[_SEQ : _SENT + 1, lane].tolist()
        leg.catch_up(max_seq, cycles, received, transit, float(self.floats[_JITTER, lane]),
                     float(self.floats[_MAX_JITTER, lane]), received - int(ints[_COUNTED, lane]), seq, ts,
                     bool(marker), sent)
        ints[_COUNTED, lane], ints[_SENT, lane] = received, 0

    def leased(self) -> NDArray[np.intp]:
        return np.flatnonzero(self.flags[_LEASED])

    def leased_mask(self) -> NDArray[np.bool_]:
        """Per lane: run from the arrays (a view: it changes as lanes are leased and released)."""
        mask: NDArray[np.bool_] = self.flags[_LEASED]
        return mask

    def payload_types(self, lanes: NDArray[np.intp]) -> NDArray[np.int64]:
        """The payload type of each of ``lanes`` (meaningful for the leased ones)."""
        pts: NDArray[np.int64] = self.ints[_PT, lanes]
        return pts

    def socket(self, lane: int) -> RtpSocket | None:
        return self._socks[lane]

    # -- receive ----------------------------------------------------------------------------------

    def receive(self, lanes: NDArray[np.intp], rows: NDArray[np.intp], sizes: NDArray[np.intp],
                same_src: NDArray[np.bool_], stamps: bytes, offset: float) -> NDArray[np.bool_]:  # fmt: skip
        """A datagram for each of ``lanes`` (at most one each), read into ``rows`` of ``rx`` (``sizes`` bytes;
        ``same_src``: from the lane's peer; ``stamps``: the kernel's receive times, (sec, nsec) pairs of
        native int64, sec < 0 when unknown; ``offset``: ``realtime_offset()``). The usual ones of leased
        lanes are taken, as ``RtpLeg`` takes them; returns which were (the caller hands the others to their
        legs)."""
        stamp = np.frombuffer(stamps, dtype=np.int64).reshape(len(lanes), 2)
        head = self._rx_bytes[rows, :12].view(">u4").astype(np.int64)  # b0 b1 seq, timestamp, SSRC
        word, ts = head[:, 0], head[:, 1]
        c = self.ints[:_RX, lanes]
        last = c[_LAST_EXT]
        ext = last + (((ts - last + 0x80000000) & 0xFFFFFFFF) - 0x80000000)  # the jitter buffer's ts_diff
        ahead = ext - c[_NEXT]
        slot = (ext // _F) % _K
        # version 2 and nothing else in the first byte, no marker, the payload type, the next sequence number
        fast: NDArray[np.bool_] = ((word == (c[_HEAD] | ((c[_MAX_SEQ] + 1) & 0xFFFF))) & (head[:, 2] == c[_SSRC])
                                   & (ahead.view(np.uint64) < _W) & (ahead % _F == 0)
                                   & self.flags[_LEASED, lanes] & same_src & (sizes == PACKET) & (stamp[:, 0] >= 0))
        fast &= ~self._has[lanes, slot]
        if not fast.any():
            return fast
        if not fast.all():
            lanes, rows, stamp, word, ts, c, last, ext, slot = (
                lanes[fast], rows[fast], stamp[fast], word[fast], ts[fast], c[:, fast], last[fast], ext[fast],
                slot[fast])
        f = self.floats[:_LAST_RX + 1, lanes]
        now = stamp[:, 0] - offset + stamp[:, 1] * 1e-9  # as kernel_arrival
        arrival = (now * SAMPLE_RATE).astype(np.int64)
        # RtpReceiveStats.receive: the next packet of the stream
        seq = word & 0xFFFF
        c[_CYCLES] += (seq == 0) * 0x10000
        c[_MAX_SEQ] = seq
        c[_RECEIVED] += 1
        transit = arrival - ts
        jitter = f[_JITTER]
        jitter += (np.abs(((transit - c[_TRANSIT] + 0x80000000) & 0xFFFFFFFF) - 0x80000000) - jitter) / 16.0
        c[_TRANSIT] = transit
        # RtpLeg.receive
        f[_LAST_RX] = now
        c[_LAST_RX_TS] = ts
        # JitterBuffer.put_payload: in the window, new, room for it
        c[_LAST_EXT] = np.maximum(last, ext)
        transit = arrival - ext
        jitter = f[_JB_JITTER]
        jitter += (np.abs(transit - c[_JB_TRANSIT]) - jitter) / 16.0
        c[_JB_TRANSIT] = transit
        self.ints[:_RX, lanes] = c
        self.floats[:_LAST_RX + 1, lanes] = f
        self._ring[lanes, slot] = self._rx_bytes[rows, 12:]
        self._has[lanes, slot] = True
        return fast

    # -- pull -------------------------------------------------------------------------------------

    def play(self, now: float) -> tuple[NDArray[np.intp], Frame]:
        """``RtpLeg.next_payload`` for the leased lanes at loop time ``now``: the lanes that play a frame,
        and their frames decoded. A lane with a frame to conceal or to skip is released first (its leg then
        plays leg by leg)."""
        self.ticks += 1
        lanes = self.leased()
        if not len(lanes):
            return _NO_LANES, _NO_FRAMES
        c = self.ints[_NEXT:_PLAY, lanes]
        nxt, offset, playout = c[_NEXT - _NEXT], c[_OFFSET - _NEXT], c[_PLAYOUT - _NEXT]
        wall = int(now * SAMPLE_RATE)
        playout = np.where(np.abs(wall - playout) > _RESYNC, wall, playout + _F)
        behind = playout - offset
        due = behind >= nxt  # JitterBuffer.get: the next frame is due
        # get_catching_up: when the frame after it is overdue as well, that one is played (this one skipped)
        skip = behind >= nxt + 2 * _F
        slot = (nxt // _F) % _K
        after = (slot + 1) % _K
        has = self._has
        slow = due & (~has[lanes, slot] | (skip & ~has[lanes, after]))  # a frame missing: to conceal
        if slow.any():
            for lane in lanes[slow].tolist():
                self.release(lane)
            keep = ~slow
            lanes, playout, due, skip, slot, after, c = (
                lanes[keep], playout[keep], due[keep], skip[keep], slot[keep], after[keep], c[:, keep])
        ints = self.ints
        ints[_PLAYOUT, lanes] = playout
        lanes, skip, slot, after, c = lanes[due], skip[due], slot[due], after[due], c[:, due]
        ints[_NEXT, lanes] = c[0] + _F + _F * skip
        has[lanes, slot] = False
        if skip.any():
            has[lanes[skip], after[skip]] = False
            slot = np.where(skip, after, slot)
        floats = self.floats
        floats[_MAX_JITTER, lanes] = np.maximum(floats[_MAX_JITTER, lanes], floats[_JITTER, lanes] / 8.0)
        frames = self.decode(c[_PT - _NEXT], self._ring[lanes, slot])
        self._last[lanes] = frames  # the loss concealer's last good frame
        self.flags[_PLAYED, lanes] = True
        return lanes, frames

    @staticmethod
    def decode(pts: NDArray[np.int64], codes: NDArray[np.uint8]) -> Frame:
        if not len(codes):
            return _NO_FRAMES
        if (pts == pts[0]).all():
            return np.take(_DECODE[int(pts[0])], codes)
        frames = np.empty(codes.shape, dtype=np.int16)
        for pt, table in _DECODE.items():
            rows = pts == pt
            frames[rows] = np.take(table, codes[rows])
        return frames

    def audible(self, lanes: NDArray[np.intp], now: float) -> NDArray[np.bool_]:
        """``RtpLeg.audible``: the peer sent something within ``silence_timeout``."""
        floats = self.floats
        result: NDArray[np.bool_] = now - floats[_LAST_RX, lanes] <= floats[_SILENCE, lanes]
        return result

    def wants_inband(self, lanes: NDArray[np.intp]) -> NDArray[np.bool_]:
        result: NDArray[np.bool_] = self.flags[_INBAND, lanes]
        return result

    def inband(self, lanes: NDArray[np.intp], loud: NDArray[np.bool_], digits: dict[int, str],
               ) -> list[tuple[DtmfIn, str | None, int]]:  # fmt: skip
        """``DtmfIn.quiet``/``classified`` for lanes whose frames were searched: ``loud`` per lane, the
        digits found in the loud frames by row of ``lanes``. Returns the detector steps to take (the
        ``DtmfIn``, the classification, the lane), which may report digits: take them once the tick's
        arrays are up to date (``advance``)."""
        ints = self.ints
        quiet = ints[_QUIET, lanes]
        step_quiet = ~loud & (quiet <= ints[_MIN_OFF, lanes])
        ints[_QUIET, lanes[step_quiet]] += 1
        ints[_QUIET, lanes[loud]] = 0
        step = step_quiet | (loud & ~self.flags[_IDLE, lanes])
        if digits:
            step[list(digits)] = True
        dtmf = self._dtmf
        out: list[tuple[DtmfIn, str | None, int]] = []
        for row in np.flatnonzero(step).tolist():
            lane = int(lanes[row])
            d = dtmf[lane]
            if d is not None:
                out.append((d, digits.get(row), lane))
        return out

    def advance(self, steps: list[tuple[DtmfIn, str | None, int]], now: float) -> None:
        idle = self.flags[_IDLE]
        for dtmf, classified, lane in steps:
            dtmf.advance(classified, now)
            idle[lane] = dtmf.detector.idle

    # -- push -------------------------------------------------------------------------------------

    def send(self) -> int:
        """``RtpLeg.send_encoded`` for every leased lane, whose payload is in its row of ``tx``: write the
        headers, send the packets. Returns how many."""
        lanes = self.leased()
        if not len(lanes):
            return 0
        c = self.ints[_PT:_TX, lanes]
        pt, ssrc, seq, ts, marker = c[0], c[_OUT_SSRC - _PT], c[_SEQ - _PT], c[_TS - _PT], c[_MARKER - _PT]
        self._tx_words[lanes, :3] = np.stack([0x80 << 24 | (pt | marker << 7) << 16 | seq, ts, ssrc], axis=1)
        c[_SEQ - _PT] = (seq + 1) & 0xFFFF
        c[_TS - _PT] = (ts + _F) & 0xFFFFFFFF
        c[_MARKER - _PT] = 0
        c[_SENT - _PT] += 1
        self.ints[_PT:_TX, lanes] = c
        rows, remote, sendto = self.tx_rows, self._remote, self._sendto
        for lane in lanes.tolist():
            try:
                sendto[lane](rows[lane], remote[lane])
            except OSError:
                sock = self._socks[lane]
                if sock is not None:
                    sock.errors += 1
        return len(lanes)


def _no_send(data: memoryview, addr: Addr) -> None:
    raise OSError("no socket")


def _grown(a: NDArray[_G], cap: int, axis: int) -> NDArray[_G]:
    """``a`` with its ``axis`` extended to ``cap`` entries (zeros)."""
    shape = list(a.shape)
    shape[axis] = cap
    out = np.zeros(shape, dtype=a.dtype)
    out[(slice(None),) * axis + (slice(0, a.shape[axis]),)] = a
    return out
