"""Text-to-speech with espeak-ng run as a subprocess, resampled to 8 kHz int16.

Voices: Telnyx's basic ``male`` / ``female`` voices speak the requested ``language`` (default
``en-US``) with an espeak male or female variant; ``espeak.<voice>[+<variant>]`` picks any
installed espeak voice directly (its own language wins over ``language``); the providers' voices
Telnyx's examples use (``AWS.Polly.Joanna-Neural``, ``Azure.en-US-JennyNeural``,
``Telnyx.KokoroTTS.af``) speak with the espeak voice of their language and gender
(``voice_names.py``). Anything else raises ``UnknownVoice``. Text goes to espeak on stdin, never
through a shell.

Results are cached in memory (LRU bounded by total samples); returned arrays are read-only.
"""

from __future__ import annotations

import functools
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from callroom.audio import voice_names
from callroom.audio.lru import SampleLru
from callroom.audio.pcm import SAMPLE_RATE, Pcm, to_int16
from callroom.audio.resample import resample
from callroom.errors import InvalidSpeechPayload, SynthesisFailed, UnknownVoice, UnsupportedLanguage

PayloadType = Literal["text", "ssml"]
MAX_PAYLOAD_CHARS: Final = 3000
DEFAULT_LANGUAGE: Final = "en-US"
DEFAULT_CACHE_SAMPLES: Final = SAMPLE_RATE * 600  # ten minutes of speech, 9.6 MB
BASIC_VOICES: Final[Mapping[str, str]] = {"male": "m3", "female": "f3"}

# Telnyx language code -> espeak voice. Where espeak has no voice for the exact locale the
# nearest one is used (listed in APPROXIMATE_LANGUAGES).
LANGUAGE_VOICES: Final[Mapping[str, str]] = {
    "arb": "ar",
    "cmn-CN": "cmn",
    "cy-GB": "cy",
    "da-DK": "da",
    "de-DE": "de",
    "en-AU": "en-gb",
    "en-GB": "en-gb",
    "en-GB-WLS": "en-gb",
    "en-IN": "en-gb",
    "en-US": "en-us",
    "es-ES": "es",
    "es-MX": "es-419",
    "es-US": "es-419",
    "fr-CA": "fr-fr",
    "fr-FR": "fr-fr",
    "hi-IN": "hi",
    "is-IS": "is",
    "it-IT": "it",
    "ja-JP": "ja",
    "ko-KR": "ko",
    "nb-NO": "nb",
    "nl-NL": "nl",
    "pl-PL": "pl",
    "pt-BR": "pt-br",
    "pt-PT": "pt",
    "ro-RO": "ro",
    "ru-RU": "ru",
    "sv-SE": "sv",
    "tr-TR": "tr",
}
APPROXIMATE_LANGUAGES: Final = frozenset({"en-AU", "en-GB-WLS", "en-IN", "fr-CA", "es-US"})

_ESPEAK_PREFIX = "espeak."
_VOICE_NAME = re.compile(r"^[A-Za-z0-9_./-]+(\+[A-Za-z0-9_-]+)?$")
_DOCTYPE = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class EspeakVoices:
    """What the installed espeak-ng offers: voice identifiers and variants, lower-cased."""

    voices: frozenset[str]
    variants: frozenset[str]

    @classmethod
    def parse(cls, voices_listing: str, variants_listing: str) -> EspeakVoices:
        voices: set[str] = set()
        for line in voices_listing.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5:
                voices.update({cols[1].lower(), cols[3].lower(), cols[4].lower()})
        variants = {
            token.removeprefix("!v/").lower()
            for token in variants_listing.split()
            if token.startswith("!v/") and len(token) > 3
        }
        return cls(frozenset(voices), frozenset(variants))


@functools.cache
def installed_voices(executable: str = "espeak-ng") -> EspeakVoices:
    """Ask espeak-ng (once per executable) which voices and variants it has."""
    return EspeakVoices.parse(
        _run_espeak([executable, "--voices"], b"", 10.0).decode("utf-8", "replace"),
        _run_espeak([executable, "--voices=variant"], b"", 10.0).decode("utf-8", "replace"),
    )


def supported_languages(voices: EspeakVoices | None = None) -> list[str]:
    """The Telnyx language codes whose espeak voice is installed."""
    have = (voices or installed_voices()).voices
    return sorted(code for code, voice in LANGUAGE_VOICES.items() if voice in have)


def resolve_voice(voice: str, language: str | None, voices: EspeakVoices) -> str:
    """The espeak ``-v`` argument for a Telnyx ``voice`` and ``language``."""
    basic = BASIC_VOICES.get(voice.lower())
    if basic is not None:
        code = language or DEFAULT_LANGUAGE
        by_lower = {k.lower(): v for k, v in LANGUAGE_VOICES.items()}
        espeak_voice = by_lower.get(code.lower())
        if espeak_voice is None or espeak_voice not in voices.voices:
            raise UnsupportedLanguage(f"language {code!r} is not supported by the basic voices")
        return f"{espeak_voice}+{basic}"
    if voice.startswith(_ESPEAK_PREFIX):
        name = voice[len(_ESPEAK_PREFIX) :]
        base, _, variant = name.partition("+")
        if (
            _VOICE_NAME.match(name)
            and base.lower() in voices.voices
            and (not variant or variant.lower() in voices.variants)
        ):
            return name
        raise UnknownVoice(f"espeak has no voice {name!r}")
    named = voice_names.lookup(voice, tuple(LANGUAGE_VOICES))
    if named is not None:  # a provider's voice (Polly, Azure, Telnyx): its own language wins over ``language``
        code, gender = named
        espeak_voice = LANGUAGE_VOICES[code]
        if espeak_voice not in voices.voices:
            raise UnknownVoice(f"voice {voice!r} speaks {code}, whose espeak voice is not installed")
        return f"{espeak_voice}+{BASIC_VOICES[gender]}"
    raise UnknownVoice(f"unknown voice {voice!r}; use male, female, espeak.<voice> or a listed voice of "
                       f"{', '.join(voice_names.FAMILIES)}")


def validate_payload(payload: str, payload_type: PayloadType) -> None:
    if not payload.strip():
        raise InvalidSpeechPayload("the payload is empty")
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise InvalidSpeechPayload(f"the payload has {len(payload)} characters; at most {MAX_PAYLOAD_CHARS}")
    if payload_type == "text":
        return
    if payload_type != "ssml":
        raise InvalidSpeechPayload(f"payload_type must be 'text' or 'ssml', not {payload_type!r}")
    if _DOCTYPE.search(payload):
        raise InvalidSpeechPayload("SSML must not contain a DOCTYPE or ENTITY declaration")
    try:
        root = ET.fromstring(payload)
    except ET.ParseError as exc:
        raise InvalidSpeechPayload(f"the SSML is not well-formed XML: {exc}") from exc
    if root.tag.rpartition("}")[2] != "speak":
        raise InvalidSpeechPayload(f"the SSML root element must be <speak>, not <{root.tag}>")


SpeechKey = tuple[str, str, str | None, str]  # (text, voice, language, payload_type)


class Synthesizer:
    def __init__(
        self,
        executable: str = "espeak-ng",
        *,
        cache: SampleLru[SpeechKey] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.executable = executable
        self.cache: SampleLru[SpeechKey] = cache if cache is not None else SampleLru(DEFAULT_CACHE_SAMPLES)
        self.timeout = timeout

    def synthesize(
        self, text: str, *, voice: str, language: str | None = None, payload_type: PayloadType = "text"
    ) -> Pcm:
        """Speak ``text`` (plain text or SSML) -> 8 kHz mono int16, read-only."""
        validate_payload(text, payload_type)
        espeak_voice = resolve_voice(voice, language, installed_voices(self.executable))
        key: SpeechKey = (text, voice, language, payload_type)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        args = [self.executable, "--stdout", "--stdin", "-b", "1", "-v", espeak_voice]
        if payload_type == "ssml":
            args.append("-m")
        rate, samples = parse_wav16(_run_espeak(args, text.encode("utf-8"), self.timeout))
        audio = to_int16(resample(samples.astype(np.float32) / np.float32(32768.0), rate, SAMPLE_RATE))
        audio.setflags(write=False)
        self.cache.put(key, audio)
        return audio


_default: Synthesizer | None = None


def synthesize(text: str, *, voice: str, language: str | None = None, payload_type: PayloadType = "text") -> Pcm:
    """``Synthesizer.synthesize`` on a process-wide synthesizer with the default cache."""
    global _default
    if _default is None:
        _default = Synthesizer()
    return _default.synthesize(text, voice=voice, language=language, payload_type=payload_type)


def parse_wav16(data: bytes) -> tuple[int, Pcm]:
    """(sample rate, samples) of a mono 16-bit PCM WAV as espeak streams it to stdout,
    whose RIFF and data sizes are placeholders: the data runs to the end of the bytes."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisFailed("espeak-ng did not produce a WAV stream")
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt ":
            fmt = data[body : body + 16]
            channels = int.from_bytes(fmt[2:4], "little")
            rate = int.from_bytes(fmt[4:8], "little")
            bits = int.from_bytes(fmt[14:16], "little")
            if int.from_bytes(fmt[0:2], "little") != 1 or channels != 1 or bits != 16:
                raise SynthesisFailed("espeak-ng produced a WAV stream that is not mono 16-bit PCM")
        elif chunk == b"data":
            if rate <= 0:
                break
            payload = data[body : len(data) - (len(data) - body) % 2]
            return rate, np.frombuffer(payload, dtype="<i2").astype(np.int16)
        pos = body + size + (size & 1)
    raise SynthesisFailed("espeak-ng's WAV stream has no fmt or data chunk")


def _run_espeak(args: list[str], stdin: bytes, timeout: float) -> bytes:
    try:
        done = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise SynthesisFailed(f"{args[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise SynthesisFailed(f"{args[0]} took longer than {timeout:g} s") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip()[:300]
        raise SynthesisFailed(f"{args[0]} failed (exit {done.returncode}): {detail}")
    return done.stdout
