from __future__ import annotations

import shutil

import numpy as np
import pytest

from callroom.audio.lru import SampleLru
from callroom.audio.tts import (
    LANGUAGE_VOICES,
    MAX_PAYLOAD_CHARS,
    EspeakVoices,
    SpeechKey,
    Synthesizer,
    parse_wav16,
    resolve_voice,
    supported_languages,
    synthesize,
    validate_payload,
)
from callroom.errors import InvalidSpeechPayload, SynthesisFailed, UnknownVoice, UnsupportedLanguage
from tests.audio.signals import rms

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

VOICES = EspeakVoices.parse(
    """Pty Language       Age/Gender VoiceName          File                 Other Languages
 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  fr-fr           --/M      French_(France)    roa/fr               (fr 5)
""",
    """Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  variant         --/M      Male_3             !v/m3
 5  variant         --/F      Female_3           !v/f3
""",
)


def test_voice_listing_parse() -> None:
    assert {"en-gb", "en-us", "fr-fr", "gmw/en-us", "french_(france)"} <= VOICES.voices
    assert VOICES.variants == {"m3", "f3"}


def test_basic_voices_follow_the_language() -> None:
    assert resolve_voice("female", None, VOICES) == "en-us+f3"
    assert resolve_voice("male", "en-GB", VOICES) == "en-gb+m3"
    assert resolve_voice("Female", "fr-fr", VOICES) == "fr-fr+f3"
    with pytest.raises(UnsupportedLanguage):
        resolve_voice("male", "de-DE", VOICES)  # mapped, but not installed in this listing
    with pytest.raises(UnsupportedLanguage):
        resolve_voice("male", "xx-XX", VOICES)


def test_espeak_voices_and_unknown_voices() -> None:
    assert resolve_voice("espeak.en-gb", None, VOICES) == "en-gb"
    assert resolve_voice("espeak.fr-fr+m3", "en-US", VOICES) == "fr-fr+m3"
    bad_voices = ["Polly.Nobody", "espeak.klingon", "espeak.en-us+nosuch", "espeak.", "espeak.en-us;ls", "robot"]
    for bad in bad_voices:
        with pytest.raises(UnknownVoice) as info:
            resolve_voice(bad, None, VOICES)
        assert info.value.field == "voice"


def test_payload_validation() -> None:
    validate_payload("x" * MAX_PAYLOAD_CHARS, "text")
    validate_payload('<speak xmlns="http://www.w3.org/2001/10/synthesis">Hi</speak>', "ssml")
    cases = [
        ("x" * (MAX_PAYLOAD_CHARS + 1), "text", "at most"),
        ("   ", "text", "empty"),
        ("<speak>unclosed", "ssml", "well-formed"),
        ("just words", "ssml", "well-formed"),
        ("<p>Hi</p>", "ssml", "<speak>"),
        ('<!DOCTYPE speak [<!ENTITY a "b">]><speak>&a;</speak>', "ssml", "DOCTYPE"),
    ]
    for payload, kind, words in cases:
        with pytest.raises(InvalidSpeechPayload, match=words) as info:
            validate_payload(payload, kind)  # type: ignore[arg-type]
        assert info.value.field == "payload"


def test_parse_wav16_reads_a_streamed_header() -> None:
    samples = np.array([1, -2, 300, -32768], np.int16)
    header = (
        b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x22\x56\x00\x00"
        b"\x44\xac\x00\x00\x02\x00\x10\x00data\xff\xff\xff\x7f"
    )
    rate, got = parse_wav16(header + samples.tobytes() + b"\x01")  # a stray odd byte is dropped
    assert rate == 22050 and np.array_equal(got, samples)
    with pytest.raises(SynthesisFailed):
        parse_wav16(b"not a wav")


def test_lru_is_bounded_by_samples() -> None:
    lru: SampleLru[str] = SampleLru(max_samples=1000)
    lru.put("a", np.zeros(400, np.int16))
    lru.put("b", np.zeros(400, np.int16))
    assert lru.get("a") is not None  # now "b" is the least recently used
    lru.put("c", np.zeros(400, np.int16))
    assert "b" not in lru and "a" in lru and "c" in lru and lru.samples == 800
    lru.put("huge", np.zeros(1001, np.int16))
    assert "huge" not in lru and len(lru) == 2


@needs_espeak
def test_synthesize_speech() -> None:
    audio = synthesize("Thank you for calling. Please hold.", voice="female", language="en-US")
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert 0.8 < audio.size / 8000 < 6
    assert rms(audio) > 1000
    assert not audio.flags.writeable


@needs_espeak
def test_male_and_female_differ_in_pitch() -> None:
    def pitch(x: np.ndarray) -> float:
        """Median frame pitch from autocorrelation, voiced frames only."""
        found = []
        for start in range(0, x.size - 400, 400):
            frame = x[start : start + 400].astype(np.float64)
            if rms(frame) < 2000:
                continue
            ac = np.correlate(frame, frame, "full")[399:]
            lag = 20 + int(np.argmax(ac[20:120]))  # 67-400 Hz
            found.append(8000 / lag)
        return float(np.median(found))

    text = "Hello, the conference will begin shortly."
    assert pitch(synthesize(text, voice="female")) > pitch(synthesize(text, voice="male")) * 1.3


@needs_espeak
def test_every_supported_language_speaks() -> None:
    languages = supported_languages()
    assert set(languages) <= set(LANGUAGE_VOICES)
    assert {"en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "pt-BR", "cmn-CN"} <= set(languages)
    synth = Synthesizer()
    for language in languages:
        audio = synth.synthesize("1 2 3", voice="male", language=language)
        assert rms(audio) > 500, language


@needs_espeak
def test_ssml_is_interpreted() -> None:
    synth = Synthesizer()
    plain = synth.synthesize("<speak>Hello there.</speak>", voice="male", payload_type="ssml")
    with_break = '<speak>Hello <break time="1500ms"/> there.</speak>'
    paused = synth.synthesize(with_break, voice="male", payload_type="ssml")
    assert paused.size - plain.size > 0.8 * 8000
    spoken_tags = synth.synthesize("<speak>Hello there.</speak>", voice="male", payload_type="text")
    assert spoken_tags.size > plain.size  # as text, the markup is read out


@needs_espeak
def test_hostile_text_is_just_text() -> None:
    synth = Synthesizer()
    audio = synth.synthesize('-v xx --stdout "; rm -rf / $(reboot) `id` | cat', voice="espeak.en-us")
    assert audio.size > 8000


@needs_espeak
def test_cache_returns_the_same_audio() -> None:
    cache: SampleLru[SpeechKey] = SampleLru(8000 * 60)
    synth = Synthesizer(cache=cache)
    first = synth.synthesize("Cached words", voice="female", language="en-GB")
    assert synth.synthesize("Cached words", voice="female", language="en-GB") is first
    assert synth.synthesize("Cached words", voice="male", language="en-GB") is not first
    assert len(cache) == 2 and cache.samples > first.size
    with pytest.raises(UnknownVoice):
        synth.synthesize("Cached words", voice="Polly.Nobody")


def test_missing_engine_is_a_synthesis_failure() -> None:
    with pytest.raises(SynthesisFailed, match="not installed"):
        Synthesizer("/nonexistent/espeak-ng").synthesize("hi", voice="male")


@pytest.mark.parametrize(("voice", "espeak"), [
    ("AWS.Polly.Joanna-Neural", "en-us+f3"), ("AWS.Polly.Matthew", "en-us+m3"), ("Polly.Brian", "en-gb+m3"),
    ("polly.amy-neural", "en-gb+f3"), ("aws.Polly.Generative.Celine", "fr-fr+f3"), ("Polly.Mathieu", "fr-fr+m3"),
    ("Azure.en-US-JennyNeural", "en-us+f3"), ("Azure.en-US-AndrewMultilingualNeural", "en-us+m3"),
    ("Azure.fr-FR-HenriNeural", "fr-fr+m3"), ("Azure.en-CA-AriaNeural", "en-us+f3"),
    ("Telnyx.KokoroTTS.af", "en-us+f3"), ("Telnyx.KokoroTTS.bm_george", "en-gb+m3"),
    ("Telnyx.KokoroTTS.ff_siwis", "fr-fr+f3"), ("Telnyx.NaturalHD.astra", "en-us+f3"),
    ("Telnyx.NaturalHD.albion", "en-us+m3"), ("Telnyx.Natural.allison", "en-us+f3"),
])  # fmt: skip
def test_providers_voices_speak_their_language_and_gender(voice: str, espeak: str) -> None:
    assert resolve_voice(voice, "en-US", VOICES) == espeak  # the voice's own language wins over ``language``


@pytest.mark.parametrize("voice", [
    "AWS.Polly.Nobody", "Polly.Marlene",  # unknown; German, not installed in this listing
    "Azure.en-US-NobodyNeural", "Azure.xx-XX-JennyNeural", "Azure.en-US-Jenny",
    "Telnyx.KokoroTTS.xf_nobody", "Telnyx.KokoroTTS.ax", "Telnyx.NaturalHD.nobody", "Telnyx.Ultra.astra",
    "Google.en-US-Standard-A", "ElevenLabs.v3.Adam",
])  # fmt: skip
def test_unknown_provider_voices_are_refused_by_name(voice: str) -> None:
    with pytest.raises(UnknownVoice) as info:
        resolve_voice(voice, None, VOICES)
    assert info.value.field == "voice" and voice in str(info.value)
