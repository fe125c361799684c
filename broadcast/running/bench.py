"""``broadcast bench NAME|all``: benchmarks, not tests. Each prints its figures and writes them as
JSON to ``bench/results/{name}.json``, so the README's figures can be traced to a run.

A benchmark is ``run(ctx, args) -> dict`` with a ``meets_targets`` entry; the command exits 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broadcast.core.context import Context
from broadcast.running.benchmarks.environment import close_environment

# In the order ``all`` runs them: each reuses what the ones before it built (the seeded registry,
# the citywide alert), and builds it itself when run alone.
BENCHMARKS: dict[str, str] = {
    "seed": "broadcast.running.benchmarks.seed:run",  # generate and load a million residents
    "plan": "broadcast.running.benchmarks.citywide:run",  # plan and queue a citywide warning
    "ingest": "broadcast.running.benchmarks.ingest:run",  # signed reply webhooks a second, and their latency
    "progress": "broadcast.running.benchmarks.state:run_progress",  # the citywide alert's progress, per area
    "memory": "broadcast.running.benchmarks.state:run_memory",  # what the citywide alert weighs in Redis
    "send": "broadcast.running.benchmarks.send:run",  # messages a second, one worker and four
    "ratelimit": "broadcast.running.benchmarks.pacing:run_ratelimit",  # an account rate shared by four workers
    "capacity": "broadcast.running.benchmarks.pacing:run_capacity",  # time to last message at a provider's capacity
    "import": "broadcast.running.benchmarks.imports:run",  # a 200,000-row residents file: time, importer's peak memory
    "faults": "broadcast.running.benchmarks.faults:run",  # killed workers and web app, Redis restarts, refusals
}


def _load(name: str) -> Callable[[Context, argparse.Namespace], dict[str, Any]]:
    module, _, function = BENCHMARKS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def cmd_bench(ctx: Context, args: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
        for name in names:
            figures = _load(name)(ctx, args)
            (results / f"{name}.json").write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n")
            print(json.dumps(figures, ensure_ascii=False, indent=2))
            ok &= bool(figures.get("meets_targets", True))
    finally:
        close_environment()
        if ctx.embedded is not None and ctx.embedded.started_here:
            ctx.embedded.stop()  # benchmarks bring their own servers; leave no daemon behind
    return 0 if ok else 1


def register(sub: Any) -> None:
    """Add ``broadcast bench`` to the parser."""
    bench = sub.add_parser("bench", help="run benchmarks and write their figures under bench/results/")
    bench.add_argument("name", choices=[*BENCHMARKS, "all"])
    bench.add_argument("--residents", type=int, default=1_000_000, help="population size for the seed benchmark")
    bench.add_argument("--send-messages", type=int, default=40_000, help="messages for one worker (four get twice)")
    bench.add_argument("--capacity", type=float, default=2_000, help="the simulated provider's messages a second")
    bench.add_argument("--capacity-messages", type=int, default=60_000, help="messages for the capacity benchmark")
    bench.add_argument("--import-rows", type=int, default=200_000, help="rows of the import benchmark's file")
    bench.add_argument(
        "--refuse-first",
        type=int,
        default=0,
        help="capacity: the refusing provider also answers its first N creates 429, however fast the machine",
    )
    bench.add_argument("--fault-residents", type=int, default=20_000, help="recipients of each faults scenario")
    bench.add_argument("--fault-capacity", type=float, default=600, help="the refusing provider's messages a second")
    bench.add_argument("--results", default="bench/results", help="directory for the JSON figures")
    bench.set_defaults(handler=cmd_bench)
