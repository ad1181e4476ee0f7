"""A set of recordings for answering-machine detection, made at test time and the same every time: people
answering with a short hello (several espeak-ng voices, speeds and pitches), voicemail greetings of 3 to 20 s
with and without a beep, silent answers, and hard ones (a long "hello, hello, who is this?", a noisy line, a
quiet talker, a short greeting with no beep).

Every recording is 8 kHz int16 as a phone line carries it: a pause before the answer, the speech scaled to
a level of its own, a beep after a greeting where it has one, then silence; a noisy line stays noisy for 8 s
after the speech (noise is seeded, the same every time). Each recording
has a truth (``human`` or ``machine``; a silent answer counts as ``machine``, as the detector's initial
silence rule and Telnyx's standard detection call it) and a split: every third recording is ``held_out``,
kept out of any tuning of the detector and reported on its own.

``run_detector`` answers each with the node's detector alone (no call); ``confusion`` and ``table`` count
and print the results, whichever way they were decided. ``python -m tests.media.amd_corpus`` prints the
detector's table.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from callroom.audio.pcm import SAMPLE_RATE, to_int16
from callroom.audio.resample import resample
from callroom.audio.tts import parse_wav16
from callroom.media.amd import MachineDetector
from callroom.media.ports import FRAME_SAMPLES
from callroom.media.tones import sine

Samples = NDArray[np.int16]
VERDICTS = ("human", "machine", "not_sure")


@dataclass(frozen=True)
class Voice:
    name: str  # espeak-ng's -v
    speed: int  # words per minute
    pitch: int  # 0-99


@dataclass(frozen=True)
class Spec:
    """How one recording is made."""

    name: str
    truth: str  # human | machine
    text: str  # what is said ("" for a silent answer)
    voice: Voice
    pause_ms: int  # from the answer to the first word
    peak: float  # the speech's peak level
    beep_hz: float | None = None  # a 500 ms beep after the greeting (and 300 ms of silence)
    noise: float = 0.0  # the standard deviation of white noise on the whole line
    hard: bool = False


@dataclass(frozen=True)
class Recording:
    spec: Spec
    samples: Samples
    held_out: bool

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def truth(self) -> str:
        return self.spec.truth


@dataclass(frozen=True)
class Decision:
    """What a detector said about one recording, and when (seconds from the answer)."""

    name: str
    truth: str
    held_out: bool
    result: str  # human | machine | not_sure | none (no verdict at all)
    seconds: float
    beep_expected: bool = False
    beep_found: bool = False
    beep_seconds: float | None = None


US, GB, SCOT, CARIB, RP = "en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"
HELLOS = ["Hello?", "Hi, this is Sam.", "Yeah?", "Hello.", "Hi!", "Sam speaking.", "Hello, this is Alex.",
          "Yes?", "Hey, what's up?", "Good morning."]
GREETINGS = [
    "Hi, it's Sam. Leave a message.",
    "You have reached Alex. I can't come to the phone right now, please leave a message.",
    "Hello, you have reached the voicemail of John Smith. I am not available right now. Please leave your "
    "name and number after the tone and I will get back to you as soon as I can.",
    "The person you are calling is not available. Please leave a message after the tone. When you have "
    "finished recording, you may hang up, or press pound for more options.",
    "Thank you for calling Riverside Dental. Our office is currently closed. Our hours are Monday to Friday, "
    "eight a m to five p m. If this is an emergency, please hang up and dial nine one one. Otherwise, please "
    "leave your name, number and a brief message after the tone, and we will return your call on the next "
    "business day.",
    "Hey, this is Maria. Sorry I missed you! Leave me a message and I'll call you back.",
]
VOICES = [Voice(US, 160, 50), Voice(GB + "+f3", 170, 60), Voice(SCOT, 150, 40), Voice(CARIB + "+m3", 180, 45),
          Voice(RP + "+f2", 140, 70), Voice(US + "+klatt2", 175, 35), Voice(US + "+f4", 190, 55),
          Voice(GB + "+m2", 130, 30)]


def specs() -> list[Spec]:
    """The recordings, in a fixed order (their split depends on it)."""
    rng = np.random.default_rng(18)
    out: list[Spec] = []
    for i, text in enumerate(HELLOS):
        for j in range(2):
            voice = VOICES[(i + 3 * j) % len(VOICES)]
            out.append(Spec(f"hello-{i}-{j}", "human", text, voice, int(rng.integers(200, 900)),
                            float(rng.uniform(6000, 16000))))
    for i, text in enumerate(GREETINGS):
        for j, beep in enumerate((1000.0, None, 1400.0)):
            voice = VOICES[(3 * i + j + 1) % len(VOICES)]
            out.append(Spec(f"greeting-{i}-{'beep' if beep else 'nobeep'}{j}", "machine", text, voice,
                            int(rng.integers(200, 1000)), float(rng.uniform(6000, 16000)), beep_hz=beep))
    for i in range(3):
        out.append(Spec(f"silence-{i}", "machine", "", VOICES[0], 0, 0.0, noise=(0.0, 30.0, 80.0)[i]))
    out += [
        Spec("hard-hello-hello", "human", "Hello? ... Hello? ... Who is this?", Voice(US, 150, 50), 400, 12000.0,
             hard=True),
        Spec("hard-noisy-hello", "human", "Hello?", Voice(GB, 160, 50), 500, 12000.0, noise=250.0, hard=True),
        Spec("hard-noisy-hi", "human", "Hi, this is Sam.", Voice(US + "+f3", 170, 60), 300, 10000.0,
             noise=400.0, hard=True),
        Spec("hard-quiet-hello", "human", "Hello?", Voice(SCOT, 150, 40), 600, 2500.0, hard=True),
        Spec("hard-slow-hi", "human", "Hi, this is Samantha Jones.", Voice(RP + "+f2", 120, 60), 300, 9000.0,
             hard=True),
        Spec("hard-short-greeting-beep", "machine", "Leave a message.", Voice(US + "+f4", 170, 55), 300, 9000.0,
             beep_hz=850.0, hard=True),
        Spec("hard-noisy-greeting", "machine", GREETINGS[1], Voice(CARIB, 160, 45), 400, 11000.0, beep_hz=1000.0,
             noise=300.0, hard=True),
    ]
    return out


@functools.cache
def recordings() -> tuple[Recording, ...]:
    return tuple(Recording(spec, make(spec), held_out=i % 3 == 2) for i, spec in enumerate(specs()))


def make(spec: Spec) -> Samples:
    """One recording, from ``spec``: the same samples every time."""
    parts = [np.zeros(spec.pause_ms * SAMPLE_RATE // 1000, dtype=np.float64)]
    if spec.text:
        speech = speak(spec.text, spec.voice).astype(np.float64)
        speech = speech[: _last_voiced(speech)]  # espeak's own trailing silence off: the line decides that
        parts.append(speech / max(float(np.abs(speech).max()), 1.0) * spec.peak)
    if spec.beep_hz is not None:
        parts += [np.zeros(SAMPLE_RATE * 3 // 10), sine(spec.beep_hz, 500, amplitude=8000).astype(np.float64)]
    if not spec.text or spec.noise:
        parts.append(np.zeros(SAMPLE_RATE * 8))  # the line goes on (silent, or as noisy as it was)
    line = np.concatenate(parts)
    if spec.noise:
        seed = int.from_bytes(spec.name.encode(), "little") % 2**32
        line = line + np.random.default_rng(seed).normal(0.0, spec.noise, len(line))
    return np.clip(line, -32768, 32767).astype(np.int16)


@functools.cache
def speak(text: str, voice: Voice) -> Samples:
    """``text`` spoken by espeak-ng in ``voice``, at 8 kHz."""
    args = ["espeak-ng", "--stdout", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch), text]
    done = subprocess.run(args, capture_output=True, check=True, timeout=60)
    rate, samples = parse_wav16(done.stdout)
    return to_int16(resample(samples.astype(np.float32) / np.float32(32768.0), rate, SAMPLE_RATE))


def _last_voiced(x: NDArray[np.float64]) -> int:
    loud = np.flatnonzero(np.abs(x) > 0.02 * max(float(np.abs(x).max()), 1.0))
    return int(loud[-1]) + 1 if len(loud) else len(x)


def wav_bytes(samples: Samples) -> bytes:
    """A recording as a mono 16-bit 8 kHz WAV file (what is uploaded for a virtual phone to play)."""
    data = samples.astype("<i2").tobytes()
    header = b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    header += (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + SAMPLE_RATE.to_bytes(4, "little")
    header += (2 * SAMPLE_RATE).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    return header + b"data" + len(data).to_bytes(4, "little") + data


def run_detector(recording: Recording, mode: str = "detect_beep", seconds: float = 40.0) -> Decision:
    """The node's detector alone on ``recording`` (then silence), frame by frame with ``now``."""
    total = np.concatenate([recording.samples, np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16)])
    detector = MachineDetector(mode, {}, now=0.0)
    result, at, beep_at = "none", seconds, None
    for i in range(len(total) // FRAME_SAMPLES):
        now = (i + 1) * FRAME_SAMPLES / SAMPLE_RATE
        for verdict in detector.feed(total[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES], now):
            if verdict.kind == "detection":
                result, at = verdict.result, now
            elif verdict.result == "beep_detected":
                beep_at = now
        if detector.done:
            break
    return Decision(recording.name, recording.truth, recording.held_out, result, at,
                    recording.spec.beep_hz is not None, beep_at is not None, beep_at)


def confusion(decisions: Iterable[Decision]) -> dict[str, dict[str, int]]:
    """Counts by truth (rows) and result (columns)."""
    out = {truth: dict.fromkeys((*VERDICTS, "none"), 0) for truth in ("human", "machine")}
    for d in decisions:
        out[d.truth][d.result] += 1
    return out


def accuracy(decisions: Sequence[Decision]) -> float:
    return sum(d.result == d.truth for d in decisions) / len(decisions) if decisions else 0.0


def table(decisions: Sequence[Decision], title: str) -> str:
    """A confusion table, the accuracy (all, held out) and the decision times, as text."""
    lines = [title, f"{'truth / result':<16}" + "".join(f"{v:>10}" for v in (*VERDICTS, "none"))]
    for truth, row in confusion(decisions).items():
        lines.append(f"{truth:<16}" + "".join(f"{row[v]:>10}" for v in (*VERDICTS, "none")))
    held = [d for d in decisions if d.held_out]
    lines.append(f"correct: {accuracy(decisions):.0%} of {len(decisions)} "
                 f"(held out: {accuracy(held):.0%} of {len(held)})")
    for truth in ("human", "machine"):
        times = sorted(d.seconds for d in decisions if d.truth == truth and d.result != "none")
        if times:
            lines.append(f"decision time, {truth}: median {np.median(times):.2f} s, max {max(times):.2f} s")
    beeps = [d for d in decisions if d.beep_expected]
    if beeps:
        lines.append(f"beeps found: {sum(d.beep_found for d in beeps)} of {len(beeps)}; "
                     f"false beeps: {sum(d.beep_found and not d.beep_expected for d in decisions)}")
    wrong = [f"{d.name} ({d.truth} -> {d.result})" for d in decisions if d.result != d.truth]
    lines.append("wrong: " + (", ".join(wrong) if wrong else "none"))
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([run_detector(r) for r in recordings()], "the detector alone (detect_beep)"))
