"""Send one batch: render once per (language, committee), send concurrently, record every outcome.

A batch is idempotent. A message is marked ``attempted`` (a window at a time) before it can go
out; after a definite answer it is either ``sent`` or cleared. A batch that is run again (its
worker was killed) skips everyone already sent and counts as *possible duplicates* those whose
attempt never got an answer: a rare duplicate is better than a missed warning.

Two runs of one batch never send at once: a run holds the batch's lease (``broadcast.core.lease``) while
it sends, so a run thought dead that was only stalled stops when a retry takes the batch over.
Batches are queued under ids derived from what they send (``enqueue_once``) and retried until done.

A batch belongs to a round: round 0 is the alert itself, rounds 1, 2 … are escalation steps that
reach the same people again on a channel (a call to an unconfirmed elderly resident). Each round
has its own ``sent``/``attempted`` bitmaps, so a second call is not mistaken for a duplicate.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio
from rq import Retry

from audiences.registry import Registry
from audiences.residents import Resident, load_residents
from broadcast.composing.compose import Rendered, confirmation_link, load_layouts, render, with_link
from broadcast.composing.facts import area_facts
from broadcast.core.context import FOLLOWUP_QUEUE, Context, current, level_queue
from broadcast.core.jobs import BATCH_JOB, DELIVERY_REPORT_JOB, enqueue_once, until_done
from broadcast.core.keys import ALERT_RETENTION_SECONDS, Keys
from broadcast.core.lease import Lease
from broadcast.core.models import Alert, AlertStatus, ChannelKind, EventKind
from broadcast.core.settings import Settings
from broadcast.core.tokens import app_ack_token, link_token
from broadcast.delivering.ledger import Ledger, RosterIndex, Stage, roster_index
from broadcast.delivering.ratelimit import SharedRateLimit
from broadcast.issuing.alerts import load_alert_async
from broadcast.issuing.plan import NO_CHANNEL, expand, to_ranges
from channels import available, channel_class
from channels.base import UNREGISTERED, Channel, OutboundMessage, Outcome, SendResult, Sent

FLUSH_EVERY = 50  # results recorded per round trip …
FLUSH_SECONDS = 0.25  # … or at least this often
ATTEMPT_WINDOW = 50  # messages marked "attempted" ahead of sending, per round trip
RETRY_PAUSE_SECONDS = (0.5, 2.0, 5.0)
# Seconds a throttled message waits in its lane before going again (about 13 s in all), then the next pass.
THROTTLED_PAUSES = (0.02, 0.05, 0.1, 0.2, 0.2, 0.3, 0.3, 0.5, 0.5, 0.5, 1.0, 1.0, 2.0, 2.0, 5.0)
LATER_RETRY_SECONDS = 30


class BadConfiguration(RuntimeError):
    """The provider refused our credentials or sender; no message can succeed until it is fixed."""


def channel_label(kind: ChannelKind, round_: int) -> str:
    """How bitmaps and counters name a channel in a round: "voice", or "voice.1" for the first escalation."""
    return kind.value if round_ == 0 else f"{kind.value}.{round_}"


def prepare_worker(settings: Settings) -> None:
    """Load in the worker, once, what each batch's work horse would otherwise load again: the message
    layouts (compiled) and the catalogue; then keep the cyclic collector off those objects, so that
    forked work horses do not copy the pages it would touch."""
    load_layouts(settings)
    gc.freeze()


def batch_name(alert_id: str, label: str, ranges: Sequence[Sequence[int]]) -> str:
    """A name for the batch of these ordinals on this channel and round: its job id and its lease."""
    digest = zlib.crc32(json.dumps([list(r) for r in ranges], separators=(",", ":")).encode())
    return f"{alert_id}-{(label or 'none').replace('.', '_')}-{len(ranges)}r{digest:08x}"


def deliver_job(
    alert_id: str, channel: str, ranges: list[list[int]], round_: int = 0, pass_: int = 0
) -> dict[str, Any]:
    """RQ entry point: deliver one batch (``pass_``: how many times its remainder was put off already)."""
    # A batch allocates many short-lived objects and few cycles: the cyclic collector would walk
    # them again and again (a twentieth of a batch's time). Reference counting frees them; the
    # collector takes up again when the batch is done (a work horse exits then anyway).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return asyncio.run(deliver(current(), alert_id, channel, [(s, e) for s, e in ranges], round_, pass_))
    finally:
        if enabled:
            gc.enable()


async def deliver(
    ctx: Context, alert_id: str, channel_name: str, ranges: list[tuple[int, int]], round_: int = 0, pass_: int = 0
) -> dict[str, Any]:
    """Deliver the batch of ``alert_id`` on ``channel_name`` covering ``ranges`` of ordinals, holding its lease."""
    client = ctx.async_redis()
    try:
        alert = await load_alert_async(client, ctx.keys, alert_id)
        if alert is None or alert.status is AlertStatus.cancelled or ctx.clock.now() >= alert.expires_at:
            return BatchReport().as_dict()
        index = await roster_index(client, ctx.keys, alert_id)
        if index is None:
            raise RuntimeError(f"alert {alert_id} has no frozen roster")
        kind = None if channel_name == NO_CHANNEL else ChannelKind(channel_name)
        label = channel_label(kind, round_) if kind is not None else ""
        async with Lease(client, ctx.keys.lease(batch_name(alert_id, label, ranges))) as lease:
            run = BatchRun(ctx, client, alert, index, kind, round_, lease=lease, pass_=pass_)
            await run.deliver(expand(ranges))
        return run.report.as_dict()
    finally:
        await client.aclose()


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


class DeliveryGate:
    """Paces a batch to its account's shared rate, and marks messages "attempted" a window ahead.

    A message is marked before it can go out, in windows of ATTEMPT_WINDOW (one round trip each),
    so after a crash "attempted but not sent" bounds the possible duplicates to about a window plus
    the results not yet recorded.
    """

    def __init__(
        self,
        limit: SharedRateLimit | None,
        ledger: Ledger,
        state: str,
        messages: list[OutboundMessage],
        lease: Lease | None = None,
    ):
        self.limit = limit
        self.lease = lease
        self.ledger = ledger
        self.state = state
        self.order = [m.ordinal for m in messages]
        self.position = {o: i for i, o in enumerate(self.order)}
        self.marked = 0
        self._lock = asyncio.Lock()

    async def admit(self, messages: Sequence[OutboundMessage], cost: float) -> None:
        if self.lease is not None:
            self.lease.check()  # another run has this batch now: send nothing more
        last = max(self.position[m.ordinal] for m in messages)
        if last >= self.marked:
            async with self._lock:
                if last >= self.marked:
                    upto = min(len(self.order), max(last + 1, self.marked + ATTEMPT_WINDOW))
                    await self.ledger.set_bits(self.state, self.order[self.marked : upto])
                    self.marked = upto
        if self.limit is not None:
            await self.limit.take(cost)

    def slow_down(self) -> None:
        if self.limit is not None:
            self.limit.slow_down()

    async def retry_throttled(self, message: OutboundMessage, tries: int) -> bool:
        """A provider at its capacity refuses what it cannot carry now: back off (with jitter, as
        providers ask) and send the message again in its lane, while the other lanes go on, rather
        than a whole pass later; after THROTTLED_PAUSES it goes back to the batch's next pass."""
        if tries >= len(THROTTLED_PAUSES):
            return False
        self.slow_down()
        await asyncio.sleep(THROTTLED_PAUSES[tries] * random.uniform(0.5, 1.5))
        return True

    async def close(self) -> None:
        """The pass is over: what the rate limit gave and was not spent goes back to the account."""
        if self.limit is not None:
            await self.limit.release()


class BatchRun:
    """One run of one batch (or one provider report) for one alert on one channel and round."""

    def __init__(
        self,
        ctx: Context,
        client: redis.asyncio.Redis,
        alert: Alert,
        index: RosterIndex,
        kind: ChannelKind | None,
        round_: int = 0,
        lease: Lease | None = None,
        pass_: int = 0,
    ) -> None:
        self.ctx = ctx
        self.lease = lease
        self.pass_ = pass_
        self.client = client
        self.alert = alert
        self.index = index
        self.kind = kind
        self.round = round_
        self.label = channel_label(kind, round_) if kind is not None else ""
        self.ledger = Ledger(client, ctx.keys, alert.id)
        self.report = BatchReport()
        self.issued_at = alert.issued_at or alert.created_at
        self.residents: dict[int, Resident | None] = {}

    def pairs(self, ordinals: Iterable[int]) -> list[tuple[int, int]]:
        return [(o, self.index.community_index(o)) for o in ordinals]

    async def load_residents(self, ordinals: Sequence[int]) -> None:
        rids = await read_rids(self.client, self.ctx.keys, self.alert.id, ordinals)
        records = await load_residents(self.client, self.ctx.keys, rids)
        self.residents.update({o: records.get(rid) for o, rid in zip(ordinals, rids, strict=True)})

    async def deliver(self, ordinals: list[int]) -> None:
        if self.kind is None:
            await self.unreachable(ordinals)
            return
        already = await self.ledger.bits(f"sent:{self.label}", ordinals)
        todo = [o for o, done in zip(ordinals, already, strict=True) if not done]
        self.report.skipped_already_sent = len(ordinals) - len(todo)
        if not todo:
            return
        in_flight = await self.ledger.bits(f"attempted:{self.label}", todo)
        self.report.possible_duplicates = sum(in_flight)
        await self.ledger.count("duplicates", self.report.possible_duplicates)
        await self.load_residents(todo)
        messages, unaddressable = await self.messages(todo)
        if unaddressable:
            await self.failed(unaddressable, None)
        async with channel_class(self.kind, self.ctx.settings)(self.ctx.settings) as channel:
            leftover = await self.send(channel, messages)
        if leftover:
            await self.clear_attempted([m.ordinal for m in leftover])
            schedule_batches(
                self.ctx,
                self.alert,
                self.kind,
                [m.ordinal for m in leftover],
                self.round,
                LATER_RETRY_SECONDS,
                pass_=self.pass_ + 1,
            )
            self.report.retried_later = len(leftover)
            await self.ledger.count("retried", len(leftover))

    async def messages(self, todo: list[int]) -> tuple[list[OutboundMessage], list[int]]:
        """One message per reachable recipient, rendered once per (language, committee)."""
        assert self.kind is not None
        ctx, alert, settings = self.ctx, self.alert, self.ctx.settings
        facts = await area_facts(self.client, ctx.keys, {self.index.community_of(o) for o in todo}, settings.hotline)
        validity = int((alert.expires_at - ctx.clock.now()).total_seconds())
        # An update or cancel is worded from the alert it changes (升级 / 降级 / 解除).
        referenced = await load_alert_async(self.client, ctx.keys, alert.references) if alert.references else None
        rendered: dict[tuple[str, str], Rendered] = {}
        messages: list[OutboundMessage] = []
        unaddressable: list[int] = []
        for o in todo:
            resident = self.residents.get(o)
            address = _address(resident, self.kind)
            if resident is None or address is None:
                unaddressable.append(o)
                continue
            language = resident.language if resident.language in alert.languages else alert.languages[0]
            community = self.index.community_of(o)
            key = (language.value, community)
            if key not in rendered:
                rendered[key] = render(alert, language, self.kind, facts[community], settings, referenced=referenced)
            text = with_link(rendered[key], confirmation_link(settings, link_token(ctx.secret, alert.id, o)))
            extra = text.extra
            if self.kind is ChannelKind.push:
                # The app confirms with the alert's id and this recipient's signed key (see broadcast.web.app_api).
                data = {
                    **dict(extra.get("data", {})),
                    "alert_id": alert.id,
                    "ack": app_ack_token(ctx.secret, alert.id, o),
                }
                extra = {**extra, "data": data}
            messages.append(
                OutboundMessage(
                    alert.id, o, address, text.text, language.value, text.parts, validity, extra, round=self.round
                )
            )
        return messages, unaddressable

    async def send(self, channel: Channel, messages: list[OutboundMessage]) -> list[OutboundMessage]:
        """Send, retrying retryable and throttled messages in place; returns those still unsent."""
        limit = _rate_limit(self.ctx, self.client, channel)
        by_ordinal = {m.ordinal: m for m in messages}
        pending = messages
        bad_config: SendResult | None = None
        accepted: list[Sent] = []
        loop = asyncio.get_running_loop()
        for attempt in range(self.ctx.settings.send_attempts):
            gate = DeliveryGate(limit, self.ledger, f"attempted:{self.label}", pending, self.lease)
            again: list[OutboundMessage] = []
            buffer: list[SendResult] = []
            flushed_at = loop.time()
            async for result in channel.send(pending, gate):
                if result.outcome is Outcome.accepted and channel.asks_for_reports:
                    accepted.append(Sent(result.ordinal, by_ordinal[result.ordinal].address, result.provider_ref or ""))
                if result.outcome in (Outcome.retryable, Outcome.throttled, Outcome.bad_config):
                    if result.outcome is Outcome.throttled:
                        gate.slow_down()
                    if result.outcome is Outcome.bad_config:
                        bad_config = result
                    again.append(by_ordinal[result.ordinal])
                    continue
                buffer.append(result)
                if len(buffer) >= FLUSH_EVERY or loop.time() - flushed_at >= FLUSH_SECONDS:
                    await self.record(buffer, by_ordinal)
                    buffer, flushed_at = [], loop.time()
            await self.record(buffer, by_ordinal)
            await gate.close()
            if bad_config is not None:
                await self.clear_attempted([m.ordinal for m in again])
                raise BadConfiguration(
                    f"{channel.name} refused the request (error {bad_config.error_code}): {bad_config.detail}"
                )
            pending = again
            if not pending:
                break
            if attempt + 1 < self.ctx.settings.send_attempts:
                await asyncio.sleep(RETRY_PAUSE_SECONDS[min(attempt, len(RETRY_PAUSE_SECONDS) - 1)])
        if accepted:
            _enqueue_reports(self.ctx, self.alert, channel, accepted)
        return pending

    async def record(self, results: list[SendResult], messages: dict[int, OutboundMessage] | None = None) -> None:
        """Store what the provider said: accepted ones are sent (with the SMS parts they cost); refused
        ones have failed."""
        if not results:
            return
        accepted = [r.ordinal for r in results if r.outcome is Outcome.accepted]
        if messages and self.kind is ChannelKind.sms:
            await self.ledger.count(f"parts:{self.label}", sum(messages[o].parts for o in accepted if o in messages))
        await self.ledger.mark(
            EventKind.sent,
            self.kind,
            self.pairs(accepted),
            issued_at=self.issued_at,
            at=self.ctx.clock.now(),
            label=self.label,
            stage=None if self.round else Stage.sent,
        )
        self.report.sent += len(accepted)
        codes: dict[int | None, list[int]] = {}
        for r in results:
            if r.outcome is not Outcome.accepted:
                codes.setdefault(r.error_code, []).append(r.ordinal)
        for code, ordinals in codes.items():
            await self.failed(ordinals, code)

    async def failed(self, ordinals: list[int], error_code: int | None) -> None:
        """This channel will not reach them: try each one's next channel, or count them unreachable.

        An escalation round only records the failure: those people are already on a volunteer's list.
        """
        assert self.kind is not None
        _, fresh = await self.ledger.mark(
            EventKind.failed,
            self.kind,
            self.pairs(ordinals),
            issued_at=self.issued_at,
            at=self.ctx.clock.now(),
            recipient_level=False,
            error_code=error_code,
            label=self.label,
        )
        await self.clear_attempted(ordinals)
        ordinals = fresh  # a repeated failure report moves nobody on twice
        await self.ledger.count(f"error:{self.label}:{error_code or 0}", len(ordinals))  # failures by cause
        self.report.failed += len(ordinals)
        if self.round or not ordinals:
            return
        missing = [o for o in ordinals if o not in self.residents]
        if missing:
            await self.load_residents(missing)
        if self.kind is ChannelKind.push and error_code == UNREGISTERED:
            await self.forget_push_tokens(ordinals)
        next_channel: dict[ChannelKind, list[int]] = {}
        final: list[int] = []
        for o in ordinals:
            nxt = next_channel_for(self.residents.get(o), self.alert, self.kind, self.ctx.settings)
            if nxt is None:
                final.append(o)
            else:
                next_channel.setdefault(nxt, []).append(o)
        rerouted = [o for group in next_channel.values() for o in group]
        if rerouted:
            await self.ledger.move(Stage.rerouted, rerouted)
            await self.ledger.count(f"fallback:{self.label}", len(rerouted))
        for channel, group in next_channel.items():
            schedule_batches(self.ctx, self.alert, channel, group)
            self.report.fallback[channel.value] = self.report.fallback.get(channel.value, 0) + len(group)
        if final:
            await self.unreachable(final, counted=True)

    async def forget_push_tokens(self, ordinals: list[int]) -> None:
        rids = await read_rids(self.client, self.ctx.keys, self.alert.id, ordinals)
        gone = {
            rid: resident.push_tokens[0]
            for o, rid in zip(ordinals, rids, strict=True)
            if (resident := self.residents.get(o)) is not None and resident.push_tokens
        }
        await asyncio.to_thread(Registry(self.ctx.redis, self.ctx.keys).forget_push_tokens, gone)

    async def unreachable(self, ordinals: list[int], counted: bool = False) -> None:
        """Recipient-level failure: no channel of theirs can reach them; a volunteer must."""
        await self.ledger.mark(
            EventKind.failed,
            None,
            self.pairs(ordinals),
            issued_at=self.issued_at,
            at=self.ctx.clock.now(),
            stage=Stage.failed,
        )
        if not counted:
            self.report.failed += len(ordinals)

    async def clear_attempted(self, ordinals: Iterable[int]) -> None:
        await self.ledger.set_bits(f"attempted:{self.label}", ordinals, 0)


def _address(resident: Resident | None, kind: ChannelKind) -> str | None:
    if resident is None:
        return None
    if kind in (ChannelKind.sms, ChannelKind.voice):
        return resident.phone
    if kind is ChannelKind.push:
        return resident.push_tokens[0] if resident.push_tokens else None
    return None


def _rate_limit(ctx: Context, client: redis.asyncio.Redis, channel: Channel) -> SharedRateLimit | None:
    spec = channel.rate_limit()
    if spec is None:
        return None
    account, rate, burst = spec
    return SharedRateLimit(
        client, ctx.keys.rate_limit(account), ctx.keys.rate_limit_learnt(account), rate, burst, ctx.clock
    )


def next_channel_for(
    resident: Resident | None, alert: Alert, failed: ChannelKind, settings: Settings
) -> ChannelKind | None:
    """The resident's next channel after ``failed`` that the alert uses and a provider serves."""
    if resident is None:
        return None
    order = resident.channels
    after = order[order.index(failed) + 1 :] if failed in order else []
    return next((c for c in after if c in alert.channels and available(c, settings)), None)


def schedule_batches(
    ctx: Context,
    alert: Alert,
    kind: ChannelKind,
    ordinals: list[int],
    round_: int = 0,
    delay: int = 0,
    pass_: int = 0,
) -> int:
    """Queue batches for some recipients (a fallback channel, a later retry, an escalation round),
    each once: a batch of the same recipients, channel, round and pass that is still to run is not
    queued twice. Returns how many batches there are."""
    queue = ctx.queue(level_queue(alert.level, vulnerable=True))
    kwargs: dict[str, Any] = {
        "job_timeout": 900,
        "result_ttl": 3600,
        "failure_ttl": ALERT_RETENTION_SECONDS,
        "retry": until_done(),
    }
    at = datetime.now(UTC) + timedelta(seconds=delay) if delay else None  # RQ's scheduler keeps real time
    ordered = sorted(ordinals)
    size = ctx.settings.batch_size
    label = channel_label(kind, round_)
    for i in range(0, len(ordered), size):
        ranges = to_ranges(ordered[i : i + size])
        job_id = f"{ctx.keys.ns}-{batch_name(alert.id, label, ranges)}" + (f"-p{pass_}" if pass_ else "")
        enqueue_once(queue, BATCH_JOB, alert.id, kind.value, ranges, round_, pass_, job_id=job_id, at=at, **kwargs)
    return (len(ordered) + size - 1) // size


async def channel_failed(
    ctx: Context,
    client: redis.asyncio.Redis,
    alert: Alert,
    index: RosterIndex,
    kind: ChannelKind,
    ordinals: list[int],
    error_code: int | None,
    round_: int = 0,
) -> BatchReport:
    """A provider reported that messages did not arrive: record it and move on to the next channel
    (a message of an escalation round: record it only)."""
    run = BatchRun(ctx, client, alert, index, kind, round_)
    await run.failed(ordinals, error_code)
    return run.report


def _enqueue_reports(ctx: Context, alert: Alert, channel: Channel, accepted: list[Sent]) -> None:
    """Ask a provider that does not call back what became of these messages, a while from now."""
    queue = ctx.queue(FOLLOWUP_QUEUE)
    delay = timedelta(seconds=ctx.settings.push_report_delay_seconds)
    for i in range(0, len(accepted), 1000):
        chunk = [[s.ordinal, s.address, s.provider_ref] for s in accepted[i : i + 1000]]
        args = (alert.id, channel.kind.value, chunk)
        kwargs: dict[str, Any] = {"job_timeout": 300, "result_ttl": 3600, "retry": Retry(max=3, interval=[30, 60, 120])}
        if delay:
            queue.enqueue_in(delay, DELIVERY_REPORT_JOB, *args, **kwargs)
        else:
            queue.enqueue(DELIVERY_REPORT_JOB, *args, **kwargs)
