"""The import benchmark: ``broadcast residents import`` of a 200,000-row file, its time and the
import process's peak memory, beside the same import of a quarter of the file.

A committee's records can hold tens of thousands of people and a district's file hundreds of
thousands of rows; an import that holds the whole file in memory grows with it. The figure that
says it does not is the ratio of the two peaks (target: at most 1.25, memory stays flat), and the
peak itself (target: at most 250 MB). Each import runs as a ``broadcast`` process of its own, into
an empty namespace of the run's Redis (removed afterwards), so nothing else shares its figures.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audiences.areas import AreaLevel, AreaTree, read_divisions, store_areas
from audiences.population import committees
from broadcast.core.context import Context
from broadcast.core.keys import Keys
from broadcast.running.benchmarks.seed import _batches, machine

ROWS = 200_000
DISTRICT = "310115000000"  # 浦东新区: enough committees for 200,000 people
TARGET_PEAK_MB = 250.0
TARGET_FLATNESS = 1.25
COLUMNS = [
    "external_id",
    "name",
    "phone",
    "language",
    "building",
    "room",
    "elderly",
    "elderly_alone",
    "channels",
    "push_tokens",
]
# The import runs in a child that reports its own peak resident memory (ru_maxrss, in KiB on Linux).
CHILD = (
    "import resource, sys\n"
    "from broadcast.running.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def write_file(path: Path, tree: AreaTree, rows: int) -> list[Any]:
    """A residents CSV of ``rows`` generated people in the district; returns their grids and buildings."""
    areas: list[Any] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for part in committees(tree, DISTRICT, rows, seed=7):
            areas += part.areas
            for r in part.residents:
                where = [r.phone or "", r.language.value, r.building, r.room]
                flags = ["是" if r.elderly else "否", "是" if r.elderly_alone else "否"]
                reach = [";".join(c.value for c in r.channels), ";".join(r.push_tokens)]
                writer.writerow([r.external_id, r.name, *where, *flags, *reach])
    return areas


def timed_import(env: Any, namespace: str, path: Path) -> dict[str, Any]:
    """Import ``path`` with a ``broadcast`` process of its own; its seconds and peak memory."""
    argv = [sys.executable, "-c", CHILD, "residents", "import", str(path), "--json"]
    process = env.start(f"import-{path.stem}", argv, {**env.env(), "BROADCAST_NAMESPACE": namespace})
    started = time.perf_counter()
    code = process.wait(900)
    seconds = time.perf_counter() - started
    log = process.log_path.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        raise RuntimeError(f"the import of {path.name} failed: {log[-2000:]}")
    peak = next(int(line.split()[1]) for line in log.splitlines() if line.startswith("peak_kib"))
    return {"rows": _rows(path), "seconds": round(seconds, 1), "peak_mb": round(peak / 1024, 1)}


def _rows(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in handle) - 1


def run(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """Import a quarter of the file and then the whole file, each into a fresh namespace."""
    from broadcast.running.benchmarks.environment import environment

    env = environment(ctx)
    rows = int(getattr(args, "import_rows", ROWS))
    client = env.client
    divisions = read_divisions()
    results = []
    for size, label in ((rows // 4, "quarter"), (rows, "whole")):
        namespace = f"{env.namespace}-import-{uuid.uuid4().hex[:6]}"
        keys = Keys(namespace)
        try:
            store_areas(client, keys, divisions)
            tree = AreaTree.load(client, keys)
            path = env.workdir / f"residents-{label}.csv"
            areas = write_file(path, tree, size)
            store_areas(client, keys, [a for a in areas if a.level in (AreaLevel.grid, AreaLevel.building)])
            results.append(timed_import(env, namespace, path))
        finally:
            for batch in _batches(client.scan_iter(match=f"{namespace}:*", count=5000)):
                client.delete(*batch)
    quarter, whole = results
    flatness = whole["peak_mb"] / quarter["peak_mb"]
    return {
        "benchmark": "import",
        "command": f"broadcast bench import --import-rows {rows}",
        "quarter": quarter,
        "whole": whole,
        "rows_per_second": round(whole["rows"] / whole["seconds"]),
        "peak_ratio_whole_to_quarter": round(flatness, 2),
        "targets": {"peak_mb": TARGET_PEAK_MB, "peak_ratio_whole_to_quarter": TARGET_FLATNESS},
        "meets_targets": whole["peak_mb"] <= TARGET_PEAK_MB and flatness <= TARGET_FLATNESS,
        "machine": machine(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
