"""The address of a virtual phone (``virtual:<name>;option;...``), parsed strictly: what ``dial`` checks
before it rings, what ``POST /virtual/calls`` checks, and what the virtual phones' driver acts on.

    virtual:alice                       answers after 0.5 s, sends silence
    virtual:alice;answer_after=2        answers after 2 s
    virtual:alice;tone=500              sends a 500 Hz tone (tone=500+900: two tones)
    virtual:bob;busy                    refuses with 486 Busy Here      (also: reject -> 603, notfound -> 404,
                                                                          unavailable -> 480)
    virtual:carol;noanswer              rings until the dial's timeout_secs
    virtual:dave;hangup_after=10        hangs up 10 s after answering
    virtual:eve;tone=500+900;say=600    says "hello": the tone for 600 ms, then silence (say=400/120/400/...:
                                        the tone on and off for these milliseconds, then silence; a
                                        voicemail greeting's cadence), and with beep=1000 a 500 ms beep at
                                        1000 Hz after it
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PREFIX = "virtual:"
REFUSALS = {"busy": 486, "reject": 603, "notfound": 404, "unavailable": 480}
TONE_RANGE_HZ = (20.0, 3900.0)  # what 8 kHz audio carries


@dataclass(frozen=True, slots=True)
class VirtualSpec:
    name: str
    answer_after: float = 0.5
    refuse_with: int | None = None
    never_answer: bool = False
    hangup_after: float | None = None
    tone_hz: tuple[float, ...] = ()
    say_ms: tuple[int, ...] = ()  # the tone's cadence: on, off, on, ... milliseconds, then silence
    beep_hz: float | None = None  # a beep after the cadence

    @classmethod
    def parse(cls, endpoint: str) -> VirtualSpec:
        """The phone ``endpoint`` names; ``ValueError`` saying which option is wrong and why."""
        if not endpoint.startswith(PREFIX):
            raise ValueError(f"not a virtual phone: {endpoint!r}")
        name, *options = endpoint[len(PREFIX):].split(";")
        answer_after, refuse, never, hangup_after = 0.5, None, False, None
        tones: tuple[float, ...] = ()
        say: tuple[int, ...] = ()
        beep: float | None = None
        for opt in options:
            key, _, value = opt.strip().partition("=")
            try:
                if key == "answer_after":
                    answer_after = _seconds(value)
                elif key == "hangup_after":
                    hangup_after = _seconds(value)
                elif key == "tone":
                    tones = tuple(float(f) for f in value.split("+"))
                    low, high = TONE_RANGE_HZ
                    if not all(low <= f <= high for f in tones):
                        raise ValueError(f"tone frequencies must be between {low:g} and {high:g} Hz")
                elif key == "say":
                    say = tuple(int(ms) for ms in value.split("/"))
                    if not say or len(say) > 200 or not all(0 <= ms <= 60_000 for ms in say):
                        raise ValueError("say is up to 200 durations of 0-60000 ms, separated by /")
                elif key == "beep":
                    beep = float(value)
                    low, high = TONE_RANGE_HZ
                    if not low <= beep <= high:
                        raise ValueError(f"a beep's frequency must be between {low:g} and {high:g} Hz")
                elif key == "noanswer":
                    never = True
                elif key in REFUSALS:
                    refuse = REFUSALS[key]
                elif key:
                    raise ValueError(f"unknown virtual phone option {key!r}")
            except ValueError as exc:
                raise ValueError(f"bad virtual phone option {opt!r}: {exc}") from None
        return cls(name or "phone", answer_after, refuse, never, hangup_after, tones, say, beep)


def _seconds(value: str) -> float:
    secs = float(value)
    if not math.isfinite(secs) or secs < 0:
        raise ValueError("seconds must be a finite number, 0 or more")
    return secs
