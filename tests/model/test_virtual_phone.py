"""The virtual phone's address (``model/virtual_phone.py``): each option parsed strictly, options checked
together, URL-escaped text and a voicemail's defaults."""

from __future__ import annotations

import pytest

from callroom.model.virtual_phone import VOICEMAIL_BEEP_HZ, VirtualSpec


def test_the_options_of_a_tone_phone() -> None:
    spec = VirtualSpec.parse("virtual:eve;answer_after=0;tone=500+900;cadence=400/120/400;beep=1000;hangup_after=3")
    assert (spec.name, spec.answer_after, spec.tone_hz, spec.cadence_ms) == ("eve", 0.0, (500.0, 900.0),
                                                                             (400, 120, 400))
    assert (spec.beep_hz, spec.hangup_after, spec.say, spec.play) == (1000.0, 3.0, None, None)
    assert VirtualSpec.parse("virtual:").name == "phone"
    assert VirtualSpec.parse("virtual:b;busy").refuse_with == 486
    assert VirtualSpec.parse("virtual:c;noanswer;").never_answer  # an empty option is nothing


def test_say_is_url_escaped_text_in_a_voice() -> None:
    spec = VirtualSpec.parse("virtual:bob;say=Hello%2C%20this%20is%20Bob%3B%20hi%21;voice=male")
    assert spec.say == "Hello, this is Bob; hi!" and spec.voice == "male"
    assert VirtualSpec.parse("virtual:bob;say=a+b").say == "a+b"  # a plus is a plus, not a space


def test_play_names_a_url_or_an_uploaded_file() -> None:
    url = VirtualSpec.parse("virtual:p;play=http%3A%2F%2F127.0.0.1%3A8000%2Fhi.wav")
    assert url.play == "http://127.0.0.1:8000/hi.wav" and url.media_name is None
    named = VirtualSpec.parse("virtual:p;play=greeting.wav")
    assert named.play == named.media_name == "greeting.wav"


def test_a_voicemail_greets_then_beeps() -> None:
    spec = VirtualSpec.parse("virtual:vm;voicemail")
    assert spec.voicemail and spec.beep_hz == VOICEMAIL_BEEP_HZ
    assert spec.say is not None and "leave a message" in spec.say
    own = VirtualSpec.parse("virtual:vm;voicemail;play=greeting;beep=1400")
    assert (own.say, own.play, own.beep_hz) == (None, "greeting", 1400.0)
    assert VirtualSpec.parse("virtual:vm;voicemail;voice=male").voice == "male"


@pytest.mark.parametrize(("endpoint", "said"), [
    ("virtual:x;say=600;say=700", "given twice"),
    ("virtual:x;say=", "1 to 2000 characters"),
    ("virtual:x;say=%00", "no control characters"),
    ("virtual:x;say=%E9", "say=%E9"),  # not UTF-8
    ("virtual:x;say=" + "a" * 2001, "1 to 2000 characters"),
    ("virtual:x;say=a;play=b", "say and play cannot be used together"),
    ("virtual:x;cadence=600;play=b", "play replaces tone and cadence"),
    ("virtual:x;voice=male", "voice of say"),
    ("virtual:x;play=file%3A%2F%2F%2Fetc%2Fpasswd", "an http(s) URL"),
    ("virtual:x;voicemail=yes", "takes no value"),
    ("virtual:x;cadence=-1", "0-60000 ms"),
    ("virtual:x;tonne=500", "unknown virtual phone option 'tonne'"),
])  # fmt: skip
def test_wrong_options_are_refused_saying_why(endpoint: str, said: str) -> None:
    with pytest.raises(ValueError, match="bad virtual phone option") as refused:
        VirtualSpec.parse(endpoint)
    assert said in str(refused.value)
