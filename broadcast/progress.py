"""Progress of an alert: counts per channel and per area at any level, from counters, not scans.

Every recipient-level event is counted per committee as it happens (see ledger), and committees
are contiguous ordinal ranges, so a district's figure is the sum of its committees' figures.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio

from broadcast.keys import Keys, as_text
from broadcast.ledger import roster_index
from broadcast.models import Alert

STATES = ("sent", "delivered", "failed", "acknowledged", "needs_help")


def _row(code: str, name: str, targeted: int) -> dict[str, Any]:
    return {"code": code, "name": name, "targeted": targeted, **{s: 0 for s in STATES}}


def summarise(
    alert: Alert,
    plan: dict[str, int],
    counts: dict[str, int],
    communities: list[str],
    starts: list[int],
    size: int,
    names: dict[str, str],
) -> dict[str, Any]:
    """The progress document for one alert (pure: everything it needs is passed in)."""
    totals = {"targeted": plan.get("targeted", 0), **{s: counts.get(s, 0) for s in STATES}}
    totals["confirmed"] = totals["acknowledged"]
    totals["queued"] = max(0, totals["targeted"] - totals["sent"] - totals["failed"])
    totals["possible_duplicates"] = counts.get("duplicates", 0)
    totals["retried"] = counts.get("retried", 0)
    channels: dict[str, dict[str, int]] = {}
    for key, value in plan.items():
        if key.startswith("ch:"):
            channels.setdefault(key[3:], {})["planned"] = value
    for key, value in counts.items():
        if ":" in key and "@" not in key:
            state, channel = key.split(":", 1)
            channels.setdefault(channel, {})[state] = value
    rows = []
    ends = [*starts[1:], size]
    for i, code in enumerate(communities):
        row = _row(code, names.get(code, code), ends[i] - starts[i])
        for state in STATES:
            row[state] = counts.get(f"{state}@{i}", 0)
        rows.append(row)
    streets = _roll_up(rows, 9, names)
    districts = _roll_up(rows, 6, names)
    return {
        "alert": json.loads(alert.model_dump_json()),
        "totals": totals,
        "channels": channels,
        "areas": {"district": districts, "street": streets, "community": rows},
    }


def _roll_up(rows: list[dict[str, Any]], digits: int, names: dict[str, str]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        code = row["code"][:digits].ljust(12, "0")
        agg = out.setdefault(code, _row(code, names.get(code, code), 0))
        for field in ("targeted", *STATES):
            agg[field] += row[field]
    return list(out.values())


async def alert_progress(client: redis.asyncio.Redis, keys: Keys, alert: Alert) -> dict[str, Any]:
    """Fetch an alert's counters and build its progress document."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.plan(alert.id))
        pipe.hgetall(keys.counts(alert.id))
        plan_raw, counts_raw = await pipe.execute()
    plan = {as_text(k): int(v) for k, v in plan_raw.items()}
    counts = {as_text(k): int(v) for k, v in counts_raw.items()}
    index = await roster_index(client, keys, alert.id)
    communities = index.communities if index else []
    codes = sorted(
        {c for c in communities} | {c[:9] + "000" for c in communities} | {c[:6] + "000000" for c in communities}
    )
    names: dict[str, str] = {}
    if codes:
        raw = await client.hmget(keys.areas, codes)
        names = {code: json.loads(r)["name"] for code, r in zip(codes, raw, strict=True) if r}
    document = summarise(
        alert, plan, counts, communities, index.starts if index else [], index.size if index else 0, names
    )
    if "screens" in plan:
        from broadcast.displays import screen_progress

        document["screens"] = await screen_progress(client, keys, alert.id, counts)
    return document
