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

from broadcast.context import Context

BENCHMARKS: dict[str, str] = {
    "seed": "audiences.seed_bench:run",  # generate and load a million residents
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
        if ctx.embedded is not None and ctx.embedded.started_here:
            ctx.embedded.stop()  # benchmarks bring their own servers; leave no daemon behind
    return 0 if ok else 1


def register(sub: Any) -> None:
    """Add ``broadcast bench`` to the parser."""
    bench = sub.add_parser("bench", help="run benchmarks and write their figures under bench/results/")
    bench.add_argument("name", choices=[*BENCHMARKS, "all"])
    bench.add_argument("--residents", type=int, default=1_000_000, help="population size for the seed benchmark")
    bench.add_argument("--results", default="bench/results", help="directory for the JSON figures")
    bench.set_defaults(handler=cmd_bench)
