"""A citywide red warning to everyone in the seeded registry: planned and queued (the ``plan``
benchmark), then given the state a sent alert has, for the progress, memory and ingest benchmarks.

Baseline: ``Queue.enqueue`` once per recipient (the obvious design), timed on a sample of 20,000
and scaled to the roster. Targets: planning and queueing in at most 5 s, and at least 50 × faster
than the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from rq import Retry

from broadcast import lifecycle
from broadcast.core.context import CONTROL_QUEUE, QUEUE_ORDER, Context, set_current
from broadcast.core.jobs import BATCH_JOB
from broadcast.core.keys import ALERT_RETENTION_SECONDS, as_text
from broadcast.core.models import ChannelKind, EventKind
from broadcast.delivering.ledger import Ledger, roster_index
from broadcast.issuing import alerts
from broadcast.running.benchmarks.common import CITY, Figure, issue, result
from broadcast.running.benchmarks.environment import BenchEnvironment, environment
from broadcast.running.worker import InProcessWorker, worker_options

TARGET_SECONDS = 5.0
TARGET_SPEEDUP = 50.0
BASELINE_SAMPLE = 20_000
DELIVERED_SHARE = 0.98  # the rest "undelivered", as a carrier reports for phones that are off
MARK_CHUNK = 1_000


def run(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """The plan benchmark."""
    env = environment(ctx)
    from broadcast.running.benchmarks.seed import seed

    seed(env, args.residents)
    bctx = env.context()
    baseline = enqueue_per_recipient(bctx, BASELINE_SAMPLE)
    planned = plan_citywide(env)
    scaled = baseline * planned["targeted"] / BASELINE_SAMPLE
    seconds = planned["seconds"]
    figures = {
        "plan_and_enqueue_seconds": Figure(
            round(seconds, 2),
            "s",
            f"<= {TARGET_SECONDS} s and >= {TARGET_SPEEDUP:.0f} x faster than the baseline",
            seconds <= TARGET_SECONDS and scaled >= TARGET_SPEEDUP * seconds,
            baseline=round(scaled, 1),
            baseline_label=f"Queue.enqueue per recipient, {BASELINE_SAMPLE:,} timed, scaled to the roster",
            lower_is_better=True,
        )
    }
    return result("plan", f"broadcast bench plan --residents {args.residents}", figures, **planned)


def enqueue_per_recipient(ctx: Context, sample: int) -> float:
    """Seconds to enqueue ``sample`` one-recipient jobs one call at a time (then removed again)."""
    queue = ctx.queue("baseline-per-recipient")
    options: dict[str, Any] = {
        "job_timeout": 900,
        "result_ttl": 3600,
        "failure_ttl": ALERT_RETENTION_SECONDS,
        "retry": Retry(max=5, interval=[2, 10, 30, 60, 120]),
    }
    started = time.perf_counter()
    for ordinal in range(sample):
        queue.enqueue(BATCH_JOB, "0", "sms", [[ordinal, ordinal + 1]], **options)
    seconds = time.perf_counter() - started
    queue.empty()
    queue.delete(delete_jobs=True)
    return seconds


def plan_citywide(env: BenchEnvironment) -> dict[str, Any]:
    """Issue the citywide red warning and run its plan job (RQ, in this process); the plan's figures."""
    if "citywide" in env.facts:
        return dict(env.facts["citywide"])
    ctx = env.context()
    before = int(ctx.redis.info("memory")["used_memory"])
    alert = issue(ctx, [CITY])
    set_current(ctx)
    try:
        worker = InProcessWorker([ctx.queue(CONTROL_QUEUE)], **worker_options(ctx))
        started = time.perf_counter()
        worker.work(burst=True, logging_level="WARNING")
        seconds = time.perf_counter() - started
    finally:
        set_current(None)
    plan = {as_text(k): int(v) for k, v in ctx.redis.hgetall(ctx.keys.plan(alert.id)).items()}
    queued = sum(ctx.queue(name).count for name in QUEUE_ORDER[1:])
    facts = {
        "alert": alert.id,
        "targeted": plan["targeted"],
        "batches": plan["batches"],
        "jobs_queued": queued,
        "seconds": seconds,
        "memory_before_alert": before,
    }
    if queued != plan["batches"]:
        raise RuntimeError(f"{plan['batches']} batches planned but {queued} jobs queued")
    env.facts["citywide"] = facts
    return dict(facts)


def fill_citywide(env: BenchEnvironment) -> dict[str, Any]:
    """Give the citywide alert the state sending leaves: everyone attempted and sent, most delivered.

    Written through the ledger's own calls (the ones batches and status callbacks make), a thousand
    recipients a call instead of fifty, since what is stored is the same.
    """
    facts = plan_citywide(env)
    if facts.get("filled"):
        return facts
    ctx = env.context()
    alert = alerts.get_alert(ctx, facts["alert"])
    issued_at = alert.issued_at or alert.created_at

    async def mark() -> None:
        client = ctx.async_redis()
        try:
            index = await roster_index(client, ctx.keys, alert.id)
            assert index is not None
            ledger = Ledger(client, ctx.keys, alert.id)
            now = ctx.clock.now()
            cut = int(index.size * DELIVERED_SHARE)
            for start in range(0, index.size, MARK_CHUNK):
                ordinals = range(start, min(index.size, start + MARK_CHUNK))
                pairs = [(o, index.community_index(o)) for o in ordinals]
                await ledger.set_bits(f"attempted:{ChannelKind.sms.value}", ordinals)
                await ledger.mark(EventKind.sent, ChannelKind.sms, pairs, issued_at=issued_at, at=now)
                delivered = [p for p in pairs if p[0] < cut]
                lost = [p for p in pairs if p[0] >= cut]
                await ledger.mark(EventKind.delivered, ChannelKind.sms, delivered, issued_at=issued_at, at=now)
                await ledger.mark(
                    EventKind.failed, ChannelKind.sms, lost, issued_at=issued_at, at=now, error_code=30003
                )
        finally:
            await client.aclose()

    started = time.perf_counter()
    asyncio.run(mark())
    facts["fill_seconds"] = round(time.perf_counter() - started, 1)
    facts["filled"] = True
    env.facts["citywide"] = facts
    return dict(facts)


def retire_citywide(env: BenchEnvironment) -> None:
    """Drop the citywide alert's unsent batches and cancel it, so later benchmarks' workers see only their own."""
    facts = env.facts.get("citywide")
    if not facts or facts.get("retired"):
        return
    ctx = env.context()
    for name in QUEUE_ORDER:
        ctx.queue(name).empty()
    lifecycle.cancel(ctx, facts["alert"], "bench-officer", origin="bench")
    facts["retired"] = True
