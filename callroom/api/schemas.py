"""Request bodies, validated with pydantic; every invalid field becomes a 422 with its JSON pointer.

Models accept (and ignore) fields callroom does not implement, as Telnyx does for fields that do not
apply; every field callroom acts on is typed and range-checked here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from callroom.api.limits import (
    MAX_ADDRESS,
    MAX_CLIENT_STATE,
    MAX_COMMAND_ID,
    MAX_ID,
    MAX_IDS,
    MAX_NAME,
    MAX_TAGS,
    MAX_URL,
)
from callroom.errors import NUL_TEXT
from callroom.outbound import AddressPolicy


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("client_state must be a Base64-encoded string") from exc
    return value


def _url_allowed(value: str, info: ValidationInfo) -> str:
    """A URL whose host is an address the node refuses (written as such: no lookup here) is refused now, with
    the field pointed at; a name is checked when it is connected to (outbound.py)."""
    policy: AddressPolicy | None = (info.context or {}).get("url_policy")
    why = policy.refusal_for_url(value) if policy is not None else None
    if why is not None:
        raise PydanticCustomError("url_refused", why)
    return value


# Every text a client sends that the node keeps or sends on has a length bound (api/limits.py).
ClientState = Annotated[str, Field(max_length=MAX_CLIENT_STATE), AfterValidator(_base64)]
Region = Literal["Australia", "Europe", "Middle East", "US"]
Beep = Literal["always", "never", "on_enter", "on_exit"]
Role = Literal["barge", "monitor", "none", "whisper"]
CommandId = Annotated[str, Field(min_length=1, max_length=MAX_COMMAND_ID)]
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL, pattern=r"^https?://"), AfterValidator(_url_allowed)]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]  # an id the client names
IdText = Annotated[str, Field(max_length=MAX_ID)]  # the same where an empty string was always accepted
Ids = Annotated[list[Id], Field(max_length=MAX_IDS)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Address = Annotated[str, Field(min_length=1, max_length=MAX_ADDRESS)]

_MEDIA_NAME = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_NAME}}}")
MEDIA_NAME_RULE = (f"a media name is a plain file name: 1 to {MAX_NAME} letters, digits, '.', '_' or '-', "
                   "not '.' or '..'")


def media_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an uploaded media file (it is the file's name in the account's media folder:
    nothing that could lead out of it, or be the folder itself), or None."""
    if not _MEDIA_NAME.fullmatch(name) or name in (".", ".."):
        return MEDIA_NAME_RULE
    return None


def _media_name(value: str) -> str:
    if media_name_problem(value) is not None:
        raise PydanticCustomError("media_name", MEDIA_NAME_RULE)
    return value


MediaName = Annotated[str, AfterValidator(_media_name)]


def _nul_at(value: Any, path: str = "") -> str | None:
    """The JSON pointer of the first string (or key) holding a NUL character, if any."""
    if not path and isinstance(value, dict):
        try:  # the usual case, none at all, told in C: orjson writes U+0000 as an escape
            if b"\\u0000" not in orjson.dumps(value):
                return None
        except TypeError:  # not plain JSON (a number beyond 64 bits): look the slow way
            pass
    if isinstance(value, str):
        return (path or "/") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return path or "/"
            found = _nul_at(item, f"{path}/{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_at(item, f"{path}/{i}")
            if found:
                return found
    return None


class Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # No text the node keeps may hold U+0000: PostgreSQL's text cannot, and a value accepted now could
        # only fail later (a participant's label, when the dialled leg answers). The same on SQLite.
        where = _nul_at(data)
        if where is not None:
            # The API's error names ``where`` as the pointer (api/errors.py).
            raise PydanticCustomError("string_nul", "{where}: " + NUL_TEXT, {"where": where})
        return data


class StoredBody(Body):
    """A nested object kept as it was given (a JSON column): fields this node does not know are dropped,
    not stored (Telnyx ignores them too; stored, any JSON could come back in every read of its row)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _HoldAudio(Body):
    @model_validator(mode="after")
    def _one_hold_source(self) -> _HoldAudio:
        if getattr(self, "hold_audio_url", None) and getattr(self, "hold_media_name", None):
            raise ValueError("hold_audio_url and hold_media_name cannot be used together")
        return self


# -- conferences ---------------------------------------------------------------------------------------


class ConferenceCreate(_HoldAudio):
    call_control_id: Id
    name: Name
    beep_enabled: Beep = "never"
    client_state: ClientState | None = None
    comfort_noise: bool = True
    command_id: CommandId | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=240)
    hold_audio_url: Url | None = None
    hold_media_name: MediaName | None = None
    max_participants: int = Field(default=250, ge=2, le=800)
    region: Region = "US"
    start_conference_on_create: bool = True


class Join(_HoldAudio):
    call_control_id: Id
    beep_enabled: Beep | None = None
    client_state: ClientState | None = None
    command_id: CommandId | None = None
    end_conference_on_exit: bool = False
    soft_end_conference_on_exit: bool = False
    hold: bool = False
    hold_audio_url: Url | None = None
    hold_media_name: MediaName | None = None
    mute: bool = False
    region: Region | None = None
    start_conference_on_enter: bool = False
    supervisor_role: Role = "none"
    whisper_call_control_ids: Ids = Field(default_factory=list)
    label: Name | None = None


class Leave(Body):
    call_control_id: Id
    beep_enabled: Beep | None = None
    command_id: CommandId | None = None
    region: Region | None = None


class Participants(Body):
    """mute / unmute / stop: an omitted or empty list means everyone."""

    call_control_ids: Ids | None = None
    region: Region | None = None


class Hold(Participants):
    audio_url: Url | None = None
    media_name: MediaName | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Hold:
        if self.audio_url and self.media_name:
            raise ValueError("audio_url and media_name cannot be used together")
        return self


class Unhold(Body):
    call_control_ids: Ids = Field(min_length=1)
    region: Region | None = None


class Update(Body):
    call_control_id: Id
    supervisor_role: Role
    command_id: CommandId | None = None
    region: Region | None = None
    whisper_call_control_ids: Ids | None = None


class End(Body):
    command_id: CommandId | None = None


class ParticipantPatch(Body):
    beep_enabled: Beep | None = None
    end_conference_on_exit: bool | None = None
    soft_end_conference_on_exit: bool | None = None


# -- queues --------------------------------------------------------------------------------------------

QueueName = Name
QueueSize = Annotated[int, Field(ge=1, le=5000)]


class QueueCreate(Body):
    queue_name: QueueName
    max_size: QueueSize | None = None


class QueueUpdate(Body):
    max_size: QueueSize


class QueueCallPatch(Body):
    keep_after_hangup: bool | None = None


# -- calls ---------------------------------------------------------------------------------------------


class ConferenceConfig(StoredBody):
    id: IdText | None = None
    conference_name: Name | None = None
    beep_enabled: Beep | None = None
    early_media: bool = True
    end_conference_on_exit: bool = False
    soft_end_conference_on_exit: bool = False
    hold: bool = False
    hold_audio_url: Url | None = None
    hold_media_name: MediaName | None = None
    mute: bool = False
    start_conference_on_create: bool = True
    start_conference_on_enter: bool = False
    supervisor_role: Role | None = None
    whisper_call_control_ids: Ids = Field(default_factory=list)
    # As on the join action: the participant's client_state and label when the dialled leg joins.
    client_state: ClientState | None = None
    label: Name | None = None


# Headers an application may put on an INVITE: not one the node writes itself or one that steers SIP.
RESERVED_HEADERS = frozenset({
    "via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "allow", "user-agent", "content-type",
    "content-length", "content-encoding", "route", "record-route", "authorization", "proxy-authorization",
    "expires", "require", "proxy-require", "supported", "unsupported", "accept", "www-authenticate",
    "proxy-authenticate", "refer-to", "replaces", "session-expires", "min-se", "event", "subscription-state",
})  # fmt: skip


def _header_name(value: str) -> str:
    if value.lower() in RESERVED_HEADERS:
        raise PydanticCustomError("header_reserved", "{name} is a header the node writes itself or one that "
                                  "steers SIP; it cannot be set", {"name": value})
    return value


class CustomHeader(StoredBody):
    name: Annotated[str, Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9!%'*+._`~-]+$"),
                    AfterValidator(_header_name)]
    value: Annotated[str, Field(max_length=1024, pattern=r"^[^\r\n]*$")]


class SipHeader(StoredBody):
    name: Literal["User-to-User"]
    value: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\r\n]*$")]


class SipHeaders(Body):
    """``custom_headers`` and ``sip_headers`` (Telnyx: only User-to-User), put on the INVITE in that order."""

    custom_headers: Annotated[list[CustomHeader], Field(max_length=20)] | None = None
    sip_headers: Annotated[list[SipHeader], Field(max_length=1)] | None = None

    sip_auth_username: Annotated[str, Field(min_length=1, max_length=128, pattern=r'^[^"\\\r\n]+$')] | None = None
    sip_auth_password: Annotated[str, Field(min_length=1, max_length=128, pattern=r'^[^"\\\r\n]+$')] | None = None

    @model_validator(mode="after")
    def _credentials_in_pairs(self) -> SipHeaders:
        if (self.sip_auth_username is None) != (self.sip_auth_password is None):
            raise ValueError("sip_auth_username and sip_auth_password go together")
        return self

    def credentials(self) -> tuple[str, str] | None:
        if self.sip_auth_username is None or self.sip_auth_password is None:
            return None
        return self.sip_auth_username, self.sip_auth_password

    def invite_headers(self) -> tuple[tuple[str, str], ...]:
        return tuple((h.name, h.value) for h in (*(self.custom_headers or ()), *(self.sip_headers or ())))


DtmfDigits = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Da-d*#wW]+$")]


class OnAnswer(SipHeaders):
    """What a leg gets once it answers (dial, transfer; ``record`` on answer too): a recording from then on,
    audio played to it, DTMF digits sent to it."""

    record: Literal["record-from-answer"] | None = None
    record_format: Literal["wav", "mp3"] = "mp3"
    record_channels: Literal["single", "dual"] = "dual"
    record_trim: Literal["trim-silence"] | None = None
    record_max_length: int = Field(default=0, ge=0, le=43200)
    record_timeout_secs: int = Field(default=0, ge=0, le=43200)
    record_custom_file_name: str | None = Field(default=None, min_length=1, max_length=40,
                                                pattern=r"^[A-Za-z0-9_.-]+$")
    record_track: Literal["both"] = "both"
    audio_url: Url | None = None
    media_name: MediaName | None = None
    send_digits_on_answer: DtmfDigits | None = None
    privacy: Literal["id", "none"] = "none"
    from_display_name: Annotated[str, Field(min_length=1, max_length=128, pattern=r'^[^"\\\r\n]+$')] | None = None

    @model_validator(mode="after")
    def _one_audio(self) -> OnAnswer:
        if self.audio_url and self.media_name:
            raise ValueError("audio_url and media_name cannot be used together")
        return self


class Dial(OnAnswer):
    connection_id: Id
    from_: Address = Field(alias="from")
    to: Annotated[str, Field(max_length=MAX_ADDRESS)] | Annotated[
        list[Annotated[str, Field(max_length=MAX_ADDRESS)]], Field(max_length=MAX_IDS)]
    client_state: ClientState | None = None
    command_id: CommandId | None = None
    timeout_secs: int = Field(default=30, ge=5, le=600)
    time_limit_secs: int = Field(default=14400, ge=30, le=14400)
    webhook_url: Url | None = None
    webhook_url_method: Literal["POST", "GET"] = "POST"
    conference_config: ConferenceConfig | None = None
    link_to: IdText | None = None
    bridge_on_answer: bool = False
    park_after_unbridge: Literal["self"] | None = None
    supervise_call_control_id: IdText | None = None
    supervisor_role: Literal["barge", "whisper", "monitor"] = "barge"
    prevent_double_bridge: bool = False

    @model_validator(mode="after")
    def _to_present(self) -> Dial:
        targets = [self.to] if isinstance(self.to, str) else self.to
        if not targets or any(not t for t in targets):
            raise ValueError("to must be a non-empty string or list of strings")
        if self.bridge_on_answer and not self.link_to:
            raise ValueError("bridge_on_answer requires link_to")
        return self


class CallCommand(Body):
    client_state: ClientState | None = None
    command_id: CommandId | None = None


class Answer(CallCommand, SipHeaders):
    webhook_url: Url | None = None
    webhook_url_method: Literal["POST", "GET"] | None = None
    record: Literal["record-from-answer"] | None = None
    record_format: Literal["wav", "mp3"] = "mp3"
    record_channels: Literal["single", "dual"] = "dual"
    record_trim: Literal["trim-silence"] | None = None
    record_max_length: int = Field(default=0, ge=0, le=43200)
    record_timeout_secs: int = Field(default=0, ge=0, le=43200)
    record_custom_file_name: str | None = Field(default=None, min_length=1, max_length=40,
                                                pattern=r"^[A-Za-z0-9_.-]+$")
    record_track: Literal["both"] = "both"


class Transfer(OnAnswer):
    to: Address
    from_: Address | None = Field(default=None, alias="from")
    client_state: ClientState | None = None
    command_id: CommandId | None = None
    target_leg_client_state: ClientState | None = None
    timeout_secs: int = Field(default=30, ge=5, le=600)
    time_limit_secs: int = Field(default=14400, ge=30, le=14400)
    early_media: bool = True
    webhook_url: Url | None = None
    webhook_url_method: Literal["POST", "GET"] = "POST"
    park_after_unbridge: Literal["self"] | None = None


class SwitchSupervisorRole(Body):
    role: Literal["barge", "whisper", "monitor"]


_MIME = r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+( *;[^\r\n]*)?$"  # type/subtype, then parameters


class SendSipInfo(CallCommand):
    content_type: Annotated[str, Field(min_length=3, max_length=255, pattern=_MIME)]
    body: Annotated[str, Field(max_length=1400)]


class Refer(CallCommand, SipHeaders):
    sip_address: Annotated[str, Field(min_length=5, max_length=MAX_ADDRESS, pattern=r"^sips?:[^\s<>\"?]+$")]


class Reject(CallCommand):
    cause: Literal["CALL_REJECTED", "NOT_FOUND", "TEMPORARILY_UNAVAILABLE", "USER_BUSY"]


class Bridge(CallCommand):
    call_control_id: Id | None = None
    queue: QueueName | None = None
    video_room_id: IdText | None = None
    park_after_unbridge: Literal["self"] | None = None
    hold_after_unbridge: bool | None = None
    prevent_double_bridge: bool = False

    @model_validator(mode="after")
    def _exactly_one_target(self) -> Bridge:
        given = [n for n in ("call_control_id", "queue", "video_room_id") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("exactly one of call_control_id, queue or video_room_id is required")
        if self.video_room_id:
            raise ValueError("video rooms are not supported by callroom")
        return self


class Enqueue(CallCommand):
    queue_name: QueueName
    keep_after_hangup: bool = False
    max_size: QueueSize | None = None
    max_wait_time_secs: int | None = Field(default=None, ge=1, le=86400)


# -- call control applications -------------------------------------------------------------------------


class Inbound(StoredBody):
    channel_limit: int | None = Field(default=None, ge=1)
    shaken_stir_enabled: bool | None = None
    sip_subdomain: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    sip_subdomain_receive_settings: Literal["only_my_connections", "from_anyone"] | None = None


class Outbound(StoredBody):
    channel_limit: int | None = Field(default=None, ge=1)
    outbound_voice_profile_id: IdText | None = None


class Application(Body):
    application_name: Name
    webhook_event_url: Url
    webhook_event_failover_url: Url | None = None
    webhook_timeout_secs: int | None = Field(default=None, ge=1, le=30)
    webhook_api_version: Literal["1", "2"] = "2"
    active: bool = True
    anchorsite_override: str = Field(default="Latency", max_length=MAX_NAME)
    dtmf_type: Literal["RFC 2833", "Inband", "SIP INFO"] = "RFC 2833"
    first_command_timeout: bool = False
    first_command_timeout_secs: int = Field(default=30, ge=1, le=3600)
    inbound: Inbound | None = None
    outbound: Outbound | None = None
    tags: list[Annotated[str, Field(max_length=MAX_NAME)]] = Field(default_factory=list, max_length=MAX_TAGS)
    call_cost_in_webhooks: bool = False
    redact_dtmf_debug_logging: bool = False
