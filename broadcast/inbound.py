"""Storing what providers and residents tell us: delivery reports, replies, key presses.

Called by the web app after a channel has authenticated and parsed a request, and before the
provider gets its answer, so an acknowledged webhook is a stored event.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio

from audiences.residents import Resident, load_residents, phone_rids
from broadcast.context import CONTROL_QUEUE, Context
from broadcast.deliver import channel_failed, load_alert_async
from broadcast.keys import Keys, as_bytes, as_text
from broadcast.ledger import Ledger, roster_index
from broadcast.models import AckMethod, Alert, EventKind, RecipientEvent, ReplyEvent, normalise_reply

_ALERT_CACHE_SECONDS = 2.0
REPLIES_KEPT = 100_000  # unreadable replies kept per alert for the roll-ups
# Words that mean trouble wherever they appear in a reply ("家里老人需要帮助", "被困了", "help us").
HELP_WORDS = ("帮", "救", "困", "急", "伤", "help", "sos")


@dataclass(frozen=True)
class Recorded:
    """What one event came to: 'delivered', 'acknowledged', 'unmatched', …"""

    outcome: str
    alert_id: str | None = None
    ordinal: int | None = None


class Inbox:
    """Records inbound events for one process; keeps a short cache of alerts."""

    def __init__(self, ctx: Context, client: redis.asyncio.Redis) -> None:
        self.ctx = ctx
        self.client = client
        self.keys: Keys = ctx.keys
        self._alerts: dict[str, tuple[float, Alert | None]] = {}

    async def alert(self, alert_id: str) -> Alert | None:
        hit = self._alerts.get(alert_id)
        if hit and time.monotonic() - hit[0] < _ALERT_CACHE_SECONDS:
            return hit[1]
        alert = await load_alert_async(self.client, self.keys, alert_id)
        if len(self._alerts) > 1024:
            self._alerts.clear()
        self._alerts[alert_id] = (time.monotonic(), alert)
        return alert

    async def record(self, events: Sequence[RecipientEvent | ReplyEvent]) -> list[Recorded]:
        out = []
        for event in events:
            if isinstance(event, ReplyEvent):
                out.append(await self.record_reply(event))
            else:
                out.append(await self.record_recipient_event(event))
        return out

    async def record_recipient_event(self, event: RecipientEvent, method: AckMethod | None = None) -> Recorded:
        """A fact about (alert, ordinal): delivered, failed, acknowledged, needs help."""
        alert = await self.alert(event.alert_id)
        index = await roster_index(self.client, self.keys, event.alert_id)
        if alert is None or index is None or not 0 <= event.ordinal < index.size:
            await self.client.hincrby(self.keys.stats, "stale_events", 1)
            return Recorded("stale", event.alert_id, event.ordinal)
        now = self.ctx.clock.now()
        issued_at = alert.issued_at or alert.created_at
        ledger = Ledger(self.client, self.keys, alert.id)
        if event.kind is EventKind.failed:
            await channel_failed(self.ctx, self.client, alert, index, event.channel, [event.ordinal], event.error_code)
            return Recorded("failed", alert.id, event.ordinal)
        pair = [(event.ordinal, index.community_index(event.ordinal))]
        fresh, _ = await ledger.mark(
            event.kind, event.channel, pair, issued_at=issued_at, at=now, method=method or event.method
        )
        if event.kind in (EventKind.acknowledged, EventKind.needs_help):
            # Whoever answers has the message, whatever the delivery report says.
            await ledger.mark(EventKind.delivered, event.channel, pair, issued_at=issued_at, at=now)
        if event.kind is EventKind.needs_help and fresh and (method or event.method) is not AckMethod.volunteer:
            # A call for help skips the ladder: the volunteers and the community worker hear of it now.
            await asyncio.to_thread(
                self.ctx.queue(CONTROL_QUEUE).enqueue, "broadcast.escalation.help_case_job", alert.id, event.ordinal
            )
        return Recorded(event.kind.value, alert.id, event.ordinal)

    async def record_reply(self, event: ReplyEvent) -> Recorded:
        """A text from a resident: find who and for which alert, then what they meant."""
        rids = phone_rids(await self.client.hget(self.keys.resident_by_phone(event.from_address), event.from_address))
        entries = await load_residents(self.client, self.keys, rids) if rids else {}
        if not entries:
            await self.client.hincrby(self.keys.stats, "unmatched_replies", 1)
            return Recorded("unmatched")
        found = await self.find_recipient(entries)
        if found is None:
            await self.client.hincrby(self.keys.stats, "replies_without_alert", 1)
            return Recorded("no_active_alert")
        alert_id, ordinal = found
        meaning = self.meaning(event.body)
        if meaning is None:
            # Words we cannot read as yes or help still reach a person: the committee's roll-up lists them.
            await self.client.xadd(
                self.keys.alert_replies(alert_id),
                {"ordinal": ordinal, "body": event.body[:500], "at": self.ctx.clock.now().isoformat()},
                maxlen=REPLIES_KEPT,
                approximate=True,
            )
            await self.client.hincrby(self.keys.counts(alert_id), "replies_unrecognised", 1)
            return Recorded("unrecognised", alert_id, ordinal)
        return await self.record_recipient_event(
            RecipientEvent(
                alert_id=alert_id, ordinal=ordinal, kind=meaning, channel=event.channel, provider_ref=event.provider_ref
            ),
            method=AckMethod.sms_reply,
        )

    def meaning(self, body: str) -> EventKind | None:
        """Confirmation, a call for help, or None; any help word anywhere in a reply counts as a call for help."""
        text = normalise_reply(body)
        settings = self.ctx.settings
        if text in {k.lower() for k in settings.help_keywords} or any(w in text for w in HELP_WORDS):
            return EventKind.needs_help
        if text in {k.lower() for k in settings.confirm_keywords}:
            return EventKind.acknowledged
        return None

    async def find_recipient(
        self, entries: dict[int, Resident], alert_ids: list[str] | None = None
    ) -> tuple[str, int] | None:
        """The latest active alert (of ``alert_ids``, or any) whose roster holds one of these entries
        (everyone a phone or device names), with the ordinal."""
        now = self.ctx.clock.now()
        if alert_ids is None:
            alert_ids = [as_text(a) for a in await self.client.zrevrange(self.keys.alerts_active, 0, 20)]
        for alert_id in alert_ids:
            alert = await self.alert(alert_id)
            if alert is None or not alert.is_active(now):
                continue
            for rid, entry in entries.items():
                for area in dict.fromkeys((entry.place, entry.community)):
                    span = await self.client.hget(self.keys.ranges(alert_id), area)
                    if span is None:
                        continue
                    start, end = (int(x) for x in as_text(span).split(":"))
                    chunk = as_bytes(await self.client.getrange(self.keys.roster(alert_id), start * 4, end * 4 - 1))
                    rids = array("I")
                    rids.frombytes(chunk[: len(chunk) // 4 * 4])
                    try:
                        return alert_id, start + rids.index(rid)
                    except ValueError:
                        continue
        return None
