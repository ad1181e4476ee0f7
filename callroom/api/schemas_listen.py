"""Request bodies of the commands that let software listen to a call: media streams, forks, transcription,
and the stream, answering-machine detection and transcription options of dial and answer (Telnyx's names
and values)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from callroom.api.limits import MAX_URL
from callroom.api.schemas import Answer, Body, CallCommand, Dial, StoredBody, _url_allowed
from callroom.control.listening import Listening, StreamRequest, TranscriptionRequest

StreamUrl = Annotated[str, Field(min_length=1, max_length=MAX_URL, pattern=r"^wss?://"), AfterValidator(_url_allowed)]


def _fork_target_allowed(value: str, info: ValidationInfo) -> str:
    """A fork target names its address as a URL does its host: refused now when it is a refused address."""
    _url_allowed("udp://" + value.removeprefix("udp:"), info)
    return value


_FORK_TARGET = r"^udp:(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):\d{1,5}$"  # udp:host:port, udp:[v6]:port
ForkTarget = Annotated[str, Field(min_length=1, max_length=MAX_URL, pattern=_FORK_TARGET),
                       AfterValidator(_fork_target_allowed)]
Track = Literal["inbound_track", "outbound_track", "both_tracks"]
# Telnyx's codecs; those callroom cannot encode fall back to the call's own (PCMU), as Telnyx documents for a
# codec it cannot transcode to.
StreamCodec = Literal["PCMU", "PCMA", "G722", "OPUS", "AMR-WB", "L16", "default"]
BidirectionalCodec = Literal["PCMU", "PCMA", "G722", "OPUS", "AMR-WB", "L16"]
PLAYABLE_CODECS = ("PCMU", "PCMA", "L16")


class CustomParameter(Body):
    name: Annotated[str, Field(max_length=128)]
    value: Annotated[str, Field(max_length=1024)]


class _StreamOptions(Body):
    stream_url: StreamUrl | None = None
    stream_track: Track = "inbound_track"
    stream_codec: StreamCodec = "default"
    stream_bidirectional_mode: Literal["mp3", "rtp"] | None = None
    stream_bidirectional_codec: BidirectionalCodec = "PCMU"
    stream_bidirectional_sampling_rate: Literal[8000, 16000, 22050, 24000, 48000] = 8000
    stream_bidirectional_target_legs: Literal["both", "self", "opposite"] = "self"
    stream_auth_token: Annotated[str, Field(max_length=4000)] | None = None
    custom_parameters: Annotated[list[CustomParameter], Field(max_length=32)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _playable(self) -> _StreamOptions:
        if self.stream_bidirectional_mode == "rtp":
            if self.stream_bidirectional_codec not in PLAYABLE_CODECS:
                raise ValueError(f"stream_bidirectional_codec must be one of {', '.join(PLAYABLE_CODECS)} here")
            allowed = (16000, 8000) if self.stream_bidirectional_codec == "L16" else (8000,)
            if self.stream_bidirectional_sampling_rate not in allowed:
                raise ValueError(f"stream_bidirectional_sampling_rate {self.stream_bidirectional_sampling_rate} "
                                 f"is not supported for {self.stream_bidirectional_codec} here")
        return self

    def stream_request(self) -> StreamRequest | None:
        if self.stream_url is None:
            return None
        codec = self.stream_codec if self.stream_codec in PLAYABLE_CODECS else "PCMU"
        return StreamRequest(
            self.stream_url, self.stream_track, codec, self.stream_bidirectional_mode == "rtp",
            self.stream_bidirectional_codec, self.stream_bidirectional_sampling_rate,
            self.stream_bidirectional_target_legs, self.stream_auth_token,
            tuple((p.name, p.value) for p in self.custom_parameters),
        )  # fmt: skip


class StreamingStart(_StreamOptions, CallCommand):
    stream_url: StreamUrl  # required here


class StreamingStop(CallCommand):
    stream_id: Annotated[str, Field(max_length=64)] | None = None


class ForkStart(CallCommand):
    rx: ForkTarget | None = None
    tx: ForkTarget | None = None
    target: ForkTarget | None = None  # Telnyx's older name: both directions to one target
    stream_type: Literal["decrypted"] = "decrypted"

    @model_validator(mode="after")
    def _some_target(self) -> ForkStart:
        if not (self.rx or self.tx or self.target):
            raise ValueError("rx, tx or target is required")
        return self


_Millis = Annotated[int, Field(ge=0, le=600_000)]


class AmdConfig(StoredBody):
    after_greeting_silence_millis: _Millis | None = None
    between_words_silence_millis: _Millis | None = None
    greeting_duration_millis: _Millis | None = None
    greeting_silence_duration_millis: _Millis | None = None
    greeting_total_analysis_time_millis: _Millis | None = None
    initial_silence_millis: _Millis | None = None
    maximum_number_of_words: Annotated[int, Field(ge=0, le=1000)] | None = None
    maximum_word_length_millis: _Millis | None = None
    silence_threshold: Annotated[int, Field(ge=0, le=32767)] | None = None
    total_analysis_time_millis: _Millis | None = None
    beep_min_frequency_hz: Annotated[int, Field(ge=0, le=4000)] | None = None
    beep_max_frequency_hz: Annotated[int, Field(ge=0, le=4000)] | None = None
    beep_min_tone_duration_millis: _Millis | None = None

    def pairs(self) -> tuple[tuple[str, int], ...]:
        return tuple((k, v) for k, v in self.model_dump().items() if isinstance(v, int))


# Every engine Telnyx names is answered by the one local recogniser (pocketsphinx, English): the README says so.
TranscriptionEngine = Literal["Google", "Telnyx", "Deepgram", "Azure", "xAI", "AssemblyAI", "Speechmatics", "Soniox",
                              "Parakeet", "Humain", "Reson8", "Cohere", "A", "B"]


def english(language: str | None) -> str | None:
    """``language`` if the local recogniser understands it (English, in any of Telnyx's spellings)."""
    if language is None or language.lower().replace("_", "-") in ("en", "english", "auto") \
            or language.lower().replace("_", "-").startswith("en-"):
        return language
    raise ValueError(f"language {language!r} is not supported: this server transcribes English only")


class TranscriptionEngineConfig(StoredBody):
    """The engine options callroom honours (the rest of any engine's configuration is accepted, unused)."""

    language: Annotated[str, Field(max_length=32)] | None = None
    interim_results: bool | None = None
    transcription_engine: Annotated[str, Field(max_length=64)] | None = None

    _english = field_validator("language")(classmethod(lambda cls, v: english(v)))


class TranscriptionStartBody(Body):
    transcription_engine: TranscriptionEngine = "Google"
    transcription_engine_config: TranscriptionEngineConfig | None = None
    transcription_tracks: Literal["inbound", "outbound", "both"] = "inbound"
    language: Annotated[str, Field(max_length=32)] | None = None  # the older, engine-less form
    interim_results: bool = False

    _english = field_validator("language")(classmethod(lambda cls, v: english(v)))

    def transcription_request(self) -> TranscriptionRequest:
        config = self.transcription_engine_config
        interim = config.interim_results if config and config.interim_results is not None else self.interim_results
        return TranscriptionRequest(self.transcription_tracks, interim, self.transcription_engine)


class TranscriptionStart(TranscriptionStartBody, CallCommand):
    pass


class TranscriptionConfig(TranscriptionStartBody):
    """``transcription_config`` of dial and answer (its client_state and command_id are not used)."""

    client_state: Any = None
    command_id: Any = None


AmdMode = Literal["premium", "premium_ios_call_screening_detection", "detect", "detect_beep", "detect_words",
                  "greeting_end", "disabled"]


class DialListening(Dial, _StreamOptions):
    """``POST /calls`` with its stream and answering-machine detection options."""

    transcription: bool = False
    transcription_config: TranscriptionConfig | None = None
    answering_machine_detection: AmdMode = "disabled"
    answering_machine_detection_config: AmdConfig | None = None

    def listening(self) -> Listening:
        mode = None if self.answering_machine_detection == "disabled" else self.answering_machine_detection
        config = self.answering_machine_detection_config
        return Listening(self.stream_request(), mode, config.pairs() if config else (), _transcription(self))


class AnswerListening(Answer, _StreamOptions):
    """``answer`` with its stream and transcription options."""

    transcription: bool = False
    transcription_config: TranscriptionConfig | None = None

    def listening(self) -> Listening:
        return Listening(self.stream_request(), transcription=_transcription(self))


def _transcription(body: DialListening | AnswerListening) -> TranscriptionRequest | None:
    if not body.transcription:
        return None
    return (body.transcription_config or TranscriptionConfig()).transcription_request()
