"""What a confirmation tells the officer before they commit (the review, the approval, the
cancellation): how many people in which areas, on which channels, with which parameters, drill or
not, until when, and the words residents will read on each ticked channel in each language."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from audiences.areas import AreaTree
from audiences.groups import custom_groups
from audiences.preview import preview as target_preview
from broadcast.composing.compose import AreaFacts
from broadcast.composing.facts import area_facts
from broadcast.composing.preview import first_committee, preview
from broadcast.core.context import Context
from broadcast.core.models import Alert, AlertDraft
from broadcast.issuing import alerts
from broadcast.web.base import CTX, REDIS
from broadcast.web.console.access import area_prefix
from broadcast.web.console.compose_form import catalogue_view
from broadcast.web.pages.display import Display


def reach(ctx: Context, draft: AlertDraft) -> dict[str, Any]:
    """Who the draft reaches today: totals, first channels, screens, and per street."""
    tree = AreaTree.current(ctx.redis, ctx.keys)
    return target_preview(
        ctx.redis,
        ctx.keys,
        tree,
        draft.target,
        draft.channels,
        draft.level,
        ctx.settings.opt_out_override_levels,
    )


def roster_reach(alert: Alert) -> int:
    """How many people an issued alert's frozen roster holds."""
    return alert.roster_size or 0


async def messages(request: web.Request, draft: AlertDraft) -> dict[str, Any]:
    """Every channel's text in every language, worded with the first targeted committee's facts."""
    ctx = request.app[CTX]
    tree = await asyncio.to_thread(AreaTree.current, ctx.redis, ctx.keys)
    committee = first_committee(tree, draft.target.areas[0])
    facts = AreaFacts(hotline=ctx.settings.hotline)
    if committee:
        facts = (await area_facts(request.app[REDIS], ctx.keys, [committee], ctx.settings.hotline))[committee]
    referenced = await asyncio.to_thread(alerts.referenced_alert, ctx, draft)
    worded = preview(draft, ctx.settings, facts, referenced, ctx.clock.now())
    # Only the channels the draft goes out on: a text nobody will get is not what residents read.
    ticked = {channel.value for channel in draft.channels}
    worded["messages"] = {c: by_language for c, by_language in worded["messages"].items() if c in ticked}
    return worded


def area_reach(codes: list[str], communities: list[dict[str, Any]], tree: AreaTree) -> list[dict[str, Any]]:
    """Each targeted area by name with how many people it reaches (None for a grid or building
    sharing its committee with another target: the counts are kept per committee)."""
    rows = []
    for code in codes:
        prefix = area_prefix(code) if len(code) == 12 else None
        people: int | None
        if prefix is not None:
            people = sum(int(row["targeted"]) for row in communities if row["code"].startswith(prefix))
        else:
            committee = code[:12]
            sharing = [other for other in codes if other != code and other.startswith(committee)]
            people = None if sharing else sum(int(r["targeted"]) for r in communities if r["code"] == committee)
        rows.append({"code": code, "name": tree.areas[code].name if code in tree else code, "people": people})
    return rows


def param_rows(ctx: Context, draft: AlertDraft) -> list[tuple[str, str]]:
    """(label, value) of each parameter the draft gives, labelled as the compose form labels them."""
    event = next((e for e in catalogue_view(ctx.settings) if e["value"] == draft.event.value), None)
    labels = {f["key"]: f["label"] for f in event["fields"]} if event else {}
    return [(labels.get(key, key), value) for key, value in draft.params.items() if value]


def brief(ctx: Context, draft: AlertDraft, counts: dict[str, Any]) -> dict[str, Any]:
    """The facts an approver reads beside the messages: areas with people, groups, channels, parameters."""
    tree = AreaTree.current(ctx.redis, ctx.keys)
    titles = {name: group.title for name, group in custom_groups(ctx.redis, ctx.keys).items()}
    return {
        "areas": area_reach(draft.target.areas, counts["areas"]["community"], tree),
        "excluded": [(code, tree.areas[code].name if code in tree else code) for code in draft.target.exclude],
        "groups": draft.target.groups,
        "group_titles": titles,
        "channels": counts["channels"],
        "screens": counts["screens"],
        "vulnerable": counts["vulnerable"],
        "params": param_rows(ctx, draft),
    }


def validity(draft: AlertDraft, show: Display) -> str:
    """Until when the warning stands, in local time (for how long, before it is issued)."""
    hours, minutes = divmod(draft.valid_minutes, 60)
    span = f"{hours} 小时 {minutes} 分钟" if minutes else f"{hours} 小时"
    if not isinstance(draft, Alert) or draft.issued_at is None:
        return f"签发后 {span} valid for {draft.valid_minutes} min after issue"
    return f"至 {show.time(draft.expires_at)} until {show.stamp(draft.expires_at)}（{span}）"
