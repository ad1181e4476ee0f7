"""The conference mixer: ports and a who-hears-whom graph with a gain per edge (after pjmedia's bridge).

Each port has a slot, an rx switch (its audio enters the bridge; off = muted) and a tx switch (the
bridge sends it audio; off = deaf). An edge ``src -> dst`` with a gain means "dst hears src". Roles
are just edges: a monitor hears everyone and is heard by no one, a whisperer is heard only by its
targets, a held port hears only the hold-music port.

Topology changes are queued and applied at the start of the next ``tick()``, so a tick never waits.
Applying them recompiles a mixing plan, and the tick is then a few whole-array numpy operations:

* for each densely connected group (a conference) whose usual edge gain is ``w``:
  ``out[d] = w * (total_of_group - x[d])`` -- "everyone but me" for N ports in O(N);
* plus a sparse list of corrections (edges with another gain, missing edges such as a monitor nobody
  hears, and every edge of sparsely connected groups) accumulated with ``numpy.add.reduceat``.

The graph itself is a dense capacity x capacity matrix (4 MB at 1,024 ports), sized for the ports of
one worker process. Ticks also measure each port's input level (smoothed dBov) for talker detection (``talkers.py``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = ["SILENCE_DBOV", "Mixer", "frame_dbov"]

K = TypeVar("K", bound=Hashable)
Frame = NDArray[np.int16]

SILENCE_DBOV: Final = -127.0
_FULL_SCALE_POWER: Final = 32768.0**2


def frame_dbov(frame: Frame) -> float:
    """RMS level of one frame in dB relative to a full-scale square wave (dBov), floor -127."""
    x = frame.astype(np.float64)
    p = float(np.mean(x * x)) if len(x) else 0.0
    return max(SILENCE_DBOV, 10 * np.log10(p / _FULL_SCALE_POWER)) if p > 0 else SILENCE_DBOV


@dataclass(frozen=True, slots=True)
class _Op(Generic[K]):
    kind: str  # add | remove | connect | disconnect | gain | rx | tx
    a: K
    b: K | None = None
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class _Block(Generic[K]):
    """Every port of ``dsts`` hears every port of ``srcs`` but itself (``connect``), or no longer does."""

    connect: bool
    srcs: tuple[K, ...]
    dsts: tuple[K, ...]
    gain: float = 1.0


@dataclass(slots=True)
class _Plan:
    mesh_slots: NDArray[np.intp]  # members of mesh groups, grouped contiguously
    mesh_starts: NDArray[np.intp]  # start offset of each group in mesh_slots
    mesh_gain: NDArray[np.float32]  # per member: its group's usual gain
    mesh_group: NDArray[np.intp]  # per member: its group index
    sparse_src: NDArray[np.intp]  # corrections, sorted by destination
    sparse_gain: NDArray[np.float32]
    sparse_starts: NDArray[np.intp]
    sparse_dst: NDArray[np.intp]  # destination of each run in sparse_starts
    out_slots: NDArray[np.intp]  # slots that get an output frame (tx on, hears something)
    # mesh groups are ordered by size: (first member, end, size, first group) of each run of one size
    mesh_runs: list[tuple[int, int, int, int]]
    mesh_out: NDArray[np.intp]  # per member that gets output: its row in the output (out_slots)
    mesh_heard: NDArray[np.intp] | None  # the members that get output (None: all)
    sparse_out: NDArray[np.intp]  # per run of sparse_starts: its destination's row in the output (-1: none)
    mesh_unity: bool  # every mesh group's usual gain is 1
    muted: NDArray[np.intp]  # slots with rx off


_SEQUENTIAL_MAX: Final = 16  # groups up to this size are summed member by member (numpy's reduceat is slow)


def _empty_plan() -> _Plan:
    i = np.zeros(0, dtype=np.intp)
    f = np.zeros(0, dtype=np.float32)
    return _Plan(i, i, f, i, i, f, i, i, i, [], i, None, i, True, i)


class Mixer(Generic[K]):
    """N-port mixer. Ports are any hashable ids; audio frames are int16 arrays of ``frame_samples``."""

    def __init__(self, frame_samples: int = 160, adaptive_gain: bool = False,
                 level_smoothing: float = 0.3, agc_release: float = 0.05, capacity: int = 16) -> None:
        self.frame_samples = frame_samples
        self.adaptive_gain = adaptive_gain
        self.level_smoothing = level_smoothing
        self.agc_release = agc_release
        self._ops: list[_Op[K] | _Block[K]] = []
        self._future: set[K] = set()  # the ports that will exist once the queue is applied
        self._slots: dict[K, int] = {}
        self._ids: list[K | None] = []
        self._free: list[int] = []
        self._cap = 0
        self._conn = np.zeros((0, 0), dtype=bool)  # [dst, src]: dst hears src
        self._gain = np.zeros((0, 0), dtype=np.float32)
        self._rx = np.zeros(0, dtype=bool)
        self._tx = np.zeros(0, dtype=bool)
        self._power = np.zeros(0, dtype=np.float64)  # smoothed mean-square input level per slot
        self._agc = np.ones(0, dtype=np.float32)
        self._plan = _empty_plan()
        self.generation = 0  # changes whenever queued changes are applied (slots may have moved)
        self._grow(capacity)

    # -- queued topology operations --------------------------------------------------------------

    def add_port(self, port: K, rx: bool = True, tx: bool = True) -> None:
        if port in self._future:
            raise ValueError(f"port {port!r} already exists")
        self._future.add(port)
        self._ops.append(_Op("add", port, None, float(rx) + 2 * float(tx)))

    def remove_port(self, port: K) -> None:
        self._require(port)
        self._future.discard(port)
        self._ops.append(_Op("remove", port))

    def connect(self, src: K, dst: K, gain: float = 1.0) -> None:
        """``dst`` hears ``src`` at ``gain`` (linear). Connecting again updates the gain."""
        self._require(src, dst)
        self._ops.append(_Op("connect", src, dst, gain))

    def disconnect(self, src: K, dst: K) -> None:
        self._require(src, dst)
        self._ops.append(_Op("disconnect", src, dst))

    def set_gain(self, src: K, dst: K, gain: float) -> None:
        """Change the gain of an existing edge (no effect if the edge does not exist when applied)."""
        self._require(src, dst)
        self._ops.append(_Op("gain", src, dst, gain))

    def set_rx(self, port: K, enabled: bool) -> None:
        """rx off = the port's audio does not enter the bridge (mute)."""
        self._require(port)
        self._ops.append(_Op("rx", port, None, float(enabled)))

    def set_tx(self, port: K, enabled: bool) -> None:
        """tx off = the bridge sends the port nothing (deaf)."""
        self._require(port)
        self._ops.append(_Op("tx", port, None, float(enabled)))

    def connect_all(self, ports: Iterable[K], gain: float = 1.0) -> None:
        """Everyone in ``ports`` hears everyone else (a plain conference)."""
        members = tuple(ports)
        self.connect_block(members, members, gain)

    def connect_block(self, srcs: Iterable[K], dsts: Iterable[K], gain: float = 1.0) -> None:
        """Every port of ``dsts`` hears every port of ``srcs`` but itself, at ``gain``: one operation for
        the N x M edges a join or leave of a large conference changes."""
        block = _Block(True, tuple(srcs), tuple(dsts), gain)
        self._require(*block.srcs, *block.dsts)
        self._ops.append(block)

    def disconnect_block(self, srcs: Iterable[K], dsts: Iterable[K]) -> None:
        """No port of ``dsts`` hears any port of ``srcs`` (a port's edge to itself is left as it is)."""
        block: _Block[K] = _Block(False, tuple(srcs), tuple(dsts))
        self._require(*block.srcs, *block.dsts)
        self._ops.append(block)

    def _require(self, *ports: K) -> None:
        for p in ports:
            if p not in self._future:
                raise KeyError(f"no port {p!r}")

    @property
    def pending(self) -> int:
        return len(self._ops)

    # -- applied state (as of the last tick) -----------------------------------------------------

    @property
    def ports(self) -> list[K]:
        return list(self._slots)

    def slot(self, port: K) -> int:
        return self._slots[port]

    @property
    def slot_map(self) -> Mapping[K, int]:
        """Every applied port's slot (the row of its frame in ``tick_slots``' inputs). Read-only."""
        return self._slots

    def apply(self) -> None:
        """Apply the queued changes now (``tick`` and ``tick_slots`` do it first anyway), so that the slots
        of newly added ports are known before the inputs of this tick are laid out."""
        self._apply_ops()

    def sources(self, dst: K) -> dict[K, float]:
        """Who ``dst`` hears, with gains, as applied at the last tick."""
        d = self._slots[dst]
        return {self._port_at(int(s)): float(self._gain[d, s]) for s in np.flatnonzero(self._conn[d])}

    def is_rx(self, port: K) -> bool:
        return bool(self._rx[self._slots[port]])

    def is_tx(self, port: K) -> bool:
        return bool(self._tx[self._slots[port]])

    def level_dbov(self, port: K) -> float:
        p = float(self._power[self._slots[port]]) / _FULL_SCALE_POWER
        return max(SILENCE_DBOV, 10 * np.log10(p)) if p > 1e-13 else SILENCE_DBOV

    def levels(self) -> dict[K, float]:
        """Smoothed input level of every port in dBov (muted ports read as silence)."""
        if not self._slots:
            return {}
        ports = list(self._slots)
        db = self.levels_at(np.array([self._slots[p] for p in ports], dtype=np.intp))
        return dict(zip(ports, db, strict=True))

    def levels_at(self, slots: NDArray[np.intp]) -> list[float]:
        """``levels`` of the ports at ``slots`` (see ``slot_map``), in that order; a slot of -1 reads as
        silence."""
        power = self._power[slots] / _FULL_SCALE_POWER
        db = np.full(len(slots), SILENCE_DBOV)
        audible = (power > 1e-13) & (slots >= 0)  # below -130 dBov counts as silence (and keeps log10 off 0)
        db[audible] = np.maximum(SILENCE_DBOV, 10 * np.log10(power[audible]))
        levels: list[float] = db.tolist()
        return levels

    def _port_at(self, slot: int) -> K:
        port = self._ids[slot]
        assert port is not None
        return port

    # -- applying the queue ------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        old = self._cap
        cap = max(capacity, 2 * old, 1)
        conn = np.zeros((cap, cap), dtype=bool)
        gain = np.zeros((cap, cap), dtype=np.float32)
        conn[:old, :old] = self._conn
        gain[:old, :old] = self._gain
        self._conn, self._gain = conn, gain
        self._rx = np.concatenate([self._rx, np.zeros(cap - old, dtype=bool)])
        self._tx = np.concatenate([self._tx, np.zeros(cap - old, dtype=bool)])
        self._power = np.concatenate([self._power, np.zeros(cap - old)])
        self._agc = np.concatenate([self._agc, np.ones(cap - old, dtype=np.float32)])
        self._ids.extend([None] * (cap - old))
        self._free.extend(range(cap - 1, old - 1, -1))  # pop() hands out the lowest slot first
        self._cap = cap

    def _apply_ops(self) -> None:
        if not self._ops:
            return
        ops, self._ops = self._ops, []
        self.generation += 1
        for op in ops:
            if isinstance(op, _Block):
                self._apply_block(op)
            elif op.kind == "add":
                if not self._free:
                    self._grow(2 * self._cap)
                s = self._free.pop()
                self._slots[op.a], self._ids[s] = s, op.a
                self._rx[s], self._tx[s] = bool(int(op.value) & 1), bool(int(op.value) & 2)
                self._power[s], self._agc[s] = 0.0, 1.0
            elif op.kind == "remove":
                s = self._slots.pop(op.a)
                self._ids[s] = None
                self._conn[s, :] = self._conn[:, s] = False
                self._gain[s, :] = self._gain[:, s] = 0.0
                self._rx[s] = self._tx[s] = False
                self._free.append(s)
            elif op.kind in ("connect", "disconnect", "gain"):
                assert op.b is not None
                src, dst = self._slots[op.a], self._slots[op.b]
                if op.kind == "disconnect":
                    self._conn[dst, src], self._gain[dst, src] = False, 0.0
                elif op.kind == "connect" or self._conn[dst, src]:
                    self._conn[dst, src], self._gain[dst, src] = True, op.value
            elif op.kind == "rx":
                self._rx[self._slots[op.a]] = bool(op.value)
            else:
                self._tx[self._slots[op.a]] = bool(op.value)
        self._plan = self._compile()

    def _apply_block(self, block: _Block[K]) -> None:
        src = np.array([self._slots[p] for p in block.srcs], dtype=np.intp)
        dst = np.array([self._slots[p] for p in block.dsts], dtype=np.intp)
        both = np.intersect1d(src, dst)
        kept_conn, kept_gain = self._conn[both, both], self._gain[both, both]  # edges to self: unchanged
        rows = np.ix_(dst, src)
        self._conn[rows] = block.connect
        self._gain[rows] = block.gain if block.connect else 0.0
        self._conn[both, both], self._gain[both, both] = kept_conn, kept_gain

    def _components(self) -> NDArray[np.intp]:
        """Label each slot with the smallest slot of its (undirected) connected component."""
        linked = self._conn | self._conn.T
        labels = np.arange(self._cap)
        while True:
            neighbour_min = np.where(linked, labels[None, :], self._cap).min(axis=1)
            new = np.minimum(labels, neighbour_min)
            new = new[new]  # pointer jumping: follow labels to speed up long chains
            if np.array_equal(new, labels):
                return labels
            labels = new

    def _compile(self) -> _Plan:
        labels = self._components()
        linked = np.flatnonzero(self._conn.any(axis=0) | self._conn.any(axis=1))
        order = linked[np.argsort(labels[linked], kind="stable")]
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        mesh_members: list[NDArray[np.intp]] = []
        mesh_gains: list[float] = []
        src_l: list[NDArray[np.intp]] = []
        dst_l: list[NDArray[np.intp]] = []
        gain_l: list[NDArray[np.float32]] = []
        for members in np.split(order, bounds) if len(order) else []:
            k = len(members)
            sub_conn = self._conn[np.ix_(members, members)]
            nnz = int(np.count_nonzero(sub_conn))
            if nnz == 0:
                continue
            sub_gain = np.where(sub_conn, self._gain[np.ix_(members, members)], np.float32(0))
            if k >= 3 and 2 * nnz > k * (k - 1):
                values, counts = np.unique(sub_gain[sub_conn], return_counts=True)
                w = float(values[np.argmax(counts)])
                residual = sub_gain - np.float32(w) * (1 - np.eye(k, dtype=np.float32))
                mesh_members.append(members)
                mesh_gains.append(w)
            else:
                residual = sub_gain
            d, s = np.nonzero(residual)
            dst_l.append(members[d])
            src_l.append(members[s])
            gain_l.append(residual[d, s].astype(np.float32))

        plan = _empty_plan()
        if mesh_members:
            by_size = sorted(range(len(mesh_members)), key=lambda i: len(mesh_members[i]))
            mesh_members = [mesh_members[i] for i in by_size]
            mesh_gains = [mesh_gains[i] for i in by_size]
            plan.mesh_slots = np.concatenate(mesh_members)
            sizes = np.array([len(m) for m in mesh_members])
            plan.mesh_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
            plan.mesh_group = np.repeat(np.arange(len(sizes)), sizes)
            plan.mesh_gain = np.repeat(np.array(mesh_gains, dtype=np.float32), sizes)
            firsts = [0, *(np.flatnonzero(np.diff(sizes)) + 1).tolist()]  # the first group of each size
            ends = [*plan.mesh_starts[firsts[1:]].tolist(), len(plan.mesh_slots)]
            plan.mesh_runs = [(int(plan.mesh_starts[g]), end, int(sizes[g]), g)
                              for g, end in zip(firsts, ends, strict=True)]
        if dst_l:
            dst, src, gain = np.concatenate(dst_l), np.concatenate(src_l), np.concatenate(gain_l)
            by_dst = np.argsort(dst, kind="stable")
            dst, plan.sparse_src, plan.sparse_gain = dst[by_dst], src[by_dst], gain[by_dst]
            if len(dst):
                plan.sparse_starts = np.concatenate([[0], np.flatnonzero(np.diff(dst)) + 1]).astype(np.intp)
                plan.sparse_dst = dst[plan.sparse_starts]
        plan.out_slots = np.flatnonzero(self._tx & self._conn.any(axis=1))
        row_of = np.full(self._cap, -1, dtype=np.intp)
        row_of[plan.out_slots] = np.arange(len(plan.out_slots))
        plan.mesh_out = row_of[plan.mesh_slots]
        if (plan.mesh_out < 0).any():  # tx off
            plan.mesh_heard = np.flatnonzero(plan.mesh_out >= 0)
            plan.mesh_out = plan.mesh_out[plan.mesh_heard]
        plan.sparse_out = row_of[plan.sparse_dst]
        plan.mesh_unity = bool((plan.mesh_gain == 1.0).all())
        plan.muted = np.flatnonzero(~self._rx)
        return plan

    # -- the tick ----------------------------------------------------------------------------------

    def tick(self, frames: Mapping[K, Frame | None]) -> dict[K, Frame]:
        """Apply queued changes, mix one frame period, return what each listening port should hear.

        ``frames`` maps ports to the frame that arrived this tick (missing or ``None`` = silence).
        Ports with tx on and at least one source get an output frame, even if it is silent.
        """
        self._apply_ops()
        inputs = np.zeros((self._cap, self.frame_samples), dtype=np.int16)
        for port, frame in frames.items():
            if frame is not None:
                inputs[self._slots[port]] = frame
        out, slots = self._mix(inputs)
        return {self._port_at(int(s)): out[i] for i, s in enumerate(slots)}

    def tick_slots(self, inputs: Frame) -> tuple[Frame, NDArray[np.intp]]:
        """Array form of ``tick`` for the hot path.

        ``inputs`` is (capacity, frame_samples) indexed by slot (see ``slot()``; slots are assigned
        when queued ports are applied, so call ``tick`` once after adding ports). Returns the output
        frames and, row for row, the slot each belongs to.
        """
        self._apply_ops()
        if inputs.shape != (self._cap, self.frame_samples):
            raise ValueError(f"inputs must be ({self._cap}, {self.frame_samples}), got {inputs.shape}")
        return self._mix(inputs)

    @property
    def capacity(self) -> int:
        return self._cap

    def _mix(self, inputs: Frame) -> tuple[Frame, NDArray[np.intp]]:
        plan = self._plan
        x = inputs.astype(np.float32)
        if len(plan.muted):
            x[plan.muted] = 0.0
        power = np.einsum("ij,ij->i", x, x, dtype=np.float64) / self.frame_samples
        self._power += self.level_smoothing * (power - self._power)

        out = np.zeros((len(plan.out_slots), self.frame_samples), dtype=np.float32)
        if len(plan.mesh_slots):
            members = x[plan.mesh_slots]
            totals = np.empty((len(plan.mesh_starts), self.frame_samples), dtype=np.float32)
            for start, end, k, first in plan.mesh_runs:
                groups = (end - start) // k
                total = totals[first : first + groups]
                if k <= _SEQUENTIAL_MAX:  # the same sums as reduceat's, member after member
                    each = members[start:end].reshape(groups, k, self.frame_samples)
                    total[...] = each[:, 0]
                    for j in range(1, k):
                        total += each[:, j]
                else:
                    total[...] = np.add.reduceat(members[start:end], np.arange(0, end - start, k), axis=0)
            mixed = totals[plan.mesh_group]
            mixed -= members
            if not plan.mesh_unity:
                mixed *= plan.mesh_gain[:, None]
            out[plan.mesh_out] = mixed if plan.mesh_heard is None else mixed[plan.mesh_heard]
        if len(plan.sparse_src):
            contrib = x[plan.sparse_src] * plan.sparse_gain[:, None]
            sums = np.add.reduceat(contrib, plan.sparse_starts, axis=0)
            heard = plan.sparse_out >= 0  # a destination with tx off gets nothing
            out[plan.sparse_out[heard]] += sums[heard]

        if self.adaptive_gain and len(out):
            peak = np.abs(out).max(axis=1)
            need = np.minimum(1.0, 32767.0 / np.maximum(peak, 1.0)).astype(np.float32)
            g = self._agc[plan.out_slots]
            g = np.where(need < g, need, g + (1.0 - g) * np.float32(self.agc_release))
            g = np.where(g > 0.999, np.float32(1.0), g)
            g = np.minimum(g, need)  # never clip after recovering
            self._agc[plan.out_slots] = g
            if not (g == 1.0).all():
                out *= g[:, None]
        np.rint(out, out=out)
        return np.clip(out, -32768, 32767, out=out).astype(np.int16), plan.out_slots
