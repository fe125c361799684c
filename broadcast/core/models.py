"""Domain models: alerts, targets, and the delivery and acknowledgement events. No I/O here."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator


class Level(str, Enum):
    """Warning colour levels, least to most severe (GB/T 27962 colours)."""

    blue = "blue"
    yellow = "yellow"
    orange = "orange"
    red = "red"

    @property
    def rank(self) -> int:
        """0 for blue … 3 for red."""
        return _LEVEL_ORDER.index(self)

    @property
    def cap_severity(self) -> str:
        """The CAP 1.2 severity this colour maps to."""
        return {"blue": "Minor", "yellow": "Moderate", "orange": "Severe", "red": "Extreme"}[self.value]

    @property
    def zh(self) -> str:
        """The colour's Chinese name as used in signal names (红色预警)."""
        return {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}[self.value]


_LEVEL_ORDER = [Level.blue, Level.yellow, Level.orange, Level.red]


class EventType(str, Enum):
    """What the warning is about: meteorological signals and the emergency bureau's own events."""

    typhoon = "typhoon"
    rainstorm = "rainstorm"
    snowstorm = "snowstorm"
    cold_wave = "cold_wave"
    gale = "gale"
    fog = "fog"
    lightning = "lightning"
    hail = "hail"
    heat = "heat"
    haze = "haze"
    road_icing = "road_icing"
    drought = "drought"
    frost = "frost"
    flood = "flood"
    storm_tide = "storm_tide"
    geological = "geological"
    general = "general"


class ChannelKind(str, Enum):
    """How a message reaches a person or a place."""

    sms = "sms"
    voice = "voice"
    push = "push"
    screen = "screen"


class Language(str, Enum):
    zh = "zh"
    en = "en"


class MessageType(str, Enum):
    """CAP msgType: a new alert, an update of one, or its cancellation."""

    alert = "alert"
    update = "update"
    cancel = "cancel"


class AlertStatus(str, Enum):
    """Where an alert is in its life."""

    pending_approval = "pending_approval"  # composed; waits for a second officer
    issued = "issued"  # approved and accepted; the roster is being frozen
    sending = "sending"  # roster frozen, batches queued
    cancelled = "cancelled"
    superseded = "superseded"  # an update replaced it
    expired = "expired"


AreaCode = Annotated[str, StringConstraints(pattern=r"^\d{12}(\d{2}(\d{3})?)?$")]
ParamName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
_OFFICER = r"^[^\s].{0,63}$"
MAX_AREAS = 5_000  # areas (or exclusions) one target may list
UNIQUE: dict[str, Any] = {"uniqueItems": True}  # said in the schema; enforced by a validator


def _whole(value: Any) -> Any:
    """JSON's 200.0 is the integer 200 (as JSON Schema says); 200.5 and "200" stay wrong."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


class Target(BaseModel):
    """Who a warning is for: areas at any level, optional groups, and areas left out."""

    model_config = ConfigDict(extra="forbid")

    # A list this long fits any request body the service takes (``max_body_bytes``), so a longer
    # one is refused naming the field, not as a body too large.
    areas: list[AreaCode] = Field(min_length=1, max_length=MAX_AREAS)
    groups: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_:-]{0,63}$")]] = Field(
        default=[], max_length=100
    )
    exclude: list[AreaCode] = Field(default=[], max_length=MAX_AREAS)


# The reference rule of AlertDraft, said in its JSON schema as well, so clients can know it.
_REFERENCE_RULE: dict[str, Any] = {
    "allOf": [
        {
            "if": {"properties": {"msg_type": {"const": "alert"}}},
            "then": {"properties": {"references": {"type": "null"}}},
        },
        {
            "if": {"required": ["msg_type"], "properties": {"msg_type": {"enum": ["update", "cancel"]}}},
            "then": {"required": ["references"], "properties": {"references": {"type": "string"}}},
        },
    ]
}


class AlertDraft(BaseModel):
    """What an officer submits to compose an alert; validated before anything is stored."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_REFERENCE_RULE)

    event: EventType
    level: Level
    target: Target
    channels: list[ChannelKind] = Field(default=[ChannelKind.sms], min_length=1, json_schema_extra=UNIQUE)
    languages: list[Language] = Field(default=[Language.zh, Language.en], min_length=1, json_schema_extra=UNIQUE)
    params: dict[ParamName, Annotated[str, StringConstraints(max_length=200)]] = Field(
        default={}, json_schema_extra={"additionalProperties": False}
    )
    exercise: bool = False
    valid_minutes: WholeNumber = Field(default=12 * 60, ge=5, le=7 * 24 * 60)
    composed_by: str = Field(pattern=_OFFICER)
    request_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{8,80}$")
    msg_type: MessageType = MessageType.alert
    references: str | None = Field(default=None, pattern=r"^\d{1,12}$")
    door_to_door: bool = False  # yellow and blue: add the volunteers' door-to-door step

    @field_validator("channels", "languages")
    @classmethod
    def _unique(cls, value: list[Enum]) -> list[Enum]:
        if len(set(value)) != len(value):
            raise ValueError("each entry may appear only once")
        return value

    @model_validator(mode="after")
    def _reference_rule(self) -> AlertDraft:
        if self.msg_type is MessageType.alert and self.references:
            raise ValueError("a new alert references nothing; use msg_type 'update' or 'cancel'")
        if self.msg_type is not MessageType.alert and not self.references:
            raise ValueError(f"a {self.msg_type.value} must reference the alert it changes")
        return self


class Alert(AlertDraft):
    """An alert as stored: the draft plus identity, status and the officers who acted on it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: AlertStatus
    created_at: datetime
    approved_by: str | None = None
    issued_at: datetime | None = None
    cancelled_at: datetime | None = None
    roster_size: int | None = None

    @property
    def expires_at(self) -> datetime:
        """When the warning stops being valid."""
        return (self.issued_at or self.created_at) + timedelta(minutes=self.valid_minutes)

    def is_active(self, now: datetime) -> bool:
        """True while residents' replies and taps should still count for this alert."""
        return self.status in (AlertStatus.issued, AlertStatus.sending) and now < self.expires_at


class EventKind(str, Enum):
    """What happened to one recipient of one alert."""

    sent = "sent"  # accepted by the provider
    delivered = "delivered"  # the provider or device says it arrived
    failed = "failed"  # this channel will not reach them
    acknowledged = "acknowledged"  # the resident confirmed receipt
    needs_help = "needs_help"  # the resident asked for help
    closed = "closed"  # a volunteer settled it in person (reached and safe, or moved away)


class AckMethod(str, Enum):
    """How a confirmation came in."""

    sms_reply = "sms_reply"
    link = "link"
    app = "app"
    voice_key = "voice_key"
    volunteer = "volunteer"


class RecipientEvent(BaseModel):
    """One event about one recipient (alert, ordinal), as the store records it."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    ordinal: int = Field(ge=0)
    kind: EventKind
    channel: ChannelKind
    method: AckMethod | None = None
    error_code: int | None = None
    provider_ref: str | None = None
    round: int = Field(default=0, ge=0, le=9)  # 0: the alert; 1, 2 …: an escalation round on this channel


class ReplyEvent(BaseModel):
    """An inbound text from a phone number; who sent it is found by the store."""

    model_config = ConfigDict(frozen=True)

    channel: ChannelKind
    from_address: str
    body: str
    provider_ref: str | None = None


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


_WS = re.compile(r"\s+")


def normalise_reply(body: str) -> str:
    """Lower-case, trimmed, inner whitespace and trailing punctuation removed: '  OK！' → 'ok'."""
    text = _WS.sub("", body).lower()
    return text.strip("。.!！,，~～")
