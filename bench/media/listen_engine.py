"""What answering-machine detection and a transcription's share of the tick cost per leg, on the engine
itself (no SIP, no sockets): N virtual legs, each sending a tone, tick in this process.

    .venv/bin/python bench/media/listen_engine.py [--legs 200] [--ticks 500]

- AMD: a ``DetectMachine`` (``detect_beep``) on every leg, its limits set so that no detector decides
  within the measured ticks (a tone is voice, and the beep check runs on every voiced frame: the most a
  detector does per frame). Reported: extra engine work per leg per tick.
- Transcription, the tick's share: each 20 ms frame copied into the transcription's queue
  (``Transcriber.push``, nothing draining it); the recogniser's own cost is measured by
  ``bench/transcribe_speed.py`` (real-time factor) and, on a node, ``bench/media/listen.py``.
Media streams' share of the tick is ``bench/media_streams.py``'s. Results: bench/results/media-listen-engine.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from callroom.media.engine import MediaEngine  # noqa: E402
from callroom.media.ports import FRAME_SAMPLES  # noqa: E402
from callroom.media.tones import sine  # noqa: E402
from callroom.media.transcribe import Transcriber  # noqa: E402
from callroom.media.virtual_audio import VirtualAudioLeg  # noqa: E402
from callroom.model import media as m  # noqa: E402

NEVER = 600_000  # ms: no detector decides within the run
UNDECIDED = (("total_analysis_time_millis", NEVER), ("maximum_word_length_millis", NEVER),
             ("greeting_duration_millis", NEVER), ("beep_min_tone_duration_millis", NEVER),
             ("greeting_total_analysis_time_millis", NEVER))


def work_per_tick(engine: MediaEngine, ticks: int, clock: list[float]) -> float:
    started = time.perf_counter()
    for _ in range(ticks):
        clock[0] += 0.02
        engine.tick(clock[0])
    return (time.perf_counter() - started) / ticks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--legs", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=500)
    args = ap.parse_args()
    legs, ticks = min(args.legs, 2000), min(args.ticks, 5000)
    facts: list[m.MediaFact] = []
    engine = MediaEngine(on_fact=facts.append)
    cids = [f"v3:leg{i}" for i in range(legs)]
    for i, cid in enumerate(cids):
        engine.add_leg(cid, VirtualAudioLeg((300.0 + 10 * (i % 50),)))
    engine.apply([m.Bridge(cids[i], cids[i + 1]) for i in range(0, legs - 1, 2)])
    clock = [0.0]
    work_per_tick(engine, 20, clock)
    base = work_per_tick(engine, ticks, clock)
    engine.apply([m.DetectMachine(f"amd{i}", cid, "detect_beep", UNDECIDED) for i, cid in enumerate(cids)])
    work_per_tick(engine, 5, clock)
    running = len(engine.actions.machines.running)
    amd = work_per_tick(engine, ticks, clock)
    verdicts = sum(isinstance(f, m.MachineDetection) for f in facts)

    frame = sine(700, FRAME_SAMPLES, amplitude=6000)
    transcribers = [Transcriber(f"t{i}", "inbound", False, facts.append) for i in range(legs)]
    started = time.perf_counter()
    for _ in range(ticks):
        for t in transcribers:
            t.push(frame)
    push = (time.perf_counter() - started) / ticks
    result = {
        "legs": legs, "ticks": ticks,
        "work_ms_per_tick_idle": round(base * 1000, 3),
        "work_ms_per_tick_amd": round(amd * 1000, 3),
        "amd_us_per_leg_per_tick": round((amd - base) * 1e6 / legs, 2),
        "amd_detectors_running": running, "amd_verdicts_during_run": verdicts,
        "transcription_push_us_per_leg_per_tick": round(push * 1e6 / legs, 2),
    }
    for key, value in result.items():
        print(f"{key:42s} {value}")
    out = ROOT / "bench" / "results" / "media-listen-engine.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    print(f"(transcription queues dropped {sum(t.queue.dropped for t in transcribers)} frames: nothing drains them)")


if __name__ == "__main__":
    main()
