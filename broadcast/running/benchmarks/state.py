"""What a citywide alert weighs and how fast its progress reads, once it has been sent.

The alert is the citywide red warning of the ``plan`` benchmark, with the state sending leaves
(everyone attempted and sent, 98 % delivered, the rest failed) and whatever confirmations the
``ingest`` benchmark stored.

* ``progress``: the duty officer's view, per district, street and committee, served by one
  ``broadcast serve`` process (``GET /api/v1/alerts/{id}``, read as a city-wide duty officer) and,
  beside it, the same document built in this process (``alert_progress``). Target: at most 50 ms
  (median of 20 requests).
* ``memory``: Redis memory the alert added beyond the registry (roster, area ranges, batches and
  their jobs, bitmaps, counters, time slots), per recipient. Target: at most 64 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
import urllib.request
from collections import Counter
from typing import Any

from broadcast.core.context import QUEUE_ORDER, Context
from broadcast.core.keys import as_text
from broadcast.following.progress import alert_progress
from broadcast.issuing import alerts
from broadcast.running.benchmarks.citywide import fill_citywide
from broadcast.running.benchmarks.common import Figure, median, percentile, result
from broadcast.running.benchmarks.environment import BenchEnvironment, environment

TARGET_PROGRESS_MS = 50.0
TARGET_BYTES_PER_RECIPIENT = 64.0
REQUESTS = 20


def run_progress(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """The progress benchmark."""
    from broadcast.running.benchmarks.seed import seed

    env = environment(ctx)
    seed(env, args.residents)
    facts = fill_citywide(env)
    bctx = env.context()
    alert = alerts.get_alert(bctx, facts["alert"])

    async def in_process() -> tuple[list[float], dict[str, Any]]:
        client = bctx.async_redis()
        try:
            times, document = [], {}
            for _ in range(REQUESTS + 1):
                started = time.perf_counter()
                document = await alert_progress(client, bctx.keys, alert, ("district", "street"))
                times.append((time.perf_counter() - started) * 1000)
            return times[1:], document  # the first also fills the cache of area names
        finally:
            await client.aclose()

    local, document = asyncio.run(in_process())
    server = env.start("web", [sys.executable, "-m", "broadcast", "serve"])
    try:
        server.ready_line("broadcast serving at ")
        url = f"http://127.0.0.1:{env.web_port}/api/v1/alerts/{alert.id}"
        token = _city_officer_token(env)
        served, size = _get(url + "?areas=district,street", token)
        full, full_size = _get(url, token)
    finally:
        server.stop()
    api_ms = median(served)
    areas = document["areas"]
    figures = {
        "api_ms": Figure(
            round(api_ms, 1),
            "ms",
            f"<= {TARGET_PROGRESS_MS:.0f} ms (median of {REQUESTS}; GET …?areas=district,street)",
            api_ms <= TARGET_PROGRESS_MS,
        ),
        "in_process_ms": Figure(round(median(local), 1), "ms", "reported (alert_progress, no HTTP)", True),
        "api_with_committees_ms": Figure(
            round(median(full), 1), "ms", f"reported (GET …: every committee's row as well, {full_size:,} bytes)", True
        ),
    }
    return result(
        "progress",
        "broadcast bench progress",
        figures,
        alert=alert.id,
        recipients=document["totals"]["targeted"],
        totals=document["totals"],
        rows={level: len(rows) for level, rows in areas.items()},
        response_bytes=size,
        api_ms_p95=round(percentile(served, 0.95), 1),
        runs_ms={"api": [round(x, 1) for x in served], "in_process": [round(x, 1) for x in local]},
    )


def _city_officer_token(env: BenchEnvironment) -> str:
    """A bearer token of a duty officer for the whole city: the progress is read as they read it."""
    from audiences.areas import AreaTree
    from broadcast.running.audiences_cli import CITY
    from broadcast.web.console.api_tokens import create_token
    from broadcast.web.console.users import Role, new_user, store_user

    ctx = env.context()
    tree = AreaTree.current(ctx.redis, ctx.keys)
    now = ctx.clock.now()
    user = new_user("bench-officer", Role.duty_officer, secrets.token_urlsafe(18), tree, now=now, areas=[CITY])
    store_user(ctx.redis, ctx.keys, user, replace=True)
    return create_token(ctx.redis, ctx.keys, user.name, "bench", now)


def _get(url: str, token: str) -> tuple[list[float], int]:
    """Milliseconds of REQUESTS GETs (after one that fills the web process's caches), and the body's size."""
    times, size = [], 0
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    for _ in range(REQUESTS + 1):
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            size = len(response.read())
        times.append((time.perf_counter() - started) * 1000)
    return times[1:], size


def run_memory(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """The memory benchmark."""
    from broadcast.running.benchmarks.seed import seed

    env = environment(ctx)
    seed(env, args.residents)
    facts = fill_citywide(env)
    bctx = env.context()
    used = int(bctx.redis.info("memory")["used_memory"])
    added = used - facts["memory_before_alert"]
    per_recipient = added / facts["targeted"]
    figures = {
        "bytes_per_recipient": Figure(
            round(per_recipient, 1),
            "bytes",
            f"<= {TARGET_BYTES_PER_RECIPIENT:.0f} bytes beyond the registry",
            per_recipient <= TARGET_BYTES_PER_RECIPIENT,
        )
    }
    return result(
        "memory",
        "broadcast bench memory",
        figures,
        alert=facts["alert"],
        recipients=facts["targeted"],
        redis_bytes_added=added,
        by_key=_alert_memory(bctx, facts["alert"]),
        note="used_memory after planning and recording minus before issuing; RQ's jobs of the alert still queued",
    )


def _alert_memory(ctx: Context, alert_id: str) -> dict[str, int]:
    """Bytes per kind of key of one alert, and of its queued jobs."""
    totals: Counter[str] = Counter()
    keys = [as_text(k) for k in ctx.redis.scan_iter(match=ctx.keys.alert_keys(alert_id), count=5000)]
    jobs = [f"rq:job:{j}" for name in QUEUE_ORDER for j in ctx.queue(name).job_ids]
    with ctx.redis.pipeline(transaction=False) as pipe:
        for key in keys + jobs:
            pipe.memory_usage(key, samples=0)
        sizes = pipe.execute()
    for key, size in zip(keys + jobs, sizes, strict=True):
        kind = "rq jobs" if key.startswith("rq:job:") else key.split(f":alert:{alert_id}:", 1)[1]
        totals[kind] += int(size or 0)
    totals["rq queues"] = sum(int(ctx.redis.memory_usage(ctx.queue(n).key, samples=0) or 0) for n in QUEUE_ORDER)
    return dict(totals.most_common())
