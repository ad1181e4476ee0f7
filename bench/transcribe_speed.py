"""How much CPU live transcription takes (real-time factor) and how well it hears espeak-ng speech.

    .venv/bin/python bench/transcribe_speed.py [--rounds N]

Each sentence is spoken by espeak-ng (two voices: callroom's own ``male`` TTS voice and espeak-ng's klatt2
variant), brought to 8 kHz as a call carries it, cut into 20 ms frames, upsampled and recognised by the same
worker code a call's transcription runs (``callroom.media.transcribe``), with interim results unless
``--no-interim``. The real-time
factor is the worker thread's CPU time over the seconds of audio; the word error rate compares the final
transcripts with the sentences.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from callroom.audio.decode import decode_audio
from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from callroom.audio.tts import synthesize
from callroom.media.transcribe import Transcriber, recognise
from callroom.model import media as m

SENTENCES = [
    "please transfer me to the billing department",
    "i would like to check the status of my order",
    "my account number is four five six seven",
    "can you call me back tomorrow morning",
    "the weather today is cold and windy",
]


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def klatt(text: str) -> Pcm:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", "en-us+klatt2", "-s", "130", "-w", str(wav), text], check=True)
        return decode_audio(wav.read_bytes(), max_seconds=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-interim", action="store_true", help="final results only (one decode, not two)")
    args = parser.parse_args()
    for voice, speak in (("male", lambda text: synthesize(text, voice="male", language="en-US")),
                         ("en-us+klatt2", klatt)):
        run(voice, speak, args.rounds, not args.no_interim)


def run(voice: str, speak: Callable[[str], Pcm], rounds: int, interim: bool) -> None:
    cpu = audio_seconds = 0.0
    errors = words = 0
    for _ in range(rounds):
        for sentence in SENTENCES:
            speech = speak(sentence)
            silence = np.zeros(SAMPLE_RATE, dtype=np.int16)
            pcm = np.concatenate((silence, speech, silence))
            heard: list[str] = []

            def post(fact: m.MediaFact, heard: list[str] = heard) -> None:
                if isinstance(fact, m.Transcribed) and fact.is_final:
                    heard.append(fact.transcript)

            t = Transcriber("bench", "inbound", interim, post)
            for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
                t.push(pcm[i : i + FRAME_SAMPLES])
            t.stop()
            started = time.thread_time()
            recognise(t)  # on this thread, so its CPU time is this thread's
            cpu += time.thread_time() - started
            audio_seconds += len(pcm) / SAMPLE_RATE
            hyp = " ".join(heard).split()
            errors += word_errors(sentence.split(), hyp)
            words += len(sentence.split())
            print(f"  {sentence!r} -> {' '.join(hyp)!r}")
    print(f"{voice}, interim results {'on' if interim else 'off'}: {audio_seconds:.1f} s of audio in "
          f"{cpu:.2f} s of CPU: real-time factor {cpu / audio_seconds:.3f}; "
          f"word error rate {errors / words:.0%} ({errors}/{words})")


if __name__ == "__main__":
    main()
