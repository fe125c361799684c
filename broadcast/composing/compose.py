"""Rendering: (alert, language, channel, area facts) → what that channel sends. Pure.

What each event and level says lives in the catalogue (``templates/catalogue.toml``); one layout
per channel and language (``templates/{channel}/{language}.j2``) arranges it, and the channel's
shape (:mod:`broadcast.composing.shapes`) finishes it. Templates are Jinja2 with StrictUndefined: a value
a template needs but the alert lacks is an error at preview and issue time, never a blank.

An update or a cancel is worded from the alert it references: a red after an orange is an
upgrade (升级), a yellow after an orange a downgrade (降级), the same level an update (更新), a
cancel lifts (解除) the referenced warning.

The SMS confirmation link is per recipient while rendering is once per language and committee:
the text carries a placeholder link of the real link's length, so the parts counted at render
time stay true when :func:`with_link` puts each recipient's link in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateError, TemplateNotFound

from broadcast.composing import shapes
from broadcast.composing.catalogue import CatalogueError, load_catalogue
from broadcast.composing.shapes import Rendered
from broadcast.core.models import Alert, AlertDraft, ChannelKind, Language, Level, MessageType
from broadcast.core.settings import Settings
from broadcast.core.tokens import LINK_TOKEN_LENGTH

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
LINK_PATH = "/c/"
_TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{LINK_TOKEN_LENGTH}}}$")
_PLACEHOLDER_TOKEN = "#" * LINK_TOKEN_LENGTH  # GSM-7 like every token character: same cost
SHELTER_FROM = Level.orange  # from this level up, events that may move people name the shelter
SHANGHAI_TIME = timezone(timedelta(hours=8), "CST")


@dataclass(frozen=True)
class AreaFacts:
    """What a message may say about where the recipient lives."""

    community: str = ""
    street: str = ""
    district: str = ""
    shelter: str = ""
    hotline: str = "12345"
    shelter_en: str = ""  # the shelter's English name, where the committee recorded one


SAMPLE_AREA = AreaFacts("梅园一村居委会", "陆家嘴街道", "浦东新区", "梅园一村社区活动中心", "12345")
SAMPLE_ISSUED_AT = datetime(2025, 7, 24, 10, 0, tzinfo=SHANGHAI_TIME)


class Change(str, Enum):
    """What a message does to the warning it is about."""

    new = "new"  # 发布
    upgrade = "upgrade"  # 升级
    downgrade = "downgrade"  # 降级
    update = "update"  # 更新
    cancel = "cancel"  # 解除


def change_of(draft: AlertDraft, referenced: AlertDraft | None) -> Change:
    """The change ``draft`` makes to the alert it references (unknown reference: a plain update)."""
    if draft.msg_type is MessageType.alert:
        return Change.new
    if draft.msg_type is MessageType.cancel:
        return Change.cancel
    if referenced is None or referenced.event is not draft.event or referenced.level is draft.level:
        return Change.update
    return Change.upgrade if draft.level.rank > referenced.level.rank else Change.downgrade


def worded_level(draft: AlertDraft, referenced: AlertDraft | None) -> Level:
    """The level a message names: a cancel lifts the referenced warning at the level it had."""
    if change_of(draft, referenced) is Change.cancel and referenced is not None and referenced.event is draft.event:
        return referenced.level
    return draft.level


def templates_dir(settings: Settings) -> Path:
    """Where the catalogue and layouts are read from (a deployment may keep its own wording)."""
    return settings.templates_dir or TEMPLATES_DIR


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


@lru_cache(maxsize=512)
def _snippet(directory: Path, source: str) -> Template:
    return environment(directory).from_string(source)


def load_layouts(settings: Settings) -> None:
    """Read the catalogue and compile every layout now: a worker does it once, before it forks a
    work horse per batch, instead of every work horse doing it again."""
    directory = templates_dir(settings)
    catalogue = load_catalogue(directory)
    for entry in catalogue.events.values():
        for language in Language:
            wording = entry.wording(language)
            if wording is not None:
                try:
                    _snippet(directory, wording.situation)
                except TemplateError:
                    continue  # reported when an alert uses it
    for channel in ChannelKind:
        for language in Language:
            try:
                environment(directory).get_template(layout_name(channel, language))
            except TemplateNotFound:
                continue  # a missing layout is reported when an alert needs it


def layout_name(channel: ChannelKind, language: Language) -> str:
    """The layout file, relative to the templates directory, for a channel and language."""
    return f"{channel.value}/{language.value}.j2"


def link_base(settings: Settings) -> str:
    return settings.link_base or settings.public_url


def confirmation_link(settings: Settings, token: str) -> str:
    """The short link a resident taps to confirm receipt."""
    if not _TOKEN.match(token):
        raise ValueError(f"a link token is {LINK_TOKEN_LENGTH} URL-safe characters, not {token!r}")
    return f"{link_base(settings)}{LINK_PATH}{token}"


def with_link(rendered: Rendered, url: str) -> Rendered:
    """The message with one recipient's confirmation link in place of the placeholder."""
    placeholder = rendered.extra.get("link")
    if not placeholder:
        return rendered
    base = placeholder[:-LINK_TOKEN_LENGTH]
    if not (url.startswith(base) and _TOKEN.match(url[len(base) :])):
        raise ValueError(f"{url!r} is not a confirmation link of the form {base}<{LINK_TOKEN_LENGTH} characters>")
    head, _, tail = rendered.text.rpartition(placeholder)  # the link ends the message: take the last one
    return replace(rendered, text=head + url + tail)


def render(
    draft: AlertDraft,
    language: Language,
    channel: ChannelKind,
    area: AreaFacts,
    settings: Settings,
    *,
    referenced: AlertDraft | None = None,
    issued_at: datetime | None = None,
) -> Rendered:
    """What residents of one committee who read ``language`` get on ``channel``.

    Raises CatalogueError (wording missing) or a Jinja2 TemplateError (layout missing or broken).
    """
    directory = templates_dir(settings)
    values = _message_values(draft, language, channel, area, settings, referenced, issued_at)
    text = environment(directory).get_template(layout_name(channel, language)).render(values)
    paragraphs = [line.strip() for line in text.splitlines() if line.strip()]
    if not paragraphs:
        raise CatalogueError(f"template {layout_name(channel, language)} renders an empty message")
    if channel is ChannelKind.sms:
        return shapes.sms(paragraphs, language, values["link"])
    if channel is ChannelKind.voice:
        return shapes.voice(paragraphs, language)
    if channel is ChannelKind.push:
        data = {"event": draft.event.value, "level": values["level"], "exercise": draft.exercise}
        data["msg_type"] = draft.msg_type.value
        return shapes.push(paragraphs, data)
    return shapes.screen(paragraphs, values["level"])


def _message_values(
    draft: AlertDraft,
    language: Language,
    channel: ChannelKind,
    area: AreaFacts,
    settings: Settings,
    referenced: AlertDraft | None = None,
    issued_at: datetime | None = None,
) -> dict[str, Any]:
    """Everything a layout may use: the catalogue's words for this event, level and change."""
    directory = templates_dir(settings)
    catalogue = load_catalogue(directory)
    entry = catalogue.entry(draft.event)
    change = change_of(draft, referenced)
    same_event = referenced is not None and referenced.event is draft.event
    level = worded_level(draft, referenced)
    problems = catalogue.wording_problems(draft.event, language, level)
    wording = entry.wording(language)
    if problems or wording is None:
        raise CatalogueError(problems[0])
    situation = ""
    if change is not Change.cancel:
        try:
            situation = _snippet(directory, wording.situation).render(catalogue.situation_values(draft, language))
        except TemplateError as exc:
            where = f"templates/catalogue.toml: {draft.event.value} {language.value} situation"
            raise CatalogueError(f"{where}: {exc.message}") from None
    names_shelter = entry.shelter and level.rank >= SHELTER_FROM.rank and change is not Change.cancel
    when = issued_at
    if when is None and isinstance(draft, Alert):
        when = draft.issued_at or draft.created_at
    expires = when + timedelta(minutes=draft.valid_minutes) if when else None
    return {
        "change": change.value,
        "level": level.value,
        "previous_level": referenced.level.value if referenced is not None and same_event else "",
        "exercise": draft.exercise,
        "event": wording.name,
        "issuer": catalogue.issuer(draft.event, language),
        "sender": catalogue.sender[language],
        "situation": situation.strip(),
        "guidance": wording.lifted if change is Change.cancel else wording.guidance[level],
        "shelter": _shelter(area, language, channel) if names_shelter else "",
        "hotline": area.hotline or settings.hotline,
        "area": area,
        "signature": settings.sms_signature if language is Language.zh else settings.sms_signature_en,
        "link": f"{link_base(settings)}{LINK_PATH}{_PLACEHOLDER_TOKEN}" if channel is ChannelKind.sms else "",
        "valid_until": expires.astimezone(settings.zone) if expires and change is not Change.cancel else None,
    }


def _shelter(area: AreaFacts, language: Language, channel: ChannelKind) -> str:
    """The shelter's name for this reader: English texts fall back to the Chinese name on the
    sign (one can show it to someone), an English voice says only an English name."""
    if language is Language.zh:
        return area.shelter
    return area.shelter_en if channel is ChannelKind.voice else area.shelter_en or area.shelter


def render_problems(
    draft: AlertDraft,
    language: Language,
    channel: ChannelKind,
    settings: Settings,
    referenced: AlertDraft | None = None,
    area: AreaFacts = SAMPLE_AREA,
    issued_at: datetime = SAMPLE_ISSUED_AT,
) -> tuple[Rendered | None, list[str]]:
    """Render (by default for the sample area); the result, or the problems that stopped it, named."""
    name = layout_name(channel, language)
    try:
        rendered = render(draft, language, channel, area, settings, referenced=referenced, issued_at=issued_at)
    except CatalogueError as exc:
        return None, [str(exc)]
    except TemplateNotFound as exc:
        return None, [f"template {exc.name} is missing"]
    except TemplateError as exc:
        return None, [f"template {name}: {exc.message}"]
    if channel is ChannelKind.voice and shapes.unspeakable(rendered.text):
        symbols = "".join(sorted(shapes.unspeakable(rendered.text)))
        return rendered, [f"template {name}: the spoken text still has symbols {symbols}"]
    return rendered, []


def level_problem(draft: AlertDraft, settings: Settings) -> str | None:
    """Why the draft's event cannot go out at its level (not a level that signal has), or None."""
    try:
        return load_catalogue(templates_dir(settings)).level_problem(draft.event, draft.level)
    except CatalogueError as exc:
        return str(exc)


def draft_problems(draft: AlertDraft, settings: Settings) -> list[str]:
    """What is wrong with the draft's event, level and parameters before any rendering."""
    level = level_problem(draft, settings)
    if level:
        return [level]
    return load_catalogue(templates_dir(settings)).param_problems(draft)


def check_templates(draft: AlertDraft, settings: Settings, *, referenced: AlertDraft | None = None) -> list[str]:
    """Render every (channel, language) the alert needs with the sample area; list each problem."""
    problems = draft_problems(draft, settings)
    if problems:
        return problems
    for channel in draft.channels:
        for language in draft.languages:
            problems += render_problems(draft, language, channel, settings, referenced)[1]
    return problems


__all__ = [
    "LINK_TOKEN_LENGTH",
    "SAMPLE_AREA",
    "AreaFacts",
    "Change",
    "Rendered",
    "change_of",
    "check_templates",
    "confirmation_link",
    "render",
    "with_link",
    "worded_level",
]
