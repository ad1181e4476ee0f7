"""Known speech for measuring transcription: phrases a caller might say, spoken by several synthetic voices,
and people's recordings that a Debian package ships, each with its transcript.

Sources (each skipped when its program or package is missing):

- ``espeak``: espeak-ng, four voices: ``en-us+m3`` and ``en-us+f3`` (callroom's ``male`` and ``female``
  TTS voices), ``en-us+klatt2`` at 130 words/min (what the API's transcription test plays) and plain
  ``en-us``.
- ``flite``: Festival-lite's voices ``kal16``, ``slt``, ``awb``, ``rms`` (Debian ``flite``), a different
  synthesis method (diphone and unit-selection voices recorded from people).
- ``human``: the recordings of Debian ``pocketsphinx-testdata``: five LibriVox sentences read by a person,
  five card names spoken by another, and "go forward ten meters".
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from callroom.audio.resample import resample
from callroom.rtp.g711 import ulaw_decode_array, ulaw_encode_array

PHRASES = (
    "please transfer me to the billing department",
    "i would like to check the status of my order",
    "my account number is four five six seven",
    "can you call me back tomorrow morning",
    "the weather today is cold and windy",
    "hello how are you today one two three four five",
    "i need to speak to someone about my bill",
    "yes that is correct thank you very much",
    "what time does the store open on monday",
    "please cancel my subscription",
)
ESPEAK_VOICES = (("en-us+m3", None), ("en-us+f3", None), ("en-us+klatt2", 130), ("en-us", None))
FLITE_VOICES = ("kal16", "slt", "awb", "rms")
TEST_DATA = Path("/usr/share/pocketsphinx/test/data")


@dataclass(frozen=True, slots=True)
class Sample:
    source: str  # espeak | flite | human
    voice: str
    text: str
    pcm: npt.NDArray[np.int16]
    rate: int

    def phone(self) -> npt.NDArray[np.int16]:
        """As a call carries it: 8 kHz, through G.711 u-law and back."""
        return ulaw_decode_array(ulaw_encode_array(to_rate(self.pcm, self.rate, 8000)))


def to_rate(pcm: npt.NDArray[np.int16], rate: int, to: int) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(resample(pcm.astype(np.float32), rate, to)), -32768, 32767).astype(np.int16)


def read_wav(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, w.getnchannels())[:, 0]
        return x.copy(), w.getframerate()


def _speak(command: list[str]) -> tuple[npt.NDArray[np.int16], int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run([*command, str(out)], check=True, capture_output=True)
        return read_wav(out)


def espeak(voice: str, text: str, speed: int | None = None) -> Sample:
    pcm, rate = _speak(["espeak-ng", "-v", voice, *(["-s", str(speed)] if speed else []), text, "-w"])
    return Sample("espeak", voice, text, pcm, rate)


def flite(voice: str, text: str) -> Sample:
    pcm, rate = _speak(["flite", "-voice", voice, "-t", text, "-o"])
    return Sample("flite", voice, text, pcm, rate)


def recordings() -> list[Sample]:
    out: list[Sample] = []
    if not TEST_DATA.is_dir():
        return out
    for folder, name in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for line in (TEST_DATA / folder / name).read_text().splitlines():
            found = re.match(r"<s> (.*?)\s*</s> \((.*)\)", line)
            if found:
                pcm, rate = read_wav(TEST_DATA / folder / f"{found.group(2)}.wav")
                out.append(Sample("human", folder, found.group(1), pcm, rate))
    raw = np.fromfile(TEST_DATA / "goforward.raw", np.int16)
    out.append(Sample("human", "goforward", "go forward ten meters", raw, 16000))
    return out


def samples(sources: tuple[str, ...] = ("espeak", "flite", "human")) -> list[Sample]:
    out: list[Sample] = []
    if "espeak" in sources and shutil.which("espeak-ng"):
        out += [espeak(v, t, s) for v, s in ESPEAK_VOICES for t in PHRASES]
    if "flite" in sources and shutil.which("flite"):
        out += [flite(v, t) for v in FLITE_VOICES for t in PHRASES]
    if "human" in sources:
        out += recordings()
    return out


def word_errors(ref: str, hyp: str) -> int:
    """Levenshtein distance over words."""
    r, h = ref.split(), hyp.split()
    row = list(range(len(h) + 1))
    for i, a in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, b in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (a != b))
    return row[-1]
