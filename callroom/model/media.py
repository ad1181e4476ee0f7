"""What the control plane asks of the media plane, and what the media plane reports back.

This is the narrow interface between call control and media: the control plane never touches a socket,
a SIP dialog or an audio frame; it emits these instructions after its transaction commits, and the
media plane (virtual phones in-process today; SIP/RTP legs and the mixer next) carries them out and
reports far-end facts back through the ``Control.remote_*`` entry points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Ring:
    """Place an outgoing leg: ring ``endpoint`` (``virtual:...`` or a SIP URI)."""

    call_control_id: str
    endpoint: str
    from_: str
    to: str
    timeout_secs: int
    headers: tuple[tuple[str, str], ...] = ()  # put on a SIP INVITE (custom_headers, sip_headers)
    # (user, password) answering a SIP digest challenge to the INVITE (sip_auth_username/password)
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    display_name: str | None = None  # the SIP From's display name (from_display_name)
    anonymous: bool = False  # privacy: id: an anonymous From and Privacy: id (RFC 3323)
    speech: AudioSpec | None = None  # what a virtual phone says once answered (its say= or play=, resolved)


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer an incoming leg that is ringing (a SIP leg's 200 with ``headers``: custom_headers, sip_headers)."""

    call_control_id: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse an incoming leg with a SIP status."""

    call_control_id: str
    sip_status: int


@dataclass(frozen=True, slots=True)
class Release:
    """End a leg from our side (BYE, or CANCEL while it rings)."""

    call_control_id: str


@dataclass(frozen=True, slots=True)
class Park:
    """The leg is connected to nothing: it hears silence and is heard by no one."""

    call_control_id: str


@dataclass(frozen=True, slots=True)
class Bridge:
    """Two legs hear each other."""

    a: str
    b: str


@dataclass(frozen=True, slots=True)
class Supervise:
    """The leg supervises ``target`` and its bridge: it hears both sides; ``role`` says who hears it (barge:
    both, whisper: ``target`` only, monitor: no one)."""

    call_control_id: str
    target: str
    role: str


@dataclass(frozen=True, slots=True)
class SipRequestInDialog:
    """Send an INFO (``send_sip_info``) or a REFER (``refer``: ``headers`` has its Refer-To) on a SIP leg."""

    call_control_id: str
    method: str  # INFO | REFER
    content_type: str | None = None
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HoldInQueue:
    """The leg waits in a queue hearing hold audio."""

    call_control_id: str
    queue_id: str


@dataclass(frozen=True, slots=True)
class ConferenceMember:
    call_control_id: str
    muted: bool
    on_hold: bool
    supervisor_role: str
    whisper_to: tuple[str, ...] = ()
    hold_audio: str | None = None


@dataclass(frozen=True, slots=True)
class ConferenceMix:
    """The whole who-hears-whom of one conference, as it should be from now on. A member's ``on_hold`` is
    its hold as heard: held by the API, or waiting for the conference to start (``started`` False)."""

    conference_id: str
    members: tuple[ConferenceMember, ...]
    comfort_noise: bool = True
    beep: str | None = None  # "enter" | "exit": play a beep to the conference now
    hold_audio: str | None = None
    started: bool = True


@dataclass(frozen=True, slots=True)
class MemberFlags:
    """Some members of a conference muted or unmuted, held or taken off hold (None: that flag unchanged),
    the rest of its mix as it is: what a mute or hold changes, without the whole mix (whose other members
    the command that sends this did not lock). ``on_hold`` is the API's hold: a member of a conference that
    has not started stays held. ``hold_audio``: with ``on_hold``, their hold audio from now on (None: as
    it was)."""

    conference_id: str
    call_control_ids: tuple[str, ...]
    muted: bool | None = None
    on_hold: bool | None = None
    hold_audio: str | None = None


@dataclass(frozen=True, slots=True)
class ConferenceClosed:
    conference_id: str


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """Audio to play: a URL (WAV/MP3), an uploaded media file, or text to speak."""

    kind: str  # url | file | tts | ringback (the built-in ringback tone; value unused)
    value: str  # the URL, the file's path, or the text
    voice: str | None = None
    language: str | None = None
    payload_type: str = "text"


@dataclass(frozen=True, slots=True)
class Play:
    """Play audio to some legs, or to a whole conference (heard also by those who join meanwhile).

    Without ``overlay`` it waits its turn behind what is already playing to the same target (speak
    commands queue up, as on Telnyx); with ``overlay`` it is mixed on top at once."""

    job_id: str
    audio: AudioSpec
    call_control_ids: tuple[str, ...] = ()
    conference_id: str | None = None
    loop: int | None = 1  # None: until stopped
    overlay: bool = False
    kind: str | None = None  # what StopPlay's ``kinds`` calls it: speak or playback by its audio, unless given


@dataclass(frozen=True, slots=True)
class StopPlay:
    """Stop what plays to these legs (or the conference): ``current`` (then the next queued) or ``all``."""

    call_control_ids: tuple[str, ...] = ()
    conference_id: str | None = None
    which: str = "all"
    kinds: tuple[str, ...] = ("playback", "speak")


@dataclass(frozen=True, slots=True)
class StartRecording:
    job_id: str
    path: str  # where to write, without extension
    format: str  # wav | mp3
    channels: str  # single | dual
    call_control_id: str | None = None  # a call's recording: channel 1 = what the far end says
    conference_id: str | None = None  # a conference's: channel 1 = the creator, channel 2 = everyone else
    creator_call_control_id: str | None = None
    trim_silence: bool = False
    max_length_secs: int = 0
    # A call's recording ends after this many seconds of silence from the far end, once it has spoken (0: never)
    silence_timeout_secs: int = 0
    play_beep: bool = False
    per_participant: bool = False  # a conference recorded with one channel per participant (WAV)


@dataclass(frozen=True, slots=True)
class ControlRecording:
    job_id: str
    action: str  # pause | resume | stop


# A gather's defaults, Telnyx's for gather_using_audio / gather_using_speak: written once, here, for the
# instruction below and for the API's request bodies (``api/schemas_media.py``, and so the OpenAPI document).
GATHER_MINIMUM_DIGITS = 1
GATHER_MAXIMUM_DIGITS = 128
GATHER_TERMINATING_DIGIT = "#"
GATHER_VALID_DIGITS = "0123456789#*"
GATHER_TIMEOUT_MILLIS = 60000
GATHER_INTER_DIGIT_TIMEOUT_MILLIS = 5000
GATHER_INITIAL_TIMEOUT_MILLIS = 5000
GATHER_MAXIMUM_TRIES = 3
GATHER_STOP_PLAYBACK_ON_DTMF = True


@dataclass(frozen=True, slots=True)
class Gather:
    job_id: str
    call_control_id: str
    prompt: AudioSpec | None = None
    invalid_prompt: AudioSpec | None = None
    minimum_digits: int = GATHER_MINIMUM_DIGITS
    maximum_digits: int = GATHER_MAXIMUM_DIGITS
    terminating_digit: str = GATHER_TERMINATING_DIGIT
    valid_digits: str = GATHER_VALID_DIGITS
    # The whole gather's limit here (``media/gather.py``); the API turns Telnyx's timeout_millis, the wait
    # for a first digit, into initial_timeout_millis and sets this one itself.
    timeout_millis: int = GATHER_TIMEOUT_MILLIS
    inter_digit_timeout_millis: int = GATHER_INTER_DIGIT_TIMEOUT_MILLIS
    initial_timeout_millis: int = GATHER_INITIAL_TIMEOUT_MILLIS
    maximum_tries: int = GATHER_MAXIMUM_TRIES
    stop_playback_on_dtmf: bool = GATHER_STOP_PLAYBACK_ON_DTMF


@dataclass(frozen=True, slots=True)
class StopGather:
    call_control_id: str


@dataclass(frozen=True, slots=True)
class SendDtmf:
    call_control_ids: tuple[str, ...]
    digits: str
    duration_millis: int = 250


# -- software that listens: media streams, forks, answering-machine detection --------------------------


@dataclass(frozen=True, slots=True)
class StartStream:
    """Send a leg's audio to a WebSocket server in Telnyx's media streaming messages, from when the leg's
    audio exists (a dialled call's stream waits for the answer). ``job_id`` is the stream's id.
    ``play_to``: with bidirectional audio, the legs that hear what the server sends back."""

    job_id: str
    call_control_id: str
    url: str
    track: str = "inbound_track"  # inbound_track | outbound_track | both_tracks
    codec: str = "PCMU"  # PCMU | PCMA | L16 (16 kHz)
    bidirectional: bool = False
    bidirectional_codec: str = "PCMU"  # PCMU | PCMA | L16
    bidirectional_rate: int = 8000
    play_to: tuple[str, ...] = ()
    auth_token: str | None = None
    custom_parameters: tuple[tuple[str, str], ...] = ()
    client_state: str | None = None
    call_session_id: str = ""
    from_: str = ""
    to: str = ""


@dataclass(frozen=True, slots=True)
class StopStream:
    """Stop a leg's streams (``job_id`` None: all of them)."""

    call_control_id: str
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class StartFork:
    """Send the RTP of a leg to UDP targets (``udp:host:port``): ``rx`` what the far end says, ``tx`` what
    it hears."""

    job_id: str
    call_control_id: str
    rx: str | None = None
    tx: str | None = None


@dataclass(frozen=True, slots=True)
class StopFork:
    call_control_id: str


@dataclass(frozen=True, slots=True)
class DetectMachine:
    """Answering-machine detection on a dialled leg, from its answer (``media/amd.py``). ``mode``: detect |
    detect_words | detect_beep | greeting_end; ``config``: Telnyx's answering_machine_detection_config."""

    job_id: str
    call_control_id: str
    mode: str
    config: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class StartTranscription:
    """Transcribe a leg's speech (``media/transcribe.py``) from when its audio exists. ``tracks``: inbound
    (what the far end says) | outbound (what it hears) | both; ``interim_results``: partial hypotheses too."""

    job_id: str
    call_control_id: str
    tracks: str = "inbound"
    interim_results: bool = False


@dataclass(frozen=True, slots=True)
class StopTranscription:
    call_control_id: str


MediaOp = (
    Ring | Answer | Reject | Release | Park | Bridge | Supervise | SipRequestInDialog | HoldInQueue | ConferenceMix
    | MemberFlags | ConferenceClosed | Play | StopPlay | StartRecording | ControlRecording | Gather | StopGather
    | SendDtmf | StartStream | StopStream | StartFork | StopFork | DetectMachine | StartTranscription
    | StopTranscription
)


class MediaPlane(Protocol):
    """Whatever carries out media instructions (the in-process engine, or a remote media node)."""

    def apply(self, ops: list[MediaOp]) -> None: ...


# -- facts the media plane reports back ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    call_control_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class FloorChanged:
    conference_id: str
    call_control_id: str


@dataclass(frozen=True, slots=True)
class PlaybackStarted:
    job_id: str


@dataclass(frozen=True, slots=True)
class PlaybackEnded:
    job_id: str
    status: str  # completed | cancelled | call_hangup | failed | file_not_found
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingSaved:
    job_id: str
    path: str
    size_bytes: int
    duration_millis: int
    started_at: float
    ended_at: float
    tracks: tuple[str, ...] = ()  # per-participant recordings: the call on each channel, in order


@dataclass(frozen=True, slots=True)
class RecordingFailed:
    job_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class GatherEnded:
    job_id: str
    digits: str
    status: str  # valid | invalid | timeout | cancelled | call_hangup


@dataclass(frozen=True, slots=True)
class StreamStarted:
    job_id: str


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """A stream ended: stopped (``failure`` None) or failed (could not connect, the server went away).
    ``dropped``: 20 ms frames of audio dropped because the server took them too slowly."""

    job_id: str
    failure: str | None = None
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class MachineDetection:
    """An answering-machine detection's verdict: ``kind`` detection (result human | machine | not_sure) or
    greeting (result beep_detected | ended | not_sure)."""

    job_id: str
    kind: str
    result: str


@dataclass(frozen=True, slots=True)
class Transcribed:
    """What a transcription recognised: a final result at the end of an utterance, or an interim one."""

    job_id: str
    transcript: str
    confidence: float
    is_final: bool
    track: str  # inbound | outbound


MediaFact = (
    DtmfReceived | FloorChanged | PlaybackStarted | PlaybackEnded | RecordingSaved | RecordingFailed | GatherEnded
    | StreamStarted | StreamEnded | MachineDetection | Transcribed
)
