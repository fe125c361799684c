"""How pages say things to people: times in the local zone, areas by name, and events, levels,
groups, channels and states in Chinese with English beside.

Storage speaks codes and UTC; a duty officer at 3 a.m., a volunteer on a staircase and a resident
read names and Shanghai time. One ``Display`` is handed to every page so all of them say it alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from broadcast.core.models import Alert, AlertDraft, AlertStatus, EventType, Language, Level, MessageType
from broadcast.core.settings import Settings

LEVELS = {
    "blue": ("蓝色", "blue"),
    "yellow": ("黄色", "yellow"),
    "orange": ("橙色", "orange"),
    "red": ("红色", "red"),
}
GROUPS = {
    "vulnerable": ("重点关怀人群", "vulnerable"),
    "elderly": ("60岁以上老人", "aged 60 or over"),
    "elderly_alone": ("独居老人", "elderly living alone"),
    "disability": ("残障人士", "with a disability"),
    "hearing": ("听障", "hearing impaired"),
    "sight": ("视障", "sight impaired"),
    "mobility": ("行动不便", "mobility impaired"),
    "no_smartphone": ("无智能手机", "no smartphone"),
    "english": ("英语使用者", "English speakers"),
    "key_units": ("重点单位联系人", "key unit contacts"),
    "volunteers": ("网格员和志愿者", "grid workers and volunteers"),
}
CHANNELS = {
    "sms": ("短信", "SMS"),
    "push": ("应用推送", "app push"),
    "voice": ("语音电话", "voice call"),
    "screen": ("楼宇屏", "building screens"),
}
METHODS = {
    "reply": ("短信回复", "SMS reply"),
    "link": ("点击链接", "link"),
    "keypress": ("电话按键", "key press"),
    "app": ("应用内确认", "in the app"),
    "screen": ("屏幕确认", "screen"),
    "volunteer": ("志愿者上门", "volunteer in person"),
}
OUTCOMES = {
    "reached_safe": ("已见到，安全", "seen, safe"),
    "needs_help": ("需要帮助", "needs help"),
    "not_home": ("不在家", "not home"),
    "moved_away": ("已搬走", "moved away"),
}
AUDIT_ACTIONS = {
    "compose": ("拟稿", "composed"),
    "approve": ("审批", "approved"),
    "issue": ("签发", "issued"),
    "cancel": ("解除", "cancelled"),
    "help_case": ("求助处理", "help request handled"),
    "field_report": ("现场报告处理", "field report triaged"),
    "sign_in": ("登录", "signed in"),
    "sign_in_failed": ("登录失败", "sign-in failed"),
    "user_add": ("添加用户", "user added"),
    "user_disable": ("停用用户", "user disabled"),
    "user_enable": ("启用用户", "user enabled"),
    "user_password": ("修改密码", "password changed"),
    "token_create": ("创建令牌", "API token created"),
    "token_revoke": ("吊销令牌", "API token revoked"),
}
# A finished warning is grey everywhere: it no longer asks anything of anyone.
FINISHED = {
    AlertStatus.cancelled: ("已解除", "lifted"),
    AlertStatus.superseded: ("已更新", "superseded"),
    AlertStatus.expired: ("已过期", "expired"),
}


def both(pair: tuple[str, str]) -> str:
    return f"{pair[0]} {pair[1]}"


@lru_cache(maxsize=8)
def event_names(templates: Path) -> dict[str, tuple[str, str]]:
    """Each event's name in Chinese and English, from the catalogue."""
    from broadcast.composing.catalogue import load_catalogue

    names: dict[str, tuple[str, str]] = {}
    for event, entry in load_catalogue(templates).events.items():
        zh, en = entry.wording(Language.zh), entry.wording(Language.en)
        names[event.value] = (zh.name if zh else event.value, en.name if en else event.value)
    return names


def display(settings: Settings, names: Mapping[str, str] | None = None) -> Display:
    """The display for this deployment's zone and catalogue, naming the areas in ``names``."""
    from broadcast.composing.compose import templates_dir

    return Display(settings.zone, event_names(templates_dir(settings)), names or {})


@dataclass
class Phase:
    """Where an alert stands as a person should read it."""

    key: str  # pending, live, sent, cancelling, finished
    label: str
    finished: bool


@dataclass
class Display:
    """The words and local times every page uses."""

    zone: ZoneInfo
    events: Mapping[str, tuple[str, str]]
    names: Mapping[str, str] = field(default_factory=dict)

    def time(self, value: datetime | str | None, fmt: str = "%m-%d %H:%M") -> str:
        """A stored time (UTC, or an ISO string) as the local clock reads it; "" for none."""
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return value
        else:
            moment = value
        return moment.astimezone(self.zone).strftime(fmt)

    def epoch(self, seconds: float) -> datetime:
        """A time stored as epoch seconds."""
        return datetime.fromtimestamp(seconds, self.zone)

    def stamp(self, value: datetime | str | None) -> str:
        """A full date and time with the zone's abbreviation, for records and exports."""
        shown = self.time(value, "%Y-%m-%d %H:%M:%S")
        return f"{shown} {self.zone_label()}" if shown else ""

    def zone_label(self) -> str:
        """The zone as people call it: 北京时间 for China, else the zone's own name."""
        return "北京时间" if self.zone.key in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else self.zone.key

    def event(self, event: EventType | str) -> str:
        value = event.value if isinstance(event, EventType) else event
        return both(self.events.get(value, (value, value)))

    def event_zh(self, event: EventType | str) -> str:
        value = event.value if isinstance(event, EventType) else event
        return self.events.get(value, (value, value))[0]

    def level(self, level: Level | str) -> str:
        value = level.value if isinstance(level, Level) else level
        return both(LEVELS.get(value, (value, value)))

    def warning(self, alert: AlertDraft) -> str:
        """ "台风红色预警 Typhoon red warning", or its cancellation or update."""
        zh_event, en_event = self.events.get(alert.event.value, (alert.event.value, alert.event.value))
        zh_level, en_level = LEVELS[alert.level.value]
        if alert.msg_type is MessageType.cancel:
            return f"解除{zh_event}{zh_level}预警 Lifting the {en_event.lower()} {en_level} warning"
        words = f"{zh_event}{zh_level}预警 {en_event} {en_level} warning"
        return f"更新 {words} update" if alert.msg_type is MessageType.update else words

    def group(self, name: str, titles: Mapping[str, str] | None = None) -> str:
        if name in GROUPS:
            return both(GROUPS[name])
        return (titles or {}).get(name, name)

    def channel(self, name: str) -> str:
        return both(CHANNELS.get(name, (name, name)))

    def method(self, name: str | None) -> str:
        return both(METHODS.get(name, (name, name))) if name else ""

    def outcome(self, name: str | None) -> str:
        return both(OUTCOMES.get(name, (name, name))) if name else ""

    def action(self, name: str) -> str:
        return both(AUDIT_ACTIONS.get(name, (name, name)))

    def area(self, code: str) -> str:
        return self.names.get(code, code)

    def phase(self, alert: Alert, now: datetime, all_sent: bool = False) -> Phase:
        """Pending, live, all sent, or finished (lifted, superseded, expired); a cancellation message
        is never a live warning of its own."""
        if alert.status in FINISHED:
            return Phase("finished", both(FINISHED[alert.status]), True)
        if alert.status is AlertStatus.pending_approval:
            return Phase("pending", "待审批 waiting for approval", False)
        if now >= alert.expires_at:
            return Phase("finished", both(FINISHED[AlertStatus.expired]), True)
        if alert.msg_type is MessageType.cancel:
            return Phase(
                "cancelling",
                "解除通知已发完 cancellation sent" if all_sent else "解除通知发送中 sending the cancellation",
                True,
            )
        if all_sent:
            return Phase("sent", "已全部发出 all sent · 生效中 in force", False)
        return Phase("live", "发送中 sending", False)

    def since_issue(self, issued: datetime | str, at: datetime | str) -> str:
        """ "+12:05" (minutes and seconds after issue), "+1:02:05" past an hour."""
        first = datetime.fromisoformat(issued) if isinstance(issued, str) else issued
        then = datetime.fromisoformat(at) if isinstance(at, str) else at
        seconds = int((then - first).total_seconds())
        sign, seconds = ("-", -seconds) if seconds < 0 else ("+", seconds)
        hours, rest = divmod(seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{sign}{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{sign}{minutes}:{seconds:02d}"

    def since(self, start: datetime | None, now: datetime) -> str:
        """ "1 小时 5 分钟 1 h 5 min" since ``start``."""
        if start is None:
            return ""
        minutes = max(0, int((now - start) / timedelta(minutes=1)))
        hours, minutes = divmod(minutes, 60)
        if hours:
            return f"{hours} 小时 {minutes} 分钟 · {hours} h {minutes} min"
        return f"{minutes} 分钟 · {minutes} min"
