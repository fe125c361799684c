"""What a confirmation tells the officer before they commit: how many people, on which channels,
in which streets, and the words residents will read."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from audiences.areas import AreaTree
from audiences.preview import preview as target_preview
from broadcast import alerts
from broadcast.compose import AreaFacts
from broadcast.context import Context
from broadcast.deliver import area_facts
from broadcast.models import Alert, AlertDraft
from broadcast.preview import first_committee, preview
from broadcast.web import CTX, REDIS


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
    return preview(draft, ctx.settings, facts, referenced, ctx.clock.now())
