"""Pacing: the account's SMS rate shared by four worker processes, and a provider's own capacity.

* ``ratelimit``: four ``broadcast worker`` processes send one alert with
  ``BROADCAST_SMS_RATE_PER_SECOND`` set (parts a second for the whole account). The simulator
  counts the parts it accepts per 10 ms. Targets: the average over the run within ±5 % of the
  rate, and no one-second window (sliding, in 10 ms steps) more than 5 % above it. The alert is
  cut into batches of a sixteenth so that all four workers send at once.
* ``capacity``: the simulator sends on at most C messages a second (see channels.simulators.twilio).
  First as Twilio does it: what comes faster waits in the account's queue (up to four hours'
  worth); time to last message is from issuing (the plan job included) to when the simulator's
  last message leaves. Target: at most N/C × 1.05 + 5 s, nobody lost or sent twice. Then,
  reported, a provider that refuses (429) whatever it cannot send within 50 ms: no rate is
  configured, so the workers only learn its pace from its refusals.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from broadcast.composing.compose import SAMPLE_AREA, render
from broadcast.core.context import CONTROL_QUEUE, Context
from broadcast.core.models import ChannelKind, Language
from broadcast.running.benchmarks.common import Figure, areas_of_size, issue, result, run_jobs
from broadcast.running.benchmarks.environment import BenchEnvironment, environment
from broadcast.running.benchmarks.send import _outcome
from channels.simulators.twilio import TIMELINE_BUCKETS_PER_SECOND

RATE = 500.0  # parts a second
RATE_SECONDS = 20.0
TOLERANCE = 0.05
WORKERS = 4
REFUSING_QUEUE_SECONDS = 0.05  # a provider that refuses what it cannot send within 50 ms


def run_ratelimit(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """The ratelimit benchmark."""
    from broadcast.running.benchmarks.citywide import retire_citywide
    from broadcast.running.benchmarks.seed import seed

    env = environment(ctx)
    seed(env, args.residents)
    retire_citywide(env)
    probe = env.context()
    parts = render(_sample_alert(probe), Language.zh, ChannelKind.sms, SAMPLE_AREA, probe.settings).parts
    messages = int(RATE * RATE_SECONDS / parts)
    bctx = env.context(batch_size=max(50, messages // 16))
    alert = issue(bctx, areas_of_size(bctx, messages, digits=12))
    run_jobs(bctx, [CONTROL_QUEUE])
    with env.simulator() as sim:
        sim.reset()
        with env.workers(WORKERS, sms_rate_per_second=RATE) as running:
            for process in running:
                process.wait(timeout=RATE_SECONDS * 4 + 60)
        stats = sim.stats()
        outcome = _outcome(bctx, alert, stats)
    timeline = dict(stats["parts_timeline"])
    first, last = min(timeline), max(timeline)
    span = (last - first + 1) / TIMELINE_BUCKETS_PER_SECOND
    average = stats["parts"] / span
    window = TIMELINE_BUCKETS_PER_SECOND
    sums = [sum(timeline.get(b, 0) for b in range(start, start + window)) for start in range(first, last - window + 2)]
    busiest = max(sums) if sums else stats["parts"]
    figures = {
        "average_parts_per_second": Figure(
            round(average, 1),
            "parts/s",
            f"within ±{TOLERANCE:.0%} of {RATE:.0f}",
            abs(average / RATE - 1) <= TOLERANCE,
            baseline=RATE,
            baseline_label="the configured account rate",
        ),
        "busiest_second_parts": Figure(
            busiest,
            "parts",
            f"<= {RATE * (1 + TOLERANCE):.0f} (the rate + {TOLERANCE:.0%}) in any one-second window",
            busiest <= RATE * (1 + TOLERANCE),
            baseline=RATE,
            baseline_label="the configured account rate",
        ),
        "everyone_sent_once": Figure(
            outcome["accepted_by_simulator"],
            "messages",
            "= the alert's recipients, none twice",
            outcome["accepted_by_simulator"] == outcome["messages"] == outcome["sent"],
        ),
    }
    return result(
        "ratelimit",
        "broadcast bench ratelimit",
        figures,
        workers=WORKERS,
        seconds=round(span, 1),
        parts_per_message=parts,
        outcome=outcome,
        per_second=[sum(timeline.get(b, 0) for b in range(s, s + window)) for s in range(first, last + 1, window)],
    )


def run_capacity(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """The capacity benchmark: a provider that queues (as Twilio does), then one that refuses."""
    from broadcast.running.benchmarks.citywide import retire_citywide
    from broadcast.running.benchmarks.seed import seed

    env = environment(ctx)
    seed(env, args.residents)
    retire_citywide(env)
    capacity, wanted = args.capacity, args.capacity_messages
    queueing = _at_capacity(env, capacity, wanted, queue_seconds=None)
    refusing = _at_capacity(
        env, capacity, wanted // 2, queue_seconds=REFUSING_QUEUE_SECONDS, refuse_first=args.refuse_first
    )
    figures = {
        "seconds_to_last_message": Figure(
            queueing["seconds"],
            "s",
            f"<= N/C x 1.05 + 5 s = {queueing['bound']:.1f} s (provider queues, sends C a second)",
            queueing["seconds"] <= queueing["bound"],
            baseline=queueing["n_over_c"],
            baseline_label="N/C: the provider's capacity, fully used",
        ),
        "everyone_sent_once": Figure(
            queueing["accepted_by_simulator"],
            "messages",
            "= the alert's recipients, none twice (both providers)",
            all(r["accepted_by_simulator"] == r["messages"] == r["sent"] for r in (queueing, refusing)),
        ),
        "seconds_to_last_message_refusing": Figure(
            refusing["seconds"],
            "s",
            f"reported: a provider that refuses what it cannot send at once (bound would be {refusing['bound']:.1f} s)",
            True,
            baseline=refusing["n_over_c"],
            baseline_label="N/C",
        ),
    }
    return result(
        "capacity",
        f"broadcast bench capacity --capacity {capacity:g} --capacity-messages {wanted}",
        figures,
        capacity_per_second=capacity,
        workers=WORKERS,
        runs={"queueing": queueing, "refusing": refusing},
    )


def _at_capacity(
    env: BenchEnvironment, capacity: float, wanted: int, queue_seconds: float | None, refuse_first: int = 0
) -> dict[str, Any]:
    """Issue an alert of about ``wanted`` people and send it with four workers to a provider of ``capacity``
    (which also refuses its first ``refuse_first`` creates)."""
    bctx = env.context()
    with env.simulator(capacity=capacity, queue_seconds=queue_seconds, refuse_first=refuse_first) as sim:
        sim.reset()
        started_at = time.time()
        alert = issue(bctx, areas_of_size(bctx, wanted))
        with env.workers(WORKERS) as running:
            for process in running:
                process.wait(timeout=wanted / capacity * 4 + 120)
        stats = sim.stats()
        outcome = _outcome(bctx, alert, stats)
    last = max(stats["last_departure"], (stats["timeline"][-1][0] + 1) / TIMELINE_BUCKETS_PER_SECOND)
    n = outcome["messages"]
    return {
        **outcome,
        "seconds": round(last - started_at, 1),
        "n_over_c": round(n / capacity, 1),
        "bound": round(n / capacity * 1.05 + 5, 1),
        "queue_seconds": queue_seconds if queue_seconds is not None else "Twilio's (4 h)",
        "refused_429": stats["rejected"].get("20429", 0),
    }


def _sample_alert(ctx: Context) -> Any:
    from broadcast.core.models import Alert, AlertStatus, EventType, Level, Target
    from broadcast.running.benchmarks.common import TYPHOON

    return Alert(
        id="0",
        event=EventType.typhoon,
        level=Level.red,
        target=Target(areas=["310000000000"]),
        channels=[ChannelKind.sms],
        params=TYPHOON,
        exercise=True,
        composed_by="bench-officer",
        status=AlertStatus.issued,
        created_at=ctx.clock.now(),
    )
