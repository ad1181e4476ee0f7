"""The cost of media actions per leg: playback and recording, measured on the engine itself.

N virtual legs (each sending a tone) in conferences of 5 tick in one process, first with nothing else,
then with a playback to every leg (a decoded WAV looping), then with a dual-channel recording of every
leg. Reported: engine work per 20 ms tick and the extra CPU per leg each action costs. TTS speed is
measured by ``bench/tts_speed.py``.

    .venv/bin/python bench/media/actions.py [--legs 200] [--ticks 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from callroom.media.engine import MediaEngine
from callroom.media.virtual_audio import VirtualAudioLeg
from callroom.model import media as m


def _work(engine: MediaEngine, ticks: int) -> float:
    """Mean seconds of engine work per tick over ``ticks`` ticks."""
    started = time.perf_counter()
    for _ in range(ticks):
        engine.tick(time.monotonic())
    return (time.perf_counter() - started) / ticks


async def measure(legs: int, ticks: int) -> dict[str, float]:
    engine = MediaEngine()
    cids = [f"v3:leg{i}" for i in range(legs)]
    for i, cid in enumerate(cids):
        engine.add_leg(cid, VirtualAudioLeg((300.0 + 10 * (i % 50),)))
    for g in range(0, legs, 5):
        members = tuple(m.ConferenceMember(c, False, False, "none") for c in cids[g : g + 5])
        engine.apply([m.ConferenceMix(f"conf{g}", members, comfort_noise=False)])
    engine.tick(0.0)
    base = _work(engine, ticks)

    folder = Path(tempfile.mkdtemp())
    wav = folder / "prompt.wav"
    t = np.arange(8000 * 3) / 8000
    soundfile.write(wav, (6000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16), 8000, subtype="PCM_16")
    engine.apply([m.Play(f"play{i}", m.AudioSpec("file", str(wav)), (cid,), loop=None, overlay=True)
                  for i, cid in enumerate(cids)])
    await asyncio.sleep(0.5)  # decoding happens off the tick, in threads
    engine.tick(0.0)
    playing = _work(engine, ticks)
    engine.apply([m.StopPlay(tuple(cids))])
    engine.tick(0.0)

    engine.apply([m.StartRecording(f"rec{i}", str(folder / f"rec{i}"), "wav", "dual", call_control_id=cid)
                  for i, cid in enumerate(cids)])
    engine.tick(0.0)
    recording = _work(engine, ticks)
    engine.apply([m.ControlRecording(f"rec{i}", "stop") for i in range(legs)])
    started = time.perf_counter()
    await asyncio.sleep(0)
    while engine.actions._tasks:
        await asyncio.sleep(0.01)
    encode_s = time.perf_counter() - started
    per_leg_ms = 1000 / legs
    return {
        "legs": legs,
        "work_ms_per_tick_idle": base * 1000,
        "work_ms_per_tick_playing": playing * 1000,
        "work_ms_per_tick_recording": recording * 1000,
        "playback_cpu_us_per_leg_per_tick": (playing - base) * 1e6 / legs,
        "recording_cpu_us_per_leg_per_tick": (recording - base) * 1e6 / legs,
        "recording_encode_ms_per_leg": encode_s * per_leg_ms,
        "recorded_seconds_per_leg": ticks * 0.02,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--legs", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=500)
    args = parser.parse_args()
    result = asyncio.run(measure(min(args.legs, 2000), min(args.ticks, 5000)))
    for key, value in result.items():
        print(f"{key:40s} {value:10.3f}")
    out = Path(__file__).resolve().parents[1] / "results" / "media-actions.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
