"""Time one 20 ms media tick of the conference mixer: G.711 decode + mix + encode for 1,000 ports.

Run: .venv/bin/python bench/media_mix.py [--ticks N]

Scenarios: 200 conferences of 5, and one conference of 1,000. Two paths are timed: the dict API
(``Mixer.tick`` with one frame per port) and the slot-matrix API (``Mixer.tick_slots``), each
including the µ-law decode of every input payload and the encode of every output.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from callroom.media.mixer import Mixer
from callroom.rtp import g711

PORTS = 1000
FRAME = 160


def build(conference_size: int) -> Mixer[int]:
    mixer: Mixer[int] = Mixer(capacity=1024)
    for p in range(PORTS):
        mixer.add_port(p)
    for start in range(0, PORTS, conference_size):
        mixer.connect_all(range(start, min(start + conference_size, PORTS)))
    t0 = time.perf_counter()
    mixer.tick({})  # applies the queued topology
    print(f"  topology apply (compile) {1000 * (time.perf_counter() - t0):8.1f} ms")
    return mixer


def payloads(rng: np.random.Generator) -> list[bytes]:
    t = np.arange(FRAME) / 8000
    out = []
    for p in range(PORTS):
        x = (3000 * np.sin(2 * np.pi * (300 + p % 50 * 20) * t) + rng.normal(0, 200, FRAME)).astype(np.int16)
        out.append(g711.ulaw_encode(x))
    return out


def time_it(fn: Callable[[], object], ticks: int) -> float:
    fn()
    samples = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return 1000 * float(np.median(samples))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = payloads(rng)

    for size in (5, PORTS):
        label = f"{PORTS // size} conferences of {size}" if size < PORTS else f"one conference of {PORTS}"
        print(label)
        mixer = build(size)

        def dict_tick(mixer: Mixer[int] = mixer) -> object:
            frames = {p: g711.ulaw_decode(data[p]) for p in range(PORTS)}
            out = mixer.tick(frames)
            return {p: g711.ulaw_encode(f) for p, f in out.items()}

        slots = np.array([mixer.slot(p) for p in range(PORTS)])
        joined = b"".join(data)

        def slot_tick(
            mixer: Mixer[int] = mixer, slots: NDArray[np.intp] = slots, joined: bytes = joined
        ) -> object:
            inputs = np.zeros((mixer.capacity, FRAME), dtype=np.int16)
            inputs[slots] = g711.ulaw_decode(joined).reshape(PORTS, FRAME)
            out, _out_slots = mixer.tick_slots(inputs)
            return g711.ulaw_encode_array(out)

        mix_only_inputs = np.zeros((mixer.capacity, FRAME), dtype=np.int16)
        mix_only_inputs[slots] = g711.ulaw_decode(joined).reshape(PORTS, FRAME)

        print(f"  dict API   decode+mix+encode {time_it(dict_tick, args.ticks):6.2f} ms per tick")
        print(f"  slot API   decode+mix+encode {time_it(slot_tick, args.ticks):6.2f} ms per tick")
        def mix_only(mixer: Mixer[int] = mixer, x: NDArray[np.int16] = mix_only_inputs) -> object:
            return mixer.tick_slots(x)

        print(f"  mix only (tick_slots)        {time_it(mix_only, args.ticks):6.2f} ms per tick")


if __name__ == "__main__":
    main()
