"""A virtual phone as a far end the control plane rings or takes a call from: its address checked before it
rings (a wrong option is the caller's mistake, 422, not a call that rings and never answers), and what it
says once answered as the media plane names it (``say=``: speech in a voice the node has; ``play=``: a URL,
or the account's uploaded media, read here)."""

from __future__ import annotations

from callroom.audio.tts import installed_voices, resolve_voice, validate_payload
from callroom.control.world import Steps, World
from callroom.errors import CommandRejected, SpeechRequestInvalid
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import MediaFile
from callroom.model.virtual_phone import PREFIX, VirtualSpec


def check_virtual(to: str, pointer: str) -> VirtualSpec | None:
    """The phone ``to`` names (None: ``to`` is no virtual phone); 10015 at ``pointer`` if an option is wrong."""
    if not to.startswith(PREFIX):
        return None
    try:
        return VirtualSpec.parse(to)
    except ValueError as exc:
        raise CommandRejected("10015", "Invalid value", str(exc), pointer) from exc


def virtual_speech(w: World, to: str, pointer: str) -> Steps[m.AudioSpec | None]:
    """What the virtual phone ``to`` says once answered (None: no speech, or no virtual phone), checked: the
    voice exists, the uploaded media exists in this account."""
    spec = check_virtual(to, pointer)
    if spec is None:
        return None
    if spec.say is not None:
        try:
            validate_payload(spec.say, "text")
            resolve_voice(spec.voice or "female", None, installed_voices())
        except SpeechRequestInvalid as exc:
            raise CommandRejected("10015", "Invalid value", f"bad virtual phone option {exc.field!r}: {exc}",
                                  pointer) from exc
        return m.AudioSpec("tts", spec.say, spec.voice or "female")
    if spec.media_name is not None:
        yield from w.load(r.MediaByName(spec.media_name))
        media: MediaFile | None = w.result(r.MediaByName(spec.media_name))
        if media is None:
            raise CommandRejected("10015", "Invalid value", f"bad virtual phone option 'play': no uploaded media "
                                  f"named {spec.media_name!r} in this account.", pointer)
        return m.AudioSpec("file", media.path)
    if spec.play is not None:
        return m.AudioSpec("url", spec.play)
    return None
