"""Storing what providers and residents tell us: delivery reports, replies, key presses.

Called by the web app after a channel has authenticated and parsed a request, and before the
provider gets its answer, so an acknowledged webhook is a stored event.

Requests that arrive together are stored together: each waits while one batch at a time is
recorded, and the batch's lookups and ledger writes go to Redis as a few commands for all of them
(a reply's phone, record, roster range and ordinal, then one ledger call per alert and event),
not seven round trips for each. A request is answered when its batch is stored, so a 2xx still
means stored; if storing fails, every request of that batch fails with it and the provider retries.

A text that begins with a report keyword ("报告 积水 地下车库") is a field report from the sender's
building (``field_reports``), stored once per provider message id; it confirms nothing.

A provider retries what we did not answer in time (our callback URLs ask Twilio to), so the same
event may come twice: storing it again changes nothing (bitmaps, a reply kept once per message id,
a help case queued once) and it is answered 200 again. A delivery report counts only for a message
we sent that recipient on that channel and round, and never moves a recipient back: "failed" after
"delivered" (or a confirmation) is ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import redis.asyncio

from audiences.residents import Resident, hget_many, load_places, load_residents, phone_rids
from broadcast.core.context import CONTROL_QUEUE, Context
from broadcast.core.jobs import HELP_CASE_JOB, enqueue_once, until_done
from broadcast.core.keys import ALERT_RETENTION_SECONDS, Keys, as_bytes, as_text
from broadcast.core.models import AckMethod, Alert, ChannelKind, EventKind, RecipientEvent, ReplyEvent, normalise_reply
from broadcast.delivering.deliver import channel_failed, channel_label, read_rids
from broadcast.delivering.ledger import Ledger, RosterIndex, Stage, roster_index
from broadcast.hearing.field_reports import Category, FieldReport, Reporter, read_sms_report, store_report
from broadcast.issuing.alerts import load_alert_async

_ALERT_CACHE_SECONDS = 2.0
REPLIES_KEPT = 100_000  # unreadable replies kept per alert for the roll-ups
# Words that mean trouble wherever they appear in a reply ("家里老人需要帮助", "被困了", "help us").
HELP_WORDS = ("帮", "救", "困", "急", "伤", "help", "sos")
_MOST_RECENT_ALERTS = 21  # a reply is matched against the latest active alerts, newest first
BATCH_LIMIT = 500  # events stored together at most
REPORTS = (EventKind.delivered, EventKind.failed)  # what providers report about a message we sent

# A reply we cannot read as yes or help: counted for the alert and kept for the roll-up, once per
# provider message id. KEYS: the alert's reply ids, counts, replies stream, the service's stats.
# ARGV: message id ('' when the provider gave none), ordinal, body, time, stream cap, lifetime.
_UNREAD_REPLY = """
if ARGV[1] ~= '' then
  if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
    redis.call('HINCRBY', KEYS[4], 'replayed_replies', 1)
    return 0
  end
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
redis.call('HINCRBY', KEYS[2], 'replies_unrecognised', 1)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'ordinal', ARGV[2], 'body', ARGV[3], 'at', ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[6])
return 1
"""

# GETRANGE of many byte ranges of one string (a roster): one command instead of one each, the
# ranges packed in one argument ("start end;" each).
_GETRANGES = """
local out = {}
for first, last in string.gmatch(ARGV[1], "(%d+) (%d+);") do
  out[#out + 1] = redis.call('GETRANGE', KEYS[1], tonumber(first), tonumber(last))
end
return out
"""


def queue_help_case(ctx: Context, alert_id: str, ordinal: int) -> bool:
    """Queue the help case of (alert, ordinal) unless it is queued or running; retried until done. The
    following stage runs it: the resident's volunteers and community workers are texted at once."""
    return enqueue_once(
        ctx.queue(CONTROL_QUEUE),
        HELP_CASE_JOB,
        alert_id,
        ordinal,
        job_id=f"{ctx.keys.ns}-{alert_id}-h{ordinal}",
        retry=until_done(),
        result_ttl=ALERT_RETENTION_SECONDS,
    )


@dataclass(frozen=True)
class Recorded:
    """What one event came to: 'delivered', 'acknowledged', 'unmatched', …"""

    outcome: str
    alert_id: str | None = None
    ordinal: int | None = None


Event = RecipientEvent | ReplyEvent
_Waiting = tuple[Sequence[Event], "asyncio.Future[list[Recorded]]"]


class Inbox:
    """Records inbound events for one process; keeps a short cache of alerts."""

    def __init__(self, ctx: Context, client: redis.asyncio.Redis) -> None:
        self.ctx = ctx
        self.client = client
        self.keys: Keys = ctx.keys
        self._alerts: dict[str, tuple[float, Alert | None]] = {}
        self._waiting: deque[_Waiting] = deque()
        self._storing: asyncio.Task[None] | None = None

    async def alert(self, alert_id: str) -> Alert | None:
        hit = self._alerts.get(alert_id)
        if hit and time.monotonic() - hit[0] < _ALERT_CACHE_SECONDS:
            return hit[1]
        alert = await load_alert_async(self.client, self.keys, alert_id)
        if len(self._alerts) > 1024:
            self._alerts.clear()
        self._alerts[alert_id] = (time.monotonic(), alert)
        return alert

    async def record(self, events: Sequence[Event]) -> list[Recorded]:
        """Store events (with whatever else arrives meanwhile); what each came to, once stored."""
        if not events:
            return []
        done: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        self._waiting.append((events, done))
        if self._storing is None or self._storing.done():
            self._storing = asyncio.ensure_future(self._store_waiting())
        return await done

    async def _store_waiting(self) -> None:
        """Store what is waiting, a batch at a time, until nothing is."""
        while self._waiting:
            batch: list[_Waiting] = []
            size = 0
            while self._waiting and (not batch or size + len(self._waiting[0][0]) <= BATCH_LIMIT):
                batch.append(self._waiting.popleft())
                size += len(batch[-1][0])
            try:
                results = await self.record_now([e for events, _ in batch for e in events])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            at = 0
            for events, done in batch:
                if not done.done():
                    done.set_result(results[at : at + len(events)])
                at += len(events)

    async def record_now(self, events: Sequence[Event]) -> list[Recorded]:
        """Store these events now, together; what each came to."""
        out: list[Recorded | None] = [None] * len(events)
        todo: list[tuple[int, RecipientEvent, AckMethod | None]] = []
        replies = [(i, e) for i, e in enumerate(events) if isinstance(e, ReplyEvent)]
        if replies:
            for (i, _), found in zip(replies, await self.resolve_replies([e for _, e in replies]), strict=True):
                if isinstance(found, Recorded):
                    out[i] = found
                else:
                    todo.append((i, found, AckMethod.sms_reply))
        todo += [(i, e, None) for i, e in enumerate(events) if isinstance(e, RecipientEvent)]
        stored = await self.record_recipient_events([(e, m) for _, e, m in todo])
        for (i, _, _), recorded in zip(todo, stored, strict=True):
            out[i] = recorded
        return [r if r is not None else Recorded("unrecognised") for r in out]

    async def record_recipient_event(self, event: RecipientEvent, method: AckMethod | None = None) -> Recorded:
        """A fact about (alert, ordinal): delivered, failed, acknowledged, needs help."""
        return (await self.record_recipient_events([(event, method)]))[0]

    async def record_recipient_events(
        self, events: Sequence[tuple[RecipientEvent, AckMethod | None]]
    ) -> list[Recorded]:
        """Facts about (alert, ordinal) pairs; one ledger call per alert, event, channel and method."""
        out: list[Recorded] = []
        groups: dict[tuple[str, EventKind, ChannelKind, int, AckMethod | None], list[tuple[int, int]]] = {}
        alerts: dict[str, Alert] = {}
        looked_up: dict[str, tuple[Alert | None, RosterIndex | None]] = {}
        stale = 0
        known: list[tuple[RecipientEvent, AckMethod | None, Alert, RosterIndex] | None] = []
        for event, method in events:
            if event.alert_id not in looked_up:  # most events of a batch are about one alert
                looked_up[event.alert_id] = (
                    await self.alert(event.alert_id),
                    await roster_index(self.client, self.keys, event.alert_id),
                )
            alert, index = looked_up[event.alert_id]
            if alert is None or index is None or not 0 <= event.ordinal < index.size:
                stale += 1
                known.append(None)
            else:
                known.append((event, method, alert, index))
        verdicts = await self._check_reports([k[0] if k and k[1] is None else None for k in known])
        unmatched = superseded = 0
        for entry, verdict in zip(known, verdicts, strict=True):
            if entry is None:
                continue
            event, method, alert, index = entry
            if verdict == "unmatched":
                unmatched += 1
                out_event = Recorded("unmatched_report", alert.id, event.ordinal)
            elif verdict == "superseded":
                superseded += 1
                out_event = Recorded("superseded", alert.id, event.ordinal)
            elif event.kind is EventKind.failed:
                await channel_failed(
                    self.ctx, self.client, alert, index, event.channel, [event.ordinal], event.error_code, event.round
                )
                out_event = Recorded("failed", alert.id, event.ordinal)
            else:
                alerts[alert.id] = alert
                key = (alert.id, event.kind, event.channel, event.round, method or event.method)
                groups.setdefault(key, []).append((event.ordinal, index.community_index(event.ordinal)))
                out_event = Recorded(event.kind.value, alert.id, event.ordinal)
            out.append(out_event)
        out = self._in_order(known, out, events)
        if unmatched or superseded:
            async with self.client.pipeline(transaction=False) as pipe:
                if unmatched:
                    pipe.hincrby(self.keys.stats, "unmatched_reports", unmatched)
                if superseded:
                    pipe.hincrby(self.keys.stats, "superseded_reports", superseded)
                await pipe.execute()
        if stale:
            await self.client.hincrby(self.keys.stats, "stale_events", stale)
        now = self.ctx.clock.now()
        for (alert_id, kind, channel, round_, method), pairs in groups.items():
            alert = alerts[alert_id]
            issued_at = alert.issued_at or alert.created_at
            ledger = Ledger(self.client, self.keys, alert_id)
            if kind is EventKind.needs_help:
                # When each first asked, so the duty room sees the newest calls for help first.
                asked = self.keys.help_asked(alert_id)
                await self.client.zadd(asked, {str(o): now.timestamp() for o, _ in pairs}, nx=True)
                await self.client.expire(asked, ALERT_RETENTION_SECONDS)
            label = channel_label(channel, round_)
            if kind is EventKind.needs_help and method is not AckMethod.volunteer:
                seen = await ledger.bits("needs_help", [o for o, _ in pairs])
                for (ordinal, _), already in zip(pairs, seen, strict=True):
                    if not already:
                        # A call for help skips the ladder: the volunteers and the community worker hear
                        # of it now. Queued before it is marked, and once: a retried request queues nothing.
                        await asyncio.to_thread(queue_help_case, self.ctx, alert_id, ordinal)
            stage = Stage.delivered if kind is EventKind.delivered else None
            await ledger.mark(
                kind, channel, pairs, issued_at=issued_at, at=now, method=method, label=label, stage=stage
            )
            if kind in (EventKind.acknowledged, EventKind.needs_help):
                # Whoever answers has the message, whatever the delivery report says.
                await ledger.mark(
                    EventKind.delivered, channel, pairs, issued_at=issued_at, at=now, label=label, stage=Stage.delivered
                )
        return out

    @staticmethod
    def _in_order(
        known: Sequence[tuple[RecipientEvent, AckMethod | None, Alert, RosterIndex] | None],
        recorded: list[Recorded],
        events: Sequence[tuple[RecipientEvent, AckMethod | None]],
    ) -> list[Recorded]:
        """What each event came to, in the order of the events (stale ones where they were)."""
        done = iter(recorded)
        return [
            next(done) if entry is not None else Recorded("stale", event.alert_id, event.ordinal)
            for entry, (event, _) in zip(known, events, strict=True)
        ]

    async def _check_reports(self, reports: Sequence[RecipientEvent | None]) -> list[str | None]:
        """For each provider report (None: not one): "unmatched" when we sent that recipient no message
        on that channel and round, "superseded" when it says failed of someone delivered already, else None."""
        wanted = [(i, e) for i, e in enumerate(reports) if e is not None and e.kind in REPORTS]
        verdicts: list[str | None] = [None] * len(reports)
        if not wanted:
            return verdicts
        async with self.client.pipeline(transaction=False) as pipe:
            for _, e in wanted:
                label = channel_label(e.channel, e.round)
                pipe.getbit(self.keys.bits(e.alert_id, f"attempted:{label}"), e.ordinal)
                pipe.getbit(self.keys.bits(e.alert_id, f"sent:{label}"), e.ordinal)
                pipe.getbit(self.keys.bits(e.alert_id, "delivered"), e.ordinal)
            bits = await pipe.execute()
        for n, (i, e) in enumerate(wanted):
            attempted, sent, delivered = bits[3 * n : 3 * n + 3]
            if not (attempted or sent):
                verdicts[i] = "unmatched"
            elif e.kind is EventKind.failed and delivered:
                verdicts[i] = "superseded"
        return verdicts

    async def record_reply(self, event: ReplyEvent) -> Recorded:
        """A text from a resident: find who and for which alert, then what they meant."""
        return (await self.record_now([event]))[0]

    async def resolve_replies(self, events: Sequence[ReplyEvent]) -> list[Recorded | RecipientEvent]:
        """Who sent each text and for which alert, and what they meant; or why it counts for nothing."""
        raw = await hget_many(
            self.client, [(self.keys.resident_by_phone(e.from_address), e.from_address) for e in events]
        )
        rids_of = [phone_rids(r) for r in raw]
        places = await load_places(self.client, self.keys, sorted({rid for rids in rids_of for rid in rids}))
        entries = [{rid: places[rid] for rid in rids if rid in places} for rids in rids_of]
        found = await self.find_places([e for e in entries if e])
        by_sender = iter(found)
        out: list[Recorded | RecipientEvent] = []
        unmatched = without_alert = 0
        unread: list[tuple[str, int, str, str]] = []
        reports: list[tuple[int, str, int, ReplyEvent, tuple[Category, str]]] = []
        for event, senders in zip(events, entries, strict=True):
            if not senders:
                unmatched += 1
                out.append(Recorded("unmatched"))
                continue
            match = next(by_sender)
            if match is None:
                without_alert += 1
                out.append(Recorded("no_active_alert"))
                continue
            alert_id, ordinal = match
            report = read_sms_report(event.body, self.ctx.settings.report_keywords)
            if report is not None:
                reports.append((len(out), alert_id, ordinal, event, report))
                out.append(Recorded("field_report", alert_id, ordinal))
                continue
            meaning = self.meaning(event.body)
            if meaning is None:
                unread.append((alert_id, ordinal, event.body, event.provider_ref or ""))
                out.append(Recorded("unrecognised", alert_id, ordinal))
                continue
            out.append(  # built from values already checked: no validation again
                RecipientEvent.model_construct(
                    alert_id=alert_id,
                    ordinal=ordinal,
                    kind=meaning,
                    channel=event.channel,
                    method=None,
                    error_code=None,
                    provider_ref=event.provider_ref,
                )
            )
        if unmatched or without_alert or unread:
            async with self.client.pipeline(transaction=False) as pipe:
                if unmatched:
                    pipe.hincrby(self.keys.stats, "unmatched_replies", unmatched)
                if without_alert:
                    pipe.hincrby(self.keys.stats, "replies_without_alert", without_alert)
                # Words we cannot read as yes or help still reach a person: the committee's roll-up lists
                # them. A message the provider sends again (or anyone replays) counts once, by its id.
                at, k = self.ctx.clock.now().isoformat(), self.keys
                for alert_id, ordinal, body, sid in unread:
                    keys = [k.reply_ids(alert_id), k.counts(alert_id), k.alert_replies(alert_id), k.stats]
                    args: list[str | int] = [sid, ordinal, body[:500], at, REPLIES_KEPT, ALERT_RETENTION_SECONDS]
                    pipe.eval(_UNREAD_REPLY, 4, *keys, *args)
                await pipe.execute()
        for _, alert_id, ordinal, event, (category, text) in reports:
            await self.store_sms_report(alert_id, ordinal, event, category, text)
        return out

    async def store_sms_report(
        self, alert_id: str, ordinal: int, event: ReplyEvent, category: Category, text: str
    ) -> FieldReport:
        """A resident's report by SMS, from their building; the provider's message id makes a retry one report."""
        (rid,) = await read_rids(self.client, self.keys, alert_id, [ordinal])
        resident = (await load_residents(self.client, self.keys, [rid])).get(rid)
        place = (resident.building or resident.place) if resident else ""
        community = resident.community if resident else place[:12]
        report = FieldReport(
            id="0",
            alert_id=alert_id,
            category=category,
            text=text,
            place=place or community,
            community=community,
            reporter=Reporter(
                kind="resident",
                id=str(ordinal),
                name=resident.name if resident else "",
                phone=event.from_address,
            ),
            source="sms",
            at=self.ctx.clock.now(),
        )
        request = event.provider_ref or hashlib.sha256(event.body.encode()).hexdigest()[:32]
        stored, _ = await store_report(self.client, self.keys, report, request)
        return stored

    def meaning(self, body: str) -> EventKind | None:
        """Confirmation, a call for help, or None; any help word anywhere in a reply counts as a call for help."""
        text = normalise_reply(body)
        settings = self.ctx.settings
        if text in _keywords(tuple(settings.help_keywords)) or any(word in text for word in HELP_WORDS):
            return EventKind.needs_help
        if text in _keywords(tuple(settings.confirm_keywords)):
            return EventKind.acknowledged
        return None

    async def find_recipient(
        self, entries: dict[int, Resident], alert_ids: list[str] | None = None
    ) -> tuple[str, int] | None:
        """The latest active alert (of ``alert_ids``, or any) whose roster holds one of these entries
        (everyone a phone or device names), with the ordinal."""
        return (await self.find_places([{rid: e.place for rid, e in entries.items()}], alert_ids))[0]

    async def find_places(
        self, senders: Sequence[dict[int, str]], alert_ids: list[str] | None = None
    ) -> list[tuple[str, int] | None]:
        """``find_recipient`` for many senders at once, each as its entries' places (rid → place):
        a few commands per alert tried, not per sender."""
        found: list[tuple[str, int] | None] = [None] * len(senders)
        if not senders:
            return found
        now = self.ctx.clock.now()
        if alert_ids is None:
            alert_ids = [
                as_text(a) for a in await self.client.zrevrange(self.keys.alerts_active, 0, _MOST_RECENT_ALERTS - 1)
            ]
        waiting = list(range(len(senders)))
        for alert_id in alert_ids:
            alert = await self.alert(alert_id)
            if alert is None or not alert.is_active(now):
                continue
            # Each entry a phone names is looked for in its place's range, then in its whole
            # committee's, in that order, as the single-sender lookup would; every range wanted is
            # fetched for all senders at once, a round at a time.
            areas = {a for i in waiting for place in senders[i].values() for a in (place, place[:12])}
            spans = await self._spans(alert_id, sorted(areas))
            chunks: dict[tuple[int, int], array[int]] = {}
            unsure = waiting
            waiting = []
            while unsure:
                wanted: set[tuple[int, int]] = set()
                again = []
                for i in unsure:
                    outcome = _look_up(senders[i], spans, chunks)
                    if outcome is None:
                        waiting.append(i)
                    elif isinstance(outcome, _Need):
                        wanted.add(outcome.span)
                        again.append(i)
                    else:
                        found[i] = (alert_id, outcome)
                chunks.update(await self._roster_chunks(alert_id, sorted(wanted)))
                unsure = again
            if not waiting:
                break
        return found

    async def _spans(self, alert_id: str, areas: list[str]) -> dict[str, tuple[int, int]]:
        """The roster range of each area that the alert reaches."""
        if not areas:
            return {}
        raw = await self.client.hmget(self.keys.ranges(alert_id), areas)
        out = {}
        for area, span in zip(areas, raw, strict=True):
            if span is not None:
                start, end = (int(x) for x in as_text(span).split(":"))
                out[area] = (start, end)
        return out

    async def _roster_chunks(self, alert_id: str, spans: list[tuple[int, int]]) -> dict[tuple[int, int], array[int]]:
        """The rids of each roster range."""
        if not spans:
            return {}
        packed = "".join(f"{start * 4} {end * 4 - 1};" for start, end in spans)
        raw = await self.client.eval(_GETRANGES, 1, self.keys.roster(alert_id), packed)
        out = {}
        for span, chunk in zip(spans, raw, strict=True):
            data = as_bytes(chunk)
            rids = array("I")
            rids.frombytes(data[: len(data) // 4 * 4])
            out[span] = rids
        return out


@dataclass(frozen=True)
class _Need:
    """A lookup that cannot go on without this roster range."""

    span: tuple[int, int]


def _look_up(
    entries: dict[int, str], spans: dict[str, tuple[int, int]], chunks: dict[tuple[int, int], array[int]]
) -> int | _Need | None:
    """The ordinal of the first of ``entries`` (rid → place) found in its place's, then its committee's
    range; a range still to be fetched; or None when none of them is in the roster."""
    for rid, place in entries.items():
        for area in dict.fromkeys((place, place[:12])):  # a place's code starts with its committee's
            span = spans.get(area)
            if span is None:
                continue
            rids = chunks.get(span)
            if rids is None:
                return _Need(span)
            at = _index(rids, rid)
            if at is not None:
                return span[0] + at
    return None


@lru_cache(maxsize=8)
def _keywords(words: tuple[str, ...]) -> frozenset[str]:
    return frozenset(w.lower() for w in words)


def _index(rids: array[int], rid: int) -> int | None:
    try:
        return rids.index(rid)
    except ValueError:
        return None
