"""Request bodies of the media actions (play, speak, record, gather, DTMF), validated with pydantic."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from callroom.api.limits import MAX_NAME, MAX_SPEECH
from callroom.api.schemas import Body, ClientState, CommandId, Id, Ids, IdText, MediaName, Region, Url
from callroom.model import media as m

LoopValue = Annotated[int, Field(ge=1, le=100)] | Literal["infinity"]
Digits = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[0-9A-Da-d*#wW]+$")]
Language = Literal[
    "arb", "cmn-CN", "cy-GB", "da-DK", "de-DE", "en-AU", "en-GB", "en-GB-WLS", "en-IN", "en-US", "es-ES", "es-MX",
    "es-US", "fr-CA", "fr-FR", "hi-IN", "is-IS", "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-NL", "pl-PL", "pt-BR",
    "pt-PT", "ro-RO", "ru-RU", "sv-SE", "tr-TR",
]
Payload = Annotated[str, Field(min_length=1, max_length=MAX_SPEECH)]


class _OneSource(Body):
    @model_validator(mode="after")
    def _exclusive(self) -> _OneSource:
        if getattr(self, "audio_url", None) and getattr(self, "media_name", None):
            raise ValueError("audio_url and media_name cannot be used together")
        return self


class CallPlay(_OneSource):
    audio_url: Url | None = None
    media_name: MediaName | None = None
    loop: LoopValue = 1
    overlay: bool = False
    stop: Literal["current", "all"] | None = None
    target_legs: Literal["self", "opposite", "both"] | None = None
    client_state: ClientState | None = None
    command_id: CommandId | None = None

    @model_validator(mode="after")
    def _needs_source(self) -> CallPlay:
        if not (self.audio_url or self.media_name):
            raise ValueError("audio_url or media_name is required")
        return self


class CallStopPlay(Body):
    overlay: bool = False
    stop: Literal["current", "all"] = "all"
    client_state: ClientState | None = None
    command_id: CommandId | None = None


class CallSpeak(Body):
    payload: Payload
    voice: str = Field(min_length=1, max_length=MAX_NAME)
    language: Language | None = None
    payload_type: Literal["text", "ssml"] = "text"
    service_level: Literal["basic", "premium"] | None = None
    loop: LoopValue = 1
    stop: Literal["current", "all"] | None = None
    target_legs: Literal["self", "opposite", "both"] | None = None
    client_state: ClientState | None = None
    command_id: CommandId | None = None


class _DigitRules(Body):
    """What a gather collects and how long it waits (``gather``, and the gathers with a prompt below)."""

    # the defaults are the media instruction's (``model/media.py``)
    minimum_digits: int = Field(default=m.GATHER_MINIMUM_DIGITS, ge=1, le=128)
    maximum_digits: int = Field(default=m.GATHER_MAXIMUM_DIGITS, ge=1, le=128)
    terminating_digit: Annotated[str, Field(max_length=1, pattern=r"^[0-9A-D*#]?$")] = m.GATHER_TERMINATING_DIGIT
    valid_digits: Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[0-9A-D*#]+$")] = (
        m.GATHER_VALID_DIGITS)
    timeout_millis: int = Field(default=m.GATHER_TIMEOUT_MILLIS, ge=100, le=600000)
    inter_digit_timeout_millis: int = Field(default=m.GATHER_INTER_DIGIT_TIMEOUT_MILLIS, ge=100, le=120000)
    initial_timeout_millis: int = Field(default=m.GATHER_INITIAL_TIMEOUT_MILLIS, ge=100, le=120000)
    client_state: ClientState | None = None
    command_id: CommandId | None = None
    gather_id: str | None = Field(default=None, max_length=100)


class CallGather(_DigitRules):
    """``gather``: digits without a prompt. Its ``timeout_millis`` bounds the whole gather (Telnyx: "the
    number of milliseconds to wait to complete the request"); ``initial_timeout_millis``, when given, the
    wait for a first digit."""


class _Digits(_DigitRules):
    maximum_tries: int = Field(default=m.GATHER_MAXIMUM_TRIES, ge=1, le=10)


class GatherAudio(_Digits, _OneSource):
    audio_url: Url | None = None
    media_name: MediaName | None = None
    invalid_audio_url: Url | None = None
    invalid_media_name: MediaName | None = None
    stop_playback_on_dtmf: bool = m.GATHER_STOP_PLAYBACK_ON_DTMF


class ConferenceGatherAudio(GatherAudio):
    call_control_id: Id


class GatherSpeak(_Digits):
    payload: Payload
    voice: str = Field(min_length=1, max_length=MAX_NAME)
    language: Language | None = None
    payload_type: Literal["text", "ssml"] = "text"
    invalid_payload: Payload | None = None
    service_level: Literal["basic", "premium"] | None = None


class CallSendDtmf(Body):
    digits: Digits
    duration_millis: int = Field(default=250, ge=100, le=500)
    client_state: ClientState | None = None
    command_id: CommandId | None = None


class CallRecordStart(Body):
    format: Literal["wav", "mp3"]
    channels: Literal["single", "dual"]
    trim: Literal["trim-silence"] | None = None
    custom_file_name: str | None = Field(default=None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    max_length: int = Field(default=0, ge=0, le=14400)
    play_beep: bool = False
    client_state: ClientState | None = None
    command_id: CommandId | None = None


class CallRecordControl(Body):
    recording_id: IdText | None = None
    client_state: ClientState | None = None
    command_id: CommandId | None = None


class CallCommandState(Body):
    """A call command whose only options are ``client_state`` and ``command_id`` (``gather_stop``)."""

    client_state: ClientState | None = None
    command_id: CommandId | None = None


class ClientStateUpdate(Body):
    client_state: ClientState


class RecordStop(Body):
    recording_id: IdText | None = None
    client_state: ClientState | None = None
    command_id: CommandId | None = None
    region: Region | None = None


class ConferencePlay(_OneSource):
    audio_url: Url | None = None
    media_name: MediaName | None = None
    loop: LoopValue = 1
    call_control_ids: Ids | None = None
    region: Region | None = None

    @model_validator(mode="after")
    def _needs_source(self) -> ConferencePlay:
        if not (self.audio_url or self.media_name):
            raise ValueError("audio_url or media_name is required")
        return self


class ConferenceSpeak(Body):
    payload: Payload
    voice: str = Field(min_length=1, max_length=MAX_NAME)
    language: Language | None = None
    payload_type: Literal["text", "ssml"] = "text"
    call_control_ids: Ids | None = None
    command_id: CommandId | None = None
    region: Region | None = None


class ConferenceStop(Body):
    call_control_ids: Ids | None = None
    region: Region | None = None


class ConferenceSendDtmf(Body):
    digits: Digits
    call_control_ids: Ids | None = None
    duration_millis: int = Field(default=250, ge=100, le=500)
    client_state: ClientState | None = None


class ConferenceRecordStart(Body):
    format: Literal["wav", "mp3"]
    # callroom's extension: "per_participant" records one channel per participant (WAV only).
    tracks: Literal["mixed", "per_participant"] = "mixed"
    channels: Literal["single", "dual"] = "single"
    trim: Literal["trim-silence"] | None = None
    custom_file_name: str | None = Field(default=None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    play_beep: bool = False
    command_id: CommandId | None = None
    region: Region | None = None


    @model_validator(mode="after")
    def _tracks_need_wav(self) -> ConferenceRecordStart:
        if self.tracks == "per_participant" and self.format != "wav":
            raise ValueError("per-participant tracks are recorded as WAV (MP3 holds at most two channels)")
        return self


class ConferenceRecordControl(Body):
    recording_id: IdText | None = None
    command_id: CommandId | None = None
    region: Region | None = None
