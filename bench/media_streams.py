"""Time what media streams cost the 20 ms tick: N virtual legs in bridged pairs, each streaming both tracks
(PCMU, or L16 at 16 kHz) to a tap whose adapter is a stand-in that takes the queued messages every tick (as
the WebSocket task does between ticks; their JSON is written off the tick, so it is timed apart).

Run: .venv/bin/python bench/media_streams.py [--streams 100] [--ticks 500] [--codec PCMU|L16]
"""

from __future__ import annotations

import argparse
import time

from callroom.media.engine import MediaEngine
from callroom.media.streams import StreamTap
from callroom.media.virtual_audio import VirtualAudioLeg
from callroom.model import media as m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--ticks", type=int, default=500)
    ap.add_argument("--codec", default="PCMU")
    args = ap.parse_args()
    taps: list[StreamTap] = []

    def opener(tap: StreamTap) -> None:
        taps.append(tap)
        tap.connected()

    def ticks(engine: MediaEngine, n: int) -> tuple[float, float]:
        tick_s = json_s = 0.0
        for i in range(n):
            t0 = time.perf_counter()
            engine.tick(i * 0.02)
            t1 = time.perf_counter()
            for tap in taps:
                for message in tap.take():
                    message.to_json()
            json_s += time.perf_counter() - t1
            tick_s += t1 - t0
        return tick_s / n * 1000, json_s / n * 1000

    results = {}
    for streams in (0, args.streams):
        taps.clear()
        engine = MediaEngine(stream_opener=opener)
        for i in range(args.streams):
            engine.add_leg(f"v3:{i}", VirtualAudioLeg((300.0 + i,)))
        engine.apply([m.Bridge(f"v3:{i}", f"v3:{i + 1}") for i in range(0, args.streams, 2)])
        engine.apply([m.StartStream(f"s{i}", f"v3:{i}", "ws://bench/", "both_tracks", args.codec)
                      for i in range(streams)])
        ticks(engine, 20)
        results[streams] = ticks(engine, args.ticks)
    base, with_streams = results[0][0], results[args.streams]
    per = (with_streams[0] - base) / args.streams * 1000
    print(f"{args.streams} legs: tick {base:.3f} ms without streams, {with_streams[0]:.3f} ms with "
          f"{args.streams} streams of both tracks ({args.codec}): {per:.1f} us per stream per tick in the tick; "
          f"the messages' JSON off the tick {with_streams[1] / args.streams * 1000:.1f} us per stream per tick")


if __name__ == "__main__":
    main()
