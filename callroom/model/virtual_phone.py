"""The address of a virtual phone (``virtual:<name>;option;...``), parsed strictly: what ``dial`` checks
before it rings, what ``POST /virtual/calls`` checks, and what the virtual phones' driver acts on.

    virtual:alice                       answers after 0.5 s, sends silence
    virtual:alice;answer_after=2        answers after 2 s
    virtual:alice;tone=500              sends a 500 Hz tone (tone=500+900: two tones)
    virtual:bob;busy                    refuses with 486 Busy Here      (also: reject -> 603, notfound -> 404,
                                                                          unavailable -> 480)
    virtual:carol;noanswer              rings until the dial's timeout_secs
    virtual:dave;hangup_after=10        hangs up 10 s after answering
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

    @classmethod
    def parse(cls, endpoint: str) -> VirtualSpec:
        """The phone ``endpoint`` names; ``ValueError`` saying which option is wrong and why."""
        if not endpoint.startswith(PREFIX):
            raise ValueError(f"not a virtual phone: {endpoint!r}")
        name, *options = endpoint[len(PREFIX):].split(";")
        answer_after, refuse, never, hangup_after = 0.5, None, False, None
        tones: tuple[float, ...] = ()
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
                elif key == "noanswer":
                    never = True
                elif key in REFUSALS:
                    refuse = REFUSALS[key]
                elif key:
                    raise ValueError(f"unknown virtual phone option {key!r}")
            except ValueError as exc:
                raise ValueError(f"bad virtual phone option {opt!r}: {exc}") from None
        return cls(name or "phone", answer_after, refuse, never, hangup_after, tones)


def _seconds(value: str) -> float:
    secs = float(value)
    if not math.isfinite(secs) or secs < 0:
        raise ValueError("seconds must be a finite number, 0 or more")
    return secs
