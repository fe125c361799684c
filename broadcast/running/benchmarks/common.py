"""What the benchmarks share: issuing alerts the way officers do, choosing areas by size, and the
shape of a result (each figure beside its baseline, its target and whether it is met)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broadcast import lifecycle
from broadcast.core.context import Context
from broadcast.core.keys import as_text
from broadcast.core.models import Alert, AlertDraft, AlertStatus, ChannelKind, EventType, Level, Target
from broadcast.running.benchmarks.seed import machine
from broadcast.running.worker import InProcessWorker, worker_options

CITY = "310000000000"
TYPHOON = {
    "typhoon_number": "6",
    "typhoon_name": "烟花",
    "typhoon_name_en": "In-fa",
    "eta": "今夜",
    "eta_en": "tonight",
    "wind_force": "12",
}


def issue(ctx: Context, areas: Sequence[str], level: Level = Level.red, **fields: Any) -> Alert:
    """Compose a typhoon warning and approve it as a second officer, as the console does."""
    draft = AlertDraft(
        event=EventType.typhoon,
        level=level,
        target=Target(areas=list(areas)),
        channels=[ChannelKind.sms],
        params=TYPHOON,
        exercise=True,
        composed_by="bench-officer",
        **fields,
    )
    alert = lifecycle.compose(ctx, draft, origin="bench")
    if alert.status is AlertStatus.pending_approval:
        alert = lifecycle.approve(ctx, alert.id, "bench-approver", origin="bench")
    return alert


def run_jobs(ctx: Context, queue_names: Sequence[str]) -> None:
    """Run the jobs of some queues in this process (RQ's SimpleWorker, burst mode)."""
    from broadcast.core.context import set_current

    set_current(ctx)
    try:
        InProcessWorker([ctx.queue(n) for n in queue_names], **worker_options(ctx)).work(
            burst=True, logging_level="WARNING"
        )
    finally:
        set_current(None)


def areas_of_size(ctx: Context, people: int, digits: int = 9) -> list[str]:
    """Streets (``digits`` 9) or committees (12) in code order whose people add up to at least ``people``."""
    counts: dict[str, int] = {}
    for code, raw in ctx.redis.hgetall(ctx.keys.community_counts).items():
        data = json.loads(raw)
        area = as_text(code)[:digits].ljust(12, "0")
        counts[area] = counts.get(area, 0) + int(data.get("residents", 0)) + int(data.get("key_unit_contacts", 0))
    chosen, total = [], 0
    for area in sorted(counts):
        chosen.append(area)
        total += counts[area]
        if total >= people:
            break
    return chosen


@dataclass
class Figure:
    """One measured figure beside its baseline and target."""

    value: float
    unit: str
    target: str
    met: bool
    baseline: float | None = None
    baseline_label: str = ""
    runs: list[float] | None = None
    lower_is_better: bool = False  # a time: the ratio is then baseline / figure (how many times faster)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "unit": self.unit}
        if self.runs is not None and len(self.runs) > 1:
            out["runs"] = self.runs
        if self.baseline is not None:
            out["baseline"] = self.baseline
            out["baseline_is"] = self.baseline_label
            if self.lower_is_better:
                out["ratio"] = round(self.baseline / self.value, 1) if self.value else None
                out["ratio_is"] = "baseline / figure"
            else:
                out["ratio"] = round(self.value / self.baseline, 2) if self.baseline else None
                out["ratio_is"] = "figure / baseline"
        out["target"] = self.target
        out["met"] = self.met
        return out


def result(name: str, command: str, figures: dict[str, Figure], **details: Any) -> dict[str, Any]:
    """A benchmark's JSON: its figures, whether every target is met, details, and the machine."""
    return {
        "benchmark": name,
        "command": command,
        "figures": {k: f.as_dict() for k, f in figures.items()},
        "meets_targets": all(f.met for f in figures.values()),
        **details,
        "machine": machine(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile (0.99 for p99) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return float(ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))])
