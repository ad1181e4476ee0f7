"""The address of a virtual phone (``virtual:<name>;option;...``), parsed strictly: what ``dial`` checks
before it rings, what ``POST /virtual/calls`` checks, and what the virtual phones' driver acts on.

    virtual:alice                       answers after 0.5 s, sends silence
    virtual:alice;answer_after=2        answers after 2 s
    virtual:alice;tone=500              sends a 500 Hz tone (tone=500+900: two tones)
    virtual:bob;busy                    refuses with 486 Busy Here      (also: reject -> 603, notfound -> 404,
                                                                          unavailable -> 480)
    virtual:carol;noanswer              rings until the dial's timeout_secs
    virtual:dave;hangup_after=10        hangs up 10 s after answering
    virtual:eve;tone=500+900;cadence=600
                                        the tone for 600 ms, then silence (cadence=400/120/400/...: the tone
                                        on and off for these milliseconds, then silence)
    virtual:bob;say=Hello%2C%20Bob%3F   speaks the (URL-escaped) text with the node's text-to-speech once,
                                        then falls silent; voice=female|male|espeak.<voice> chooses the voice
    virtual:bob;play=greeting           plays the account's uploaded media ``greeting`` once (or an
                                        http(s) URL: play=https%3A%2F%2Fexample.com%2Fhi.wav), then silence
    virtual:vm;voicemail                answers as a voicemail: a greeting (say= or play=, else a spoken
                                        default one), a beep (beep=HZ, default 1000 Hz), then silence
    ...;beep=1000                       a 500 ms beep at 1000 Hz after what the phone says

What a phone says (``say``, ``play``) and a tone with its cadence are one or the other, not both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from urllib.parse import unquote

PREFIX = "virtual:"
REFUSALS = {"busy": 486, "reject": 603, "notfound": 404, "unavailable": 480}
TONE_RANGE_HZ = (20.0, 3900.0)  # what 8 kHz audio carries
MAX_SAY_CHARS = 2000
VOICEMAIL_BEEP_HZ = 1000.0


@dataclass(frozen=True, slots=True)
class VirtualSpec:
    name: str
    answer_after: float = 0.5
    refuse_with: int | None = None
    never_answer: bool = False
    hangup_after: float | None = None
    tone_hz: tuple[float, ...] = ()
    cadence_ms: tuple[int, ...] = ()  # the tone's cadence: on, off, on, ... milliseconds, then silence
    beep_hz: float | None = None  # a beep after the cadence or what the phone says
    say: str | None = None  # text to speak once answered
    voice: str | None = None  # the voice that speaks it (the speak command's voices)
    play: str | None = None  # an http(s) URL or the name of the account's uploaded media, played once answered
    voicemail: bool = False

    @property
    def media_name(self) -> str | None:
        """The uploaded media ``play`` names (None: it names a URL, or nothing)."""
        return self.play if self.play is not None and "://" not in self.play else None

    @classmethod
    def parse(cls, endpoint: str) -> VirtualSpec:
        """The phone ``endpoint`` names; ``ValueError`` saying which option is wrong and why."""
        if not endpoint.startswith(PREFIX):
            raise ValueError(f"not a virtual phone: {endpoint!r}")
        name, *options = endpoint[len(PREFIX):].split(";")
        spec = cls(name or "phone")
        seen: set[str] = set()
        for opt in options:
            key, _, value = opt.strip().partition("=")
            try:
                if key and key in seen:
                    raise ValueError("given twice")
                seen.add(key)
                if key:
                    spec = _with_option(spec, key, value)
            except ValueError as exc:
                raise ValueError(f"bad virtual phone option {opt!r}: {exc}") from None
        return _checked(spec)


def _with_option(spec: VirtualSpec, key: str, value: str) -> VirtualSpec:
    """``spec`` with one more option, checked on its own."""
    low, high = TONE_RANGE_HZ
    if key in ("noanswer", "voicemail", *REFUSALS) and value:
        raise ValueError("takes no value")
    if key == "answer_after":
        return replace(spec, answer_after=_seconds(value))
    if key == "hangup_after":
        return replace(spec, hangup_after=_seconds(value))
    if key == "tone":
        tones = tuple(float(f) for f in value.split("+"))
        if not all(low <= f <= high for f in tones):
            raise ValueError(f"tone frequencies must be between {low:g} and {high:g} Hz")
        return replace(spec, tone_hz=tones)
    if key == "cadence":
        cadence = tuple(int(ms) for ms in value.split("/"))
        if not cadence or len(cadence) > 200 or not all(0 <= ms <= 60_000 for ms in cadence):
            raise ValueError("cadence is up to 200 durations of 0-60000 ms, separated by /")
        return replace(spec, cadence_ms=cadence)
    if key == "beep":
        beep = float(value)
        if not low <= beep <= high:
            raise ValueError(f"a beep's frequency must be between {low:g} and {high:g} Hz")
        return replace(spec, beep_hz=beep)
    if key == "say":
        return replace(spec, say=_text(key, value))
    if key == "voice":
        return replace(spec, voice=_text(key, value))
    if key == "play":
        play = _text(key, value)
        if "://" in play and not play.lower().startswith(("http://", "https://")):
            raise ValueError("play is an http(s) URL or the name of an uploaded media file")
        return replace(spec, play=play)
    if key == "voicemail":
        return replace(spec, voicemail=True)
    if key == "noanswer":
        return replace(spec, never_answer=True)
    if key in REFUSALS:
        return replace(spec, refuse_with=REFUSALS[key])
    raise ValueError(f"unknown virtual phone option {key!r}")


def _checked(spec: VirtualSpec) -> VirtualSpec:
    """``spec`` once its options agree with each other, with a voicemail's defaults filled in."""
    speaks = [key for key, value in (("say", spec.say), ("play", spec.play)) if value is not None]
    if len(speaks) > 1:
        raise ValueError("bad virtual phone options: say and play cannot be used together")
    if speaks and (spec.tone_hz or spec.cadence_ms):
        raise ValueError(f"bad virtual phone options: {speaks[0]} replaces tone and cadence; use one or the other")
    if spec.voice is not None and spec.say is None and not spec.voicemail:
        raise ValueError("bad virtual phone option 'voice': it is the voice of say (or of a voicemail's greeting)")
    if spec.voicemail and not speaks:
        spec = replace(spec, say=f"Hi, you have reached {spec.name}. Please leave a message after the tone.")
    if spec.voicemail and spec.beep_hz is None:
        spec = replace(spec, beep_hz=VOICEMAIL_BEEP_HZ)
    return spec


def _text(key: str, value: str) -> str:
    text = unquote(value, errors="strict")
    if not text.strip() or len(text) > MAX_SAY_CHARS or any(ord(c) < 32 and c not in "\t\n" for c in text):
        raise ValueError(f"{key} is 1 to {MAX_SAY_CHARS} characters of URL-escaped text, no control characters")
    return text


def _seconds(value: str) -> float:
    secs = float(value)
    if not math.isfinite(secs) or secs < 0:
        raise ValueError("seconds must be a finite number, 0 or more")
    return secs
