"""Delivery reports that a provider does not post back (push services): asked for a while after the
batch was sent (the delivering stage queues the job), and stored as a webhook's reports are."""

from __future__ import annotations

import asyncio
from typing import Any

from broadcast.core.context import Context, current
from broadcast.core.models import ChannelKind
from broadcast.hearing.inbound import Inbox
from channels import channel_class
from channels.base import Sent


def delivery_report_job(alert_id: str, channel: str, sent: list[list[Any]]) -> dict[str, Any]:
    """RQ entry point: fetch delivery reports for sent messages and record them."""
    return asyncio.run(delivery_reports(current(), alert_id, ChannelKind(channel), [Sent(*s) for s in sent]))


async def delivery_reports(ctx: Context, alert_id: str, kind: ChannelKind, sent: list[Sent]) -> dict[str, Any]:
    """Ask the channel's provider what became of ``sent`` and store its reports as any webhook's are."""
    client = ctx.async_redis()
    try:
        async with channel_class(kind, ctx.settings)(ctx.settings) as channel:
            events = await channel.delivery_reports(alert_id, sent)
        recorded = await Inbox(ctx, client).record(events)
        return {"reports": len(events), "outcomes": sorted({r.outcome for r in recorded})}
    finally:
        await client.aclose()
