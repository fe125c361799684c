"""Send one batch: render once per (language, committee), send concurrently, record every outcome.

A batch is idempotent. Before sending, each recipient's ``attempted`` bit is set; after a
definite answer it is either ``sent`` or cleared. A batch that is run again (a worker was killed)
skips everyone already sent and counts as *possible duplicates* those whose attempt never got an
answer: a rare duplicate is better than a missed warning.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio
from rq import Retry

from audiences.registry import Registry
from audiences.residents import Resident, load_residents
from broadcast.compose import AreaFacts, Rendered, confirmation_link, render, with_link
from broadcast.context import FOLLOWUP_QUEUE, Context, current, level_queue
from broadcast.keys import ALERT_RETENTION_SECONDS, Keys
from broadcast.ledger import Ledger, RosterIndex, roster_index
from broadcast.models import Alert, AlertStatus, ChannelKind, EventKind
from broadcast.plan import NO_CHANNEL, expand, to_ranges
from broadcast.ratelimit import SharedRateLimit
from broadcast.settings import Settings
from broadcast.tokens import app_ack_token, link_token
from channels import available, channel_class
from channels.base import UNREGISTERED, Channel, Limiter, NoLimit, OutboundMessage, Outcome, SendResult, Sent

FLUSH_EVERY = 100
RETRY_PAUSE_SECONDS = (0.5, 2.0, 5.0)
LATER_RETRY_SECONDS = 30


class BadConfiguration(RuntimeError):
    """The provider refused our credentials or sender; no message can succeed until it is fixed."""


def deliver_job(alert_id: str, channel: str, ranges: list[list[int]]) -> dict[str, Any]:
    """RQ entry point: deliver one batch."""
    return asyncio.run(deliver(current(), alert_id, channel, [(s, e) for s, e in ranges]))


async def load_alert_async(client: redis.asyncio.Redis, keys: Keys, alert_id: str) -> Alert | None:
    raw = await client.get(keys.alert(alert_id))
    return Alert.model_validate_json(raw) if raw else None


async def read_rids(client: redis.asyncio.Redis, keys: Keys, alert_id: str, ordinals: Sequence[int]) -> list[int]:
    """The resident id at each ordinal of a frozen roster."""
    runs = to_ranges(sorted(ordinals))
    async with client.pipeline(transaction=False) as pipe:
        for start, end in runs:
            pipe.getrange(keys.roster(alert_id), start * 4, end * 4 - 1)
        chunks = await pipe.execute()
    by_ordinal: dict[int, int] = {}
    for (start, _), chunk in zip(runs, chunks, strict=True):
        for i in range(len(chunk) // 4):
            by_ordinal[start + i] = int.from_bytes(chunk[4 * i : 4 * i + 4], "little")
    return [by_ordinal[o] for o in ordinals]


async def area_facts(
    client: redis.asyncio.Redis, keys: Keys, communities: Iterable[str], hotline: str
) -> dict[str, AreaFacts]:
    """Names (and shelter) of each committee, its street and its district."""
    codes: set[str] = set()
    for c in communities:
        codes |= {c, c[:9] + "000", c[:6] + "000000"}
    ordered = sorted(codes)
    raw = await client.hmget(keys.areas, ordered)
    info = {code: json.loads(r) for code, r in zip(ordered, raw, strict=True) if r}
    facts = {}
    for c in communities:
        own = info.get(c, {})
        facts[c] = AreaFacts(
            community=own.get("name", ""),
            street=info.get(c[:9] + "000", {}).get("name", ""),
            district=info.get(c[:6] + "000000", {}).get("name", ""),
            shelter=own.get("shelter", ""),
            hotline=own.get("hotline", hotline),
            shelter_en=own.get("shelter_en", ""),
        )
    return facts


@dataclass
class BatchReport:
    """What one run of a batch did; returned as the job's result."""

    sent: int = 0
    failed: int = 0
    skipped_already_sent: int = 0
    possible_duplicates: int = 0
    retried_later: int = 0
    fallback: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


async def deliver(ctx: Context, alert_id: str, channel_name: str, ranges: list[tuple[int, int]]) -> dict[str, Any]:
    """Deliver the batch of ``alert_id`` on ``channel_name`` covering ``ranges`` of ordinals."""
    client = ctx.async_redis()
    try:
        return (await _deliver(ctx, client, alert_id, channel_name, expand(ranges))).as_dict()
    finally:
        await client.aclose()


async def _deliver(
    ctx: Context, client: redis.asyncio.Redis, alert_id: str, channel_name: str, ordinals: list[int]
) -> BatchReport:
    report = BatchReport()
    keys, settings, now = ctx.keys, ctx.settings, ctx.clock.now()
    alert = await load_alert_async(client, keys, alert_id)
    if alert is None or alert.status is AlertStatus.cancelled or now >= alert.expires_at:
        return report
    index = await roster_index(client, keys, alert_id)
    if index is None:
        raise RuntimeError(f"alert {alert_id} has no frozen roster")
    ledger = Ledger(client, keys, alert_id)
    issued_at = alert.issued_at or alert.created_at

    if channel_name == NO_CHANNEL:
        await _unreachable(ledger, index, ordinals, issued_at, now, report)
        return report

    kind = ChannelKind(channel_name)
    already = await ledger.bits(f"sent:{kind.value}", ordinals)
    todo = [o for o, done in zip(ordinals, already, strict=True) if not done]
    report.skipped_already_sent = len(ordinals) - len(todo)
    if not todo:
        return report
    in_flight = await ledger.bits(f"attempted:{kind.value}", todo)
    report.possible_duplicates = sum(in_flight)
    await ledger.count("duplicates", report.possible_duplicates)

    rids = await read_rids(client, keys, alert_id, todo)
    residents = await load_residents(client, keys, rids)
    by_ordinal = {o: residents.get(rid) for o, rid in zip(todo, rids, strict=True)}
    facts = await area_facts(client, keys, {index.community_of(o) for o in todo}, settings.hotline)
    validity = int((alert.expires_at - now).total_seconds())
    # An update or cancel is worded from the alert it changes (升级 / 降级 / 解除).
    referenced = await load_alert_async(client, keys, alert.references) if alert.references else None

    rendered: dict[tuple[str, str], Rendered] = {}
    messages: list[OutboundMessage] = []
    unaddressable: list[int] = []
    for o in todo:
        resident = by_ordinal[o]
        address = _address(resident, kind)
        if resident is None or address is None:
            unaddressable.append(o)
            continue
        language = resident.language if resident.language in alert.languages else alert.languages[0]
        community = index.community_of(o)
        key = (language.value, community)
        if key not in rendered:
            rendered[key] = render(alert, language, kind, facts[community], settings, referenced=referenced)
        text = with_link(rendered[key], confirmation_link(settings, link_token(ctx.secret, alert_id, o)))
        extra = text.extra
        if kind is ChannelKind.push:
            # The app confirms with the alert's id and its signed key (see broadcast.app_api).
            data = {**dict(extra.get("data", {})), "alert_id": alert_id, "ack": app_ack_token(ctx.secret, alert_id)}
            extra = {**extra, "data": data}
        messages.append(OutboundMessage(alert_id, o, address, text.text, language.value, text.parts, validity, extra))

    await ledger.set_bits(f"attempted:{kind.value}", [m.ordinal for m in messages])
    if unaddressable:
        await _failed(ctx, ledger, alert, index, kind, unaddressable, by_ordinal, None, now, report)

    async with channel_class(kind, settings)(settings) as channel:
        leftover = await _send_with_retries(ctx, client, channel, alert, ledger, index, messages, by_ordinal, report)
    if leftover:
        await _clear_attempted(ledger, kind, [m.ordinal for m in leftover])
        _enqueue(ctx, alert, kind.value, [m.ordinal for m in leftover], delay=LATER_RETRY_SECONDS)
        report.retried_later = len(leftover)
        await ledger.count("retried", len(leftover))
    return report


def _address(resident: Resident | None, kind: ChannelKind) -> str | None:
    if resident is None:
        return None
    if kind in (ChannelKind.sms, ChannelKind.voice):
        return resident.phone
    if kind is ChannelKind.push:
        return resident.push_tokens[0] if resident.push_tokens else None
    return None


def _limiter(ctx: Context, client: redis.asyncio.Redis, channel: Channel) -> Limiter:
    spec = channel.rate_limit()
    if spec is None:
        return NoLimit()
    account, rate, burst = spec
    return SharedRateLimit(
        client, ctx.keys.rate_limit(account), ctx.keys.rate_limit_penalty(account), rate, burst, ctx.clock
    )


async def _send_with_retries(
    ctx: Context,
    client: redis.asyncio.Redis,
    channel: Channel,
    alert: Alert,
    ledger: Ledger,
    index: RosterIndex,
    messages: list[OutboundMessage],
    by_ordinal: dict[int, Resident | None],
    report: BatchReport,
) -> list[OutboundMessage]:
    """Send, retrying retryable and throttled messages in place; returns those still unsent."""
    limiter = _limiter(ctx, client, channel)
    by_ord = {m.ordinal: m for m in messages}
    pending = messages
    bad_config: SendResult | None = None
    accepted: list[Sent] = []
    for attempt in range(ctx.settings.send_attempts):
        again: list[OutboundMessage] = []
        buffer: list[SendResult] = []
        async for result in channel.send(pending, limiter):
            if result.outcome is Outcome.accepted and channel.asks_for_reports:
                accepted.append(Sent(result.ordinal, by_ord[result.ordinal].address, result.provider_ref or ""))
            if result.outcome in (Outcome.retryable, Outcome.throttled):
                if result.outcome is Outcome.throttled:
                    limiter.slow_down()
                again.append(by_ord[result.ordinal])
                continue
            if result.outcome is Outcome.bad_config:
                bad_config = result
                again.append(by_ord[result.ordinal])
                continue
            buffer.append(result)
            if len(buffer) >= FLUSH_EVERY:
                await _record(ctx, ledger, alert, index, channel.kind, buffer, by_ordinal, report)
                buffer = []
        await _record(ctx, ledger, alert, index, channel.kind, buffer, by_ordinal, report)
        if bad_config is not None:
            await _clear_attempted(ledger, channel.kind, [m.ordinal for m in again])
            raise BadConfiguration(
                f"{channel.name} refused the request (error {bad_config.error_code}): {bad_config.detail}"
            )
        pending = again
        if not pending:
            break
        if attempt + 1 < ctx.settings.send_attempts:
            await asyncio.sleep(RETRY_PAUSE_SECONDS[min(attempt, len(RETRY_PAUSE_SECONDS) - 1)])
    if accepted:
        _enqueue_reports(ctx, alert, channel, accepted)
    return pending


async def _record(
    ctx: Context,
    ledger: Ledger,
    alert: Alert,
    index: RosterIndex,
    kind: ChannelKind,
    results: list[SendResult],
    by_ordinal: dict[int, Resident | None],
    report: BatchReport,
) -> None:
    if not results:
        return
    now = ctx.clock.now()
    issued_at = alert.issued_at or alert.created_at
    accepted = [(r.ordinal, index.community_index(r.ordinal)) for r in results if r.outcome is Outcome.accepted]
    await ledger.mark(EventKind.sent, kind, accepted, issued_at=issued_at, at=now)
    report.sent += len(accepted)
    refused = [r for r in results if r.outcome is not Outcome.accepted]
    codes: dict[int | None, list[int]] = {}
    for r in refused:
        codes.setdefault(r.error_code, []).append(r.ordinal)
    for code, ordinals in codes.items():
        await _failed(ctx, ledger, alert, index, kind, ordinals, by_ordinal, code, now, report)


async def _failed(
    ctx: Context,
    ledger: Ledger,
    alert: Alert,
    index: RosterIndex,
    kind: ChannelKind,
    ordinals: list[int],
    by_ordinal: dict[int, Resident | None],
    error_code: int | None,
    now: datetime,
    report: BatchReport,
) -> None:
    """This channel will not reach them: try each one's next channel, or count them unreachable."""
    issued_at = alert.issued_at or alert.created_at
    pairs = [(o, index.community_index(o)) for o in ordinals]
    _, fresh = await ledger.mark(
        EventKind.failed, kind, pairs, issued_at=issued_at, at=now, recipient_level=False, error_code=error_code
    )
    await _clear_attempted(ledger, kind, ordinals)
    ordinals = fresh  # a repeated failure report moves nobody on twice
    report.failed += len(ordinals)
    next_channel: dict[str, list[int]] = {}
    final: list[int] = []
    if kind is ChannelKind.push and error_code == UNREGISTERED and ordinals:
        rids = await read_rids(ledger.client, ctx.keys, alert.id, ordinals)
        gone = {
            rid: resident.push_tokens[0]
            for o, rid in zip(ordinals, rids, strict=True)
            if (resident := by_ordinal.get(o)) is not None and resident.push_tokens
        }
        await asyncio.to_thread(Registry(ctx.redis, ctx.keys).forget_push_tokens, gone)
    for o in ordinals:
        nxt = next_channel_for(by_ordinal.get(o), alert, kind, ctx.settings)
        if nxt is None:
            final.append(o)
        else:
            next_channel.setdefault(nxt.value, []).append(o)
    for channel, group in next_channel.items():
        _enqueue(ctx, alert, channel, group)
        report.fallback[channel] = report.fallback.get(channel, 0) + len(group)
    if final:
        await _mark_unreachable(ledger, index, final, issued_at, now)


def next_channel_for(
    resident: Resident | None, alert: Alert, failed: ChannelKind, settings: Settings
) -> ChannelKind | None:
    """The resident's next channel after ``failed`` that the alert uses and a provider serves."""
    if resident is None:
        return None
    order = resident.channels
    after = order[order.index(failed) + 1 :] if failed in order else []
    return next((c for c in after if c in alert.channels and available(c, settings)), None)


async def _unreachable(
    ledger: Ledger, index: RosterIndex, ordinals: list[int], issued_at: datetime, now: datetime, report: BatchReport
) -> None:
    await _mark_unreachable(ledger, index, ordinals, issued_at, now)
    report.failed += len(ordinals)


async def _mark_unreachable(
    ledger: Ledger, index: RosterIndex, ordinals: list[int], issued_at: datetime, now: datetime
) -> None:
    """Recipient-level failure: no channel of theirs can reach them; a volunteer must."""
    pairs = [(o, index.community_index(o)) for o in ordinals]
    await ledger.mark(EventKind.failed, None, pairs, issued_at=issued_at, at=now)


async def _clear_attempted(ledger: Ledger, kind: ChannelKind, ordinals: Iterable[int]) -> None:
    key = ledger.bitmap(f"attempted:{kind.value}")
    async with ledger.client.pipeline(transaction=False) as pipe:
        for o in ordinals:
            pipe.setbit(key, o, 0)
        await pipe.execute()


def _enqueue(ctx: Context, alert: Alert, channel: str, ordinals: list[int], delay: int = 0) -> None:
    """Queue a follow-up batch (fallback channel, or a later retry) for some recipients."""
    queue = ctx.queue(level_queue(alert.level, vulnerable=True))
    kwargs: dict[str, Any] = dict(
        job_timeout=900,
        result_ttl=3600,
        failure_ttl=ALERT_RETENTION_SECONDS,
        retry=Retry(max=5, interval=[2, 10, 30, 60, 120]),
    )
    for i in range(0, len(ordinals), ctx.settings.batch_size):
        ranges = to_ranges(sorted(ordinals[i : i + ctx.settings.batch_size]))
        if delay:
            queue.enqueue_in(
                timedelta(seconds=delay), "broadcast.deliver.deliver_job", alert.id, channel, ranges, **kwargs
            )
        else:
            queue.enqueue("broadcast.deliver.deliver_job", alert.id, channel, ranges, **kwargs)


async def channel_failed(
    ctx: Context,
    client: redis.asyncio.Redis,
    alert: Alert,
    index: RosterIndex,
    kind: ChannelKind,
    ordinals: list[int],
    error_code: int | None,
) -> BatchReport:
    """A provider reported that messages did not arrive: record it and move on to the next channel."""
    rids = await read_rids(client, ctx.keys, alert.id, ordinals)
    residents = await load_residents(client, ctx.keys, rids)
    by_ordinal = {o: residents.get(rid) for o, rid in zip(ordinals, rids, strict=True)}
    report = BatchReport()
    ledger = Ledger(client, ctx.keys, alert.id)
    await _failed(ctx, ledger, alert, index, kind, ordinals, by_ordinal, error_code, ctx.clock.now(), report)
    return report


def _enqueue_reports(ctx: Context, alert: Alert, channel: Channel, accepted: list[Sent]) -> None:
    """Ask a provider that does not call back what became of these messages, a while from now."""
    queue = ctx.queue(FOLLOWUP_QUEUE)
    delay = timedelta(seconds=ctx.settings.push_report_delay_seconds)
    for i in range(0, len(accepted), 1000):
        chunk = [[s.ordinal, s.address, s.provider_ref] for s in accepted[i : i + 1000]]
        args = (alert.id, channel.kind.value, chunk)
        kwargs: dict[str, Any] = {"job_timeout": 300, "result_ttl": 3600, "retry": Retry(max=3, interval=[30, 60, 120])}
        if delay:
            queue.enqueue_in(delay, "broadcast.deliver.delivery_report_job", *args, **kwargs)
        else:
            queue.enqueue("broadcast.deliver.delivery_report_job", *args, **kwargs)


def delivery_report_job(alert_id: str, channel: str, sent: list[list[Any]]) -> dict[str, Any]:
    """RQ entry point: fetch delivery reports for sent messages and record them."""
    return asyncio.run(delivery_reports(current(), alert_id, ChannelKind(channel), [Sent(*s) for s in sent]))


async def delivery_reports(ctx: Context, alert_id: str, kind: ChannelKind, sent: list[Sent]) -> dict[str, Any]:
    from broadcast.inbound import Inbox

    client = ctx.async_redis()
    try:
        async with channel_class(kind, ctx.settings)(ctx.settings) as channel:
            events = await channel.delivery_reports(alert_id, sent)
        recorded = await Inbox(ctx, client).record(events)
        return {"reports": len(events), "outcomes": sorted({r.outcome for r in recorded})}
    finally:
        await client.aclose()
