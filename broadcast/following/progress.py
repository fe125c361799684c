"""Progress of an alert: counts per channel and per area at any level, from counters, not scans.

Every recipient-level event is counted per committee as it happens (see ledger), and committees
are contiguous ordinal ranges, so a district's figure is the sum of its committees' figures.

The totals also place every recipient in exactly one stage of their sending (``totals["stages"]``:
queued, sent, rerouted, delivered, failed), kept by the ledger as it marks them, so that the stages
add up to the roster at every moment. Sending is done (``totals["sending"]`` is "done") when nobody
is queued or rerouted: every recipient's message has left for a provider, or no channel is left.
"""

from __future__ import annotations

import json
import struct
from datetime import datetime
from typing import Any

import redis.asyncio

from broadcast.core.keys import Keys, as_bytes, as_text
from broadcast.core.models import Alert
from broadcast.delivering.ledger import roster_index

STATES = ("sent", "delivered", "failed", "acknowledged", "needs_help")
STAGES = ("queued", "sent", "rerouted", "delivered", "failed")
# "{state}:{channel}" counters that are per channel; other "{name}:{…}" counters (stages, notices,
# SMS parts, error codes, volunteers' outcomes …) are not.
_PER_CHANNEL = frozenset((*STATES, "fallback"))


AREA_LEVELS = ("district", "street", "community")
_CODE_DIGITS = {"district": 6, "street": 9}

# Area names by namespace, for the areas version they were read at: a progress document names
# thousands of areas, which change only when areas are loaded again (that bumps the version).
_names: dict[str, tuple[int, dict[str, str]]] = {}


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
    levels: tuple[str, ...] = AREA_LEVELS,
) -> dict[str, Any]:
    """The progress document for one alert (pure: everything it needs is passed in), with rows for
    the area ``levels`` asked for (district, street, community)."""
    totals: dict[str, Any] = {"targeted": plan.get("targeted", 0), **{s: counts.get(s, 0) for s in STATES}}
    totals["confirmed"] = totals["acknowledged"]
    stages = {name: counts.get(f"stage:{name}", 0) for name in STAGES[1:]}
    # Every recipient not in a later stage is queued: the ledger moves each one out of it exactly once.
    stages = {"queued": totals["targeted"] - sum(stages.values()), **stages}
    totals["stages"] = stages
    totals["queued"] = stages["queued"] + stages["rerouted"]  # still to be sent on some channel
    if not totals["targeted"]:
        totals["sending"] = "planning"
    elif totals["queued"]:
        totals["sending"] = "sending"
    else:
        totals["sending"] = "done"
    totals["done_sending"] = totals["sending"] == "done"
    totals["possible_duplicates"] = counts.get("duplicates", 0)
    totals["retried"] = counts.get("retried", 0)
    totals["notices"] = {key.split(":", 1)[1]: value for key, value in counts.items() if key.startswith("notices:")}
    channels: dict[str, dict[str, int]] = {}
    for key, value in plan.items():
        if key.startswith("ch:"):
            channels.setdefault(key[3:], {})["planned"] = value
    # Committee counters ("{state}@{committee index}") into one column per state, in one pass.
    n = len(communities)
    columns = {state: [0] * n for state in STATES}
    for key, value in counts.items():
        state, at, index = key.partition("@")
        if at:
            column = columns.get(state)
            if column is not None and index.isdigit() and int(index) < n:
                column[int(index)] = value
        elif ":" in key:
            state, channel = key.split(":", 1)
            if state in _PER_CHANNEL:
                channels.setdefault(channel, {})[state] = value
    ends = [*starts[1:], size]
    targeted = [ends[i] - starts[i] for i in range(n)]
    areas: dict[str, list[dict[str, Any]]] = {}
    for level in levels:
        if level == "community":
            areas[level] = [_filled(code, names, targeted, columns, [i]) for i, code in enumerate(communities)]
            continue
        digits = _CODE_DIGITS[level]
        groups: dict[str, list[int]] = {}
        for i, code in enumerate(communities):
            groups.setdefault(code[:digits].ljust(12, "0"), []).append(i)
        areas[level] = [_filled(code, names, targeted, columns, members) for code, members in groups.items()]
    return {"alert": json.loads(alert.model_dump_json()), "totals": totals, "channels": channels, "areas": areas}


def _filled(
    code: str, names: dict[str, str], targeted: list[int], columns: dict[str, list[int]], members: list[int]
) -> dict[str, Any]:
    """One area's row: its committees' figures added up."""
    row: dict[str, Any] = {"code": code, "name": names.get(code, code), "targeted": sum(targeted[i] for i in members)}
    for state, column in columns.items():
        row[state] = sum(column[i] for i in members)
    return row


async def area_names(client: redis.asyncio.Redis, keys: Keys, codes: list[str], version: int) -> dict[str, str]:
    """The names of these areas (an unknown code stands for itself), cached while the areas version holds."""
    cached = _names.get(keys.ns)
    if cached is None or cached[0] != version:
        cached = _names[keys.ns] = (version, {})
    names = cached[1]
    missing = [code for code in codes if code not in names]
    if missing:
        raw = await client.hmget(keys.areas, missing)
        for code, record in zip(missing, raw, strict=True):
            names[code] = json.loads(record)["name"] if record else code
    return names


async def alert_progress(
    client: redis.asyncio.Redis, keys: Keys, alert: Alert, levels: tuple[str, ...] = AREA_LEVELS
) -> dict[str, Any]:
    """Fetch an alert's counters and build its progress document (rows for ``levels``)."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.plan(alert.id))
        pipe.hgetall(keys.counts(alert.id))
        pipe.get(keys.areas_version)
        plan_raw, counts_raw, version = await pipe.execute()
    plan = {as_text(k): int(v) for k, v in plan_raw.items()}
    counts = {as_text(k): int(v) for k, v in counts_raw.items()}
    index = await roster_index(client, keys, alert.id)
    communities = index.communities if index else []
    codes = sorted(
        {c for c in communities} | {c[:9] + "000" for c in communities} | {c[:6] + "000000" for c in communities}
    )
    names = await area_names(client, keys, codes, int(version or 0)) if codes else {}
    document = summarise(
        alert, plan, counts, communities, index.starts if index else [], index.size if index else 0, names, levels
    )
    if "screens" in plan:
        from broadcast.delivering.displays import screen_progress

        document["screens"] = await screen_progress(client, keys, alert.id, counts)
    return document


CURVE_SLOTS_READ = 200_000  # recipients' time slots read at most for one curve
CURVE_BLOCK = 4_096  # recipients per read; a larger roster is sampled in evenly spaced blocks
CURVE_POINTS = 240  # at most this many time steps


async def confirmation_curve(
    client: redis.asyncio.Redis, keys: Keys, alert: Alert, size: int, now: datetime
) -> dict[str, Any]:
    """Sent, delivered and confirmed people against minutes since issue, counted from the
    recipients' time slots (first sent / delivered / acknowledged). A roster larger than
    ``CURVE_SLOTS_READ`` is read in evenly spaced blocks and scaled up (``sampled``)."""
    issued = alert.issued_at or alert.created_at
    span = max(1, int((now - issued).total_seconds()))  # seconds since issue
    step = max(10, -(-span // CURVE_POINTS))  # seconds a point stands for: 10 s at least
    points = -(-span // step)
    columns = {"sent": [0] * points, "delivered": [0] * points, "confirmed": [0] * points}
    blocks = [(start, min(size, start + CURVE_BLOCK)) for start in range(0, size, CURVE_BLOCK)]
    sampled = size > CURVE_SLOTS_READ
    if sampled:
        wanted = CURVE_SLOTS_READ // CURVE_BLOCK
        blocks = [blocks[i * len(blocks) // wanted] for i in range(wanted)]
    read = 0
    for start, end in blocks:
        raw = as_bytes(await client.getrange(keys.slots(alert.id), start * 16, end * 16 - 1)).ljust(
            (end - start) * 16, b"\0"
        )
        read += end - start
        for sent, delivered, confirmed in struct.iter_unpack(">III4x", raw):
            for name, value in (("sent", sent), ("delivered", delivered), ("confirmed", confirmed)):
                if value:
                    columns[name][min(points - 1, (value - 1) // step)] += 1
    scale = size / read if sampled and read else 1.0
    curve: dict[str, Any] = {
        # Each point is the count at the end of its step, from zero at issue.
        "minutes": [0.0] + [round(min(span, (i + 1) * step) / 60, 2) for i in range(points)],
        "sampled": sampled,
        "step_seconds": step,
    }
    for name, counts in columns.items():
        total, series = 0, [0]
        for count in counts:
            total += count
            series.append(round(total * scale))
        curve[name] = series
    return curve
