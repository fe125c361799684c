"""All configuration in one place, read from the environment (``BROADCAST_...``).

Defaults make ``broadcast demo`` work on a fresh machine: no Redis URL means an embedded
Redis under ``data_dir``; no Twilio credentials means the local Twilio-compatible simulator.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.core.models import Level

TWILIO_REAL_API = "https://api.twilio.com"


class Settings(BaseSettings):
    """The service's settings; every field can be set as ``BROADCAST_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_", extra="ignore")

    # Storage and naming
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "BROADCAST_REDIS_URL"))
    mqtt_url: str | None = Field(default=None, validation_alias=AliasChoices("MQTT_URL", "BROADCAST_MQTT_URL"))
    data_dir: Path = Path("var")
    namespace: str = Field(default="bc", pattern=r"^[A-Za-z0-9_.-]{1,40}$")

    # Web
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    secret_key: SecretStr | None = None  # signs links and tokens; generated under data_dir when unset
    max_body_bytes: int = 256 * 1024  # fits a target of 5,000 areas and 5,000 exclusions
    # The zone of every time a person reads on a page or in an export (storage stays UTC).
    timezone: str = "Asia/Shanghai"

    # Providers without credentials are played by the local simulators at this address.
    simulator_url: str = "http://127.0.0.1:8081"
    # Their webhooks are accepted only while host and public_url are loopback, unless this says so.
    simulator_webhooks_public: bool = False
    # The simulated Twilio's knobs (JSON), e.g. {"capacity": 300, "error_share": 0.01, "latency": 0.05}:
    # see channels.simulators.twilio.TwilioBehaviour.KNOBS. Its counts: GET {simulator_url}/_simulator/twilio.
    simulator_twilio: dict[str, float | bool] = {}

    # Twilio (SMS and voice)
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_voice_from: str | None = None  # a voice-capable number; default: twilio_from
    twilio_api_base: str = TWILIO_REAL_API
    # Connection overrides on every webhook URL we give Twilio: retry up to 5 times on any failure
    # (their documented maximum), so that a callback we could not store comes again. Empty: none.
    twilio_webhook_overrides: str = Field(default="rc=5&rp=all", pattern=r"^[A-Za-z0-9=&,._-]{0,200}$")
    voice_ring_seconds: int = Field(default=30, ge=5, le=120)
    voice_rate_per_second: float = Field(default=0.0, ge=0)  # calls per second (Twilio CPS); 0: no limit

    # Building screens: their ack and status topics live under this prefix
    screen_topic_prefix: str = Field(default="bc/screens", pattern=r"^[A-Za-z0-9_./-]{1,100}$")

    # App push: JPush (China) or FCM HTTP v1
    push_provider: Literal["jpush", "fcm"] = "jpush"
    jpush_app_key: str | None = None
    jpush_master_secret: SecretStr | None = None
    jpush_api_base: str = "https://api.jpush.cn"
    jpush_report_base: str = "https://report.jpush.cn"
    jpush_apns_production: bool = True
    fcm_service_account_file: Path | None = None  # the Google service-account key (JSON)
    fcm_api_base: str = "https://fcm.googleapis.com"
    push_rate_per_second: float = Field(default=0.0, ge=0)  # requests per second; 0: no limit
    push_report_delay_seconds: float = Field(default=60.0, ge=0)  # when to ask JPush what arrived

    # Composition
    sms_signature: str = "【上海应急】"
    sms_signature_en: str = "[Shanghai EMA]"
    hotline: str = "12345"
    templates_dir: Path | None = None  # the catalogue and layouts; unset: the bundled templates/
    # The short address of confirmation links (…/c/<token>); unset: public_url.
    link_base: str | None = Field(default=None, pattern=r"^https?://[A-Za-z0-9.:/_-]+$")

    # Issuing
    approval_levels: list[Level] = [Level.orange, Level.red]
    # Levels whose warnings reach residents who opted out of warnings that are not life-threatening
    opt_out_override_levels: list[Level] = [Level.red]

    # Sending
    batch_size: int = Field(default=2_000, ge=1, le=10_000)
    send_concurrency: int = Field(default=200, ge=1, le=5_000)
    send_timeout_seconds: float = Field(default=10.0, gt=0)
    send_attempts: int = Field(default=3, ge=1, le=10)
    sms_rate_per_second: float = Field(default=0.0, ge=0)  # SMS parts per second per account; 0: no limit
    sms_rate_burst: float = Field(default=0.0, ge=0)  # tokens allowed at once; 0: one second's worth

    # Worker
    job_monitoring_interval: int = Field(default=5, ge=1)  # a job's heartbeat lapses after three of these
    watchdog_seconds: float = Field(default=2.0, gt=0, le=60)  # how often abandoned and due jobs are looked for
    maintenance_interval: int = Field(default=15, ge=1)

    # Console sign-in
    session_hours: float = Field(default=12.0, gt=0, le=24 * 7)  # a session ends after this long unused
    login_attempts: int = Field(default=5, ge=1, le=100)  # failed sign-ins per account (and 4× per address) …
    login_window_minutes: int = Field(default=15, ge=1, le=24 * 60)  # … within this window lock it for the window
    login_concurrency: int = Field(default=4, ge=1, le=64)  # password checks (argon2) one web process runs at once

    # Inbound SMS replies
    confirm_keywords: list[str] = ["1", "收到", "好", "好的", "ok", "y", "yes", "确认"]
    help_keywords: list[str] = ["2", "9", "求助", "救命", "help", "sos"]
    # A text that begins with one of these is a field report: "报告 积水 地下车库"
    report_keywords: list[str] = ["报告", "上报", "report"]

    # Field reports' photos: stored outside Redis (broadcast.core.storage), under files_dir
    files_dir: Path | None = None  # unset: data_dir / "files"
    photo_max_bytes: int = Field(default=12 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)  # as uploaded
    photo_max_side: int = Field(default=1600, ge=320, le=4096)  # pixels of the longer side, as stored

    # The after-action report: what sending cost, and the font its PDF is set in
    sms_part_price: float = Field(default=0.05, ge=0)  # per SMS part
    voice_minute_price: float = Field(default=0.15, ge=0)  # per call minute
    voice_minutes_per_call: float = Field(default=1.0, ge=0)  # minutes billed for one warning call
    cost_currency: str = Field(default="元", max_length=8)
    report_font: Path | None = None  # a .ttf/.ttc/.otf with Chinese; unset: found among the system's fonts

    @field_validator(
        "public_url", "twilio_api_base", "simulator_url", "jpush_api_base", "jpush_report_base", "fcm_api_base"
    )
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai") from exc
        return value

    @field_validator("link_base")
    @classmethod
    def _link_base_without_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None

    @model_validator(mode="after")
    def _public_url_follows_port(self) -> Settings:
        # Providers call back to public_url; unless it was set, it is where this server listens.
        if "public_url" not in self.model_fields_set:
            self.public_url = f"http://{self.host}:{self.port}"
        return self

    @property
    def files_root(self) -> Path:
        """Where files kept outside Redis live (photos of field reports)."""
        return self.files_dir or self.data_dir / "files"

    @property
    def zone(self) -> ZoneInfo:
        """The time zone people read times in (``timezone``)."""
        return ZoneInfo(self.timezone)

    @property
    def twilio_configured(self) -> bool:
        """True when real Twilio credentials are present."""
        return bool(self.twilio_account_sid and self.twilio_auth_token)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
