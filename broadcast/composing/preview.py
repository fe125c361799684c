"""The preview a duty officer sees before issuing: every channel's message in every language the
alert uses, with what it costs (SMS parts, push bytes, screen pages). Nothing is stored.

The area facts (committee name, shelter, hotline) are those of the first committee the target
covers. The web app serves it as ``POST /api/v1/alerts/preview`` (``broadcast.web.preview``).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from audiences.areas import AreaLevel, AreaTree
from broadcast.composing.compose import (
    AreaFacts,
    change_of,
    draft_problems,
    level_problem,
    render_problems,
    worded_level,
)
from broadcast.composing.shapes import Rendered, push_bytes
from broadcast.core.context import Context
from broadcast.core.errors import AlertError
from broadcast.core.models import AlertDraft, ChannelKind
from broadcast.core.settings import Settings


def rendered_json(channel: ChannelKind, rendered: Rendered) -> dict[str, Any]:
    """One channel's message as JSON: its text and the fields that channel adds."""
    if channel is ChannelKind.sms:
        return {
            "text": rendered.text,
            "segments": rendered.parts,
            "encoding": rendered.encoding,
            "characters": len(rendered.text),
        }
    if channel is ChannelKind.push:
        size = push_bytes(rendered.extra["title"], rendered.text, rendered.extra["data"])
        return {"title": rendered.extra["title"], "text": rendered.text, "data": rendered.extra["data"], "bytes": size}
    return {"text": rendered.text, **rendered.extra}


def preview(
    draft: AlertDraft,
    settings: Settings,
    area: AreaFacts,
    referenced: AlertDraft | None,
    issued_at: datetime,
) -> dict[str, Any]:
    """Every channel's message for ``draft``; an AlertError (422) naming each problem otherwise."""
    problems = draft_problems(draft, settings)
    if problems:
        raise AlertError("; ".join(problems), status=422, field="params")
    messages: dict[str, dict[str, Any]] = {}
    for channel in ChannelKind:
        for language in draft.languages:
            rendered, problems = render_problems(draft, language, channel, settings, referenced, area, issued_at)
            if rendered is None or problems:
                raise AlertError("; ".join(problems), status=422, field="params")
            messages.setdefault(channel.value, {})[language.value] = rendered_json(channel, rendered)
    level = worded_level(draft, referenced)
    return {
        "event": draft.event.value,
        "level": level.value,
        "severity": level.cap_severity,
        "msg_type": draft.msg_type.value,
        "change": change_of(draft, referenced).value,
        "exercise": draft.exercise,
        "area": asdict(area),
        "messages": messages,
        "cost": {"sms_segments": {lang: sms["segments"] for lang, sms in messages[ChannelKind.sms.value].items()}},
    }


def first_committee(tree: AreaTree, code: str) -> str | None:
    """The committee whose facts a preview shows: the first under ``code``, or the one containing it."""
    area = tree.get(code)
    if area.level in (AreaLevel.grid, AreaLevel.building):
        committee = tree.at_level(code, AreaLevel.community)
        return committee.code if committee else None
    return next((a.code for a in tree.descendants(code, AreaLevel.community)), None)


def checked_committee(ctx: Context, draft: AlertDraft) -> str | None:
    """Check the target and level as issuing would; the committee whose facts to show."""
    tree = AreaTree.load(ctx.redis, ctx.keys)
    unknown = tree.unknown([*draft.target.areas, *draft.target.exclude])
    if unknown:
        raise AlertError(f"unknown area code(s): {', '.join(unknown)}", status=422, field="target.areas")
    problem = level_problem(draft, ctx.settings)
    if problem:
        raise AlertError(problem, status=422, field="level")
    return first_committee(tree, draft.target.areas[0])
