"""How fast espeak-ng synthesis runs through callroom.audio.tts (characters per second).

    .venv/bin/python bench/tts_speed.py [--rounds N]

Each round speaks the same paragraphs with a fresh cache, so every call runs espeak-ng.
"""

from __future__ import annotations

import argparse
import time

from callroom.audio.lru import SampleLru
from callroom.audio.pcm import SAMPLE_RATE
from callroom.audio.tts import Synthesizer

PARAGRAPHS = [
    "Thank you for calling. Your call is important to us.",
    "Please stay on the line and the next available agent will be with you shortly. "
    "You are caller number three in the queue. The expected waiting time is about four minutes.",
    "Welcome to the conference. There are currently five other participants. "
    "Press star six to mute or unmute yourself, and press pound to hear the menu again. "
    "This call may be recorded for quality and training purposes. "
    "If you would like to leave a message instead, please press one now, "
    "or stay on the line to be connected to the next available representative.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    chars = seconds = audio_seconds = 0.0
    for _ in range(args.rounds):
        synth = Synthesizer(cache=SampleLru(0))
        for text in PARAGRAPHS:
            started = time.perf_counter()
            audio = synth.synthesize(text, voice="female", language="en-US")
            seconds += time.perf_counter() - started
            chars += len(text)
            audio_seconds += audio.size / SAMPLE_RATE
    print(
        f"{chars:.0f} characters in {seconds:.2f} s: {chars / seconds:.0f} characters/s, "
        f"{audio_seconds / seconds:.0f}x real time ({audio_seconds:.0f} s of speech)"
    )


if __name__ == "__main__":
    main()
