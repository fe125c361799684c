"""Send throughput: SMS through our channel code (twilio's asyncio client) to the Twilio simulator.

The simulator runs in a process of its own with no latency, callbacks or replies; rates are what
it accepted, from its first to its last message. Measured in the same run:

* baseline A, the machine's limit: a bare aiohttp loop posting the same requests (same form, same
  auth, same concurrency) from this process, with nothing rendered, recorded or rate limited;
* baseline B, the obvious design: one RQ job per message (the same batch job with batches of one),
  run by RQ's SimpleWorker;
* one ``broadcast worker`` process, then four, each on an alert of its own.

Targets: one worker at least 0.7 × A and at least 10 × B.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp

from broadcast.composing.compose import SAMPLE_AREA, confirmation_link, render, with_link
from broadcast.core.context import CONTROL_QUEUE, QUEUE_ORDER, Context
from broadcast.core.models import Alert, ChannelKind, Language
from broadcast.core.tokens import link_token
from broadcast.following.progress import alert_progress
from broadcast.running.benchmarks.common import Figure, areas_of_size, issue, result, run_jobs
from broadcast.running.benchmarks.environment import BENCH_SIMULATOR_TOKEN, BenchEnvironment, Simulator, environment
from channels.twilio.account import SIMULATOR_ACCOUNT_SID, SIMULATOR_FROM
from channels.twilio.sms import status_callback_url

TARGET_OF_BARE = 0.7
TARGET_OF_PER_MESSAGE = 10.0


def rate(stats: dict[str, Any]) -> float:
    """Messages a second the simulator accepted, from its first to its last 10 ms."""
    timeline = stats["timeline"]
    if not timeline:
        return 0.0
    span = (timeline[-1][0] - timeline[0][0] + 1) / 100
    return float(stats["created"]) / span


def run(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    from broadcast.running.benchmarks.citywide import retire_citywide
    from broadcast.running.benchmarks.seed import seed

    env = environment(ctx)
    seed(env, args.residents)
    retire_citywide(env)
    one, four, bare_n, per_message_n = args.send_messages, args.send_messages * 2, args.send_messages, 2_000
    with env.simulator() as sim:
        bare = bare_loop(env, sim, bare_n)
        per_message = per_message_jobs(env, sim, per_message_n)
        single = workers(env, sim, one, 1)
        quad = workers(env, sim, four, 4)
    figures = {
        "one_worker_vs_bare": Figure(
            round(single["rate"]),
            "messages/s",
            f">= {TARGET_OF_BARE} x bare aiohttp loop",
            single["rate"] >= TARGET_OF_BARE * bare["rate"],
            baseline=round(bare["rate"]),
            baseline_label="A: bare aiohttp loop, same requests, same simulator",
        ),
        "one_worker_vs_job_per_message": Figure(
            round(single["rate"]),
            "messages/s",
            f">= {TARGET_OF_PER_MESSAGE:.0f} x one RQ job per message",
            single["rate"] >= TARGET_OF_PER_MESSAGE * per_message["rate"],
            baseline=round(per_message["rate"]),
            baseline_label="B: one RQ job per message, SimpleWorker",
        ),
        "four_workers": Figure(
            round(quad["rate"]),
            "messages/s",
            "reported beside A (four processes on two cores share them with the simulator and Redis)",
            True,
            baseline=round(bare["rate"]),
            baseline_label="A: bare aiohttp loop",
        ),
        "everyone_sent_once": Figure(
            sum(r["accepted_by_simulator"] for r in (per_message, single, quad)),
            "messages",
            "= the alerts' recipients, none twice, none possibly duplicated (every worker run)",
            all(
                r["accepted_by_simulator"] == r["messages"] == r["sent"] and r["possible_duplicates"] == 0
                for r in (per_message, single, quad)
            ),
        ),
    }
    return result(
        "send",
        f"broadcast bench send --send-messages {args.send_messages}",
        figures,
        runs={"bare": bare, "job_per_message": per_message, "one_worker": single, "four_workers": quad},
    )


def sample_requests(ctx: Context, alert: Alert, count: int) -> list[dict[str, str]]:
    """The form our SMS channel posts, for ``count`` recipients (text rendered once, link per recipient)."""
    from broadcast.delivering.deliver import read_rids

    rendered = {lang: render(alert, lang, ChannelKind.sms, SAMPLE_AREA, ctx.settings) for lang in Language}

    async def phones() -> list[str]:
        from audiences.residents import load_residents

        client = ctx.async_redis()
        try:
            rids = await read_rids(client, ctx.keys, alert.id, list(range(count)))
            records = await load_residents(client, ctx.keys, rids)
            return [records[r].phone or "" for r in rids if r in records]
        finally:
            await client.aclose()

    forms = []
    for ordinal, phone in enumerate(asyncio.run(phones())):
        text = with_link(
            rendered[Language.zh], confirmation_link(ctx.settings, link_token(ctx.secret, alert.id, ordinal))
        )
        forms.append(
            {
                "To": phone,
                "Body": text.text,
                "From": SIMULATOR_FROM,
                "StatusCallback": status_callback_url(ctx.settings, alert.id, ordinal),
                "ValidityPeriod": "36000",
            }
        )
    return forms


def bare_loop(env: BenchEnvironment, sim: Simulator, count: int) -> dict[str, Any]:
    """Baseline A: post prepared requests with aiohttp, as many in flight as our sender allows."""
    ctx = env.context()
    alert = issue(ctx, areas_of_size(ctx, count))
    run_jobs(ctx, [CONTROL_QUEUE])
    forms = sample_requests(ctx, alert, count)
    for name in QUEUE_ORDER[1:]:
        ctx.queue(name).empty()  # this alert's batches are not sent: the loop sends its requests
    concurrency = ctx.settings.send_concurrency
    url = f"{sim.url}/2010-04-01/Accounts/{SIMULATOR_ACCOUNT_SID}/Messages.json"

    async def post_all() -> int:
        auth = aiohttp.BasicAuth(SIMULATOR_ACCOUNT_SID, BENCH_SIMULATOR_TOKEN)
        accepted = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            pending = iter(forms)

            async def lane() -> None:
                nonlocal accepted
                for form in pending:
                    async with session.post(url, data=form, auth=auth) as response:
                        await response.read()
                        accepted += response.status == 201

            await asyncio.gather(*(lane() for _ in range(concurrency)))
        return accepted

    sim.reset()
    started = time.perf_counter()
    accepted = asyncio.run(post_all())
    seconds = time.perf_counter() - started
    stats = sim.stats()
    return {"messages": len(forms), "accepted": accepted, "seconds": round(seconds, 2), "rate": round(rate(stats))}


def per_message_jobs(env: BenchEnvironment, sim: Simulator, count: int) -> dict[str, Any]:
    """Baseline B: the same batch job, one message per job, run by RQ's SimpleWorker in this process."""
    ctx = env.context(batch_size=1)
    alert = issue(ctx, areas_of_size(ctx, count, digits=12))
    run_jobs(ctx, [CONTROL_QUEUE])
    sim.reset()
    started = time.perf_counter()
    run_jobs(ctx, QUEUE_ORDER)
    seconds = time.perf_counter() - started
    return {**_outcome(ctx, alert, sim.stats()), "seconds": round(seconds, 2)}


def workers(env: BenchEnvironment, sim: Simulator, count: int, processes: int) -> dict[str, Any]:
    """``processes`` real ``broadcast worker`` processes sending one planned alert of about ``count`` people."""
    ctx = env.context()
    alert = issue(ctx, areas_of_size(ctx, count))
    run_jobs(ctx, [CONTROL_QUEUE])
    sim.reset()
    started = time.perf_counter()
    with env.workers(processes) as running:
        for process in running:
            process.wait(timeout=120 + count / 100)
    seconds = time.perf_counter() - started
    return {**_outcome(ctx, alert, sim.stats()), "processes": processes, "seconds": round(seconds, 2)}


def _outcome(ctx: Context, alert: Alert, stats: dict[str, Any]) -> dict[str, Any]:
    """What the simulator accepted against what the ledger says was sent: nobody lost, nobody twice."""

    async def totals() -> dict[str, Any]:
        client = ctx.async_redis()
        try:
            return dict((await alert_progress(client, ctx.keys, alert))["totals"])
        finally:
            await client.aclose()

    t = asyncio.run(totals())
    return {
        "alert": alert.id,
        "messages": t["targeted"],
        "sent": t["sent"],
        "failed": t["failed"],
        "accepted_by_simulator": stats["created"],
        "possible_duplicates": t["possible_duplicates"],
        "rejected": stats["rejected"],
        "rate": round(rate(stats)),
    }
