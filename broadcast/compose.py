"""Rendering: (alert, language, channel, area facts) → text. Pure; the templates live in ``templates/``.

Templates are Jinja2 with StrictUndefined: a parameter the template needs but the alert lacks is
an error at preview and issue time, never a blank in a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, UndefinedError

from broadcast.models import AlertDraft, ChannelKind, EventType, Language, Level
from broadcast.segments import sms_cost
from broadcast.settings import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
_SPACES = re.compile(r"[ \t]*\n[ \t]*")


@dataclass(frozen=True)
class AreaFacts:
    """What a message may say about where the recipient lives."""

    community: str = ""
    street: str = ""
    district: str = ""
    shelter: str = ""
    hotline: str = "12345"


SAMPLE_AREA = AreaFacts("梅园一村居委会", "陆家嘴街道", "浦东新区", "梅园一村社区活动中心", "12345")


@dataclass(frozen=True)
class Rendered:
    text: str
    parts: int = 1
    encoding: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=4)
def environment(directory: Path = TEMPLATES_DIR) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def template_name(event: EventType, channel: ChannelKind, language: Language) -> str:
    return f"{channel.value}/{event.value}.{language.value}.j2"


def render(
    draft: AlertDraft, language: Language, channel: ChannelKind, area: AreaFacts, settings: Settings
) -> Rendered:
    """The text one recipient gets; raises UndefinedError / TemplateNotFound on a broken template."""
    template = environment().get_template(template_name(draft.event, channel, language))
    text = template.render(
        level=draft.level.value,
        level_zh=draft.level.zh,
        exercise=draft.exercise,
        msg_type=draft.msg_type.value,
        params=draft.params,
        area=area,
        signature=settings.sms_signature if language is Language.zh else "[Shanghai EMA]",
        hotline=area.hotline or settings.hotline,
    )
    text = _SPACES.sub("", text).strip() if language is Language.zh else _SPACES.sub(" ", text).strip()
    if channel is ChannelKind.sms:
        cost = sms_cost(text)
        return Rendered(text, cost.parts, cost.encoding)
    if channel is ChannelKind.voice:
        return Rendered(text, extra={"language": "zh-CN" if language is Language.zh else "en-US"})
    if channel is ChannelKind.push:
        title = f"台风{draft.level.zh}预警" if language is Language.zh else f"Typhoon {draft.level.value} warning"
        data = {
            "event": draft.event.value,
            "level": draft.level.value,
            "exercise": draft.exercise,
            "msg_type": draft.msg_type.value,
        }
        return Rendered(text, extra={"title": title, "data": data})
    return Rendered(text)


def check_templates(draft: AlertDraft, settings: Settings) -> list[str]:
    """Render every (channel, language) the alert needs with sample area facts; list each problem."""
    problems = []
    for channel in draft.channels:
        for language in draft.languages:
            name = template_name(draft.event, channel, language)
            try:
                rendered = render(draft, language, channel, SAMPLE_AREA, settings)
            except TemplateNotFound:
                problems.append(f"template {name} is missing")
                continue
            except UndefinedError as exc:
                problems.append(f"template {name}: {exc.message}")
                continue
            if not rendered.text:
                problems.append(f"template {name} renders an empty message")
    return problems


__all__ = ["SAMPLE_AREA", "AreaFacts", "Level", "Rendered", "check_templates", "render", "template_name"]
