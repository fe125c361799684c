"""Plan: freeze an alert's roster once, cut it into batches, and queue one job per batch.

The roster numbers recipients 0..N-1 in area order (district, street, committee, grid, building,
room), so every area is one contiguous range of ordinals. Freezing reads only the packed members
indexes, never residents' records. Planning is idempotent: a frozen roster is never refrozen, and
a batch whose job already exists is not queued again.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rq import Queue

from audiences.areas import AreaLevel, AreaTree
from audiences.residents import VULNERABLE
from audiences.selection import NO_CHANNEL, ChannelChooser, select
from broadcast.core.context import Context, level_queue
from broadcast.core.jobs import BATCH_JOB, until_done
from broadcast.core.keys import ALERT_RETENTION_SECONDS, as_text
from broadcast.core.models import Alert, AlertStatus
from broadcast.issuing.alerts import set_status

_WRITE_CHUNK = 1 << 22  # roster bytes per SETRANGE


@dataclass(frozen=True)
class Batch:
    """One job's worth of recipients on one channel, as ordinal ranges [start, end)."""

    queue: str
    channel: str
    ranges: list[tuple[int, int]]

    def to_json(self) -> str:
        return json.dumps({"q": self.queue, "c": self.channel, "r": self.ranges}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Batch:
        data = json.loads(raw)
        return cls(data["q"], data["c"], [tuple(r) for r in data["r"]])

    @property
    def size(self) -> int:
        return sum(end - start for start, end in self.ranges)


def to_ranges(ordinals: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ordinals as [start, end) runs: [3,4,5,9] → [(3,6), (9,10)]."""
    runs: list[tuple[int, int]] = []
    for o in ordinals:
        if runs and runs[-1][1] == o:
            runs[-1] = (runs[-1][0], o + 1)
        else:
            runs.append((o, o + 1))
    return runs


def expand(ranges: list[tuple[int, int]] | list[list[int]]) -> list[int]:
    return [o for start, end in ranges for o in range(start, end)]


# An alert in one of these states is not planned (yet, or any more).
NOT_PLANNED = (AlertStatus.cancelled, AlertStatus.expired, AlertStatus.pending_approval)


def queue_batches(ctx: Context, alert: Alert) -> int:
    """Freeze the roster (once) and queue its batches (each once); returns how many were queued now."""
    if not ctx.redis.exists(ctx.keys.roster_communities(alert.id)):
        freeze(ctx, alert)
    return enqueue_batches(ctx, alert)


def first_planning(ctx: Context, alert_id: str) -> bool:
    """True once per alert, for the run of its plan that starts what follows the batches."""
    return bool(ctx.redis.hsetnx(ctx.keys.plan(alert_id), "followups", 1))


def mark_sending(ctx: Context, alert_id: str, queued: int) -> dict[str, Any]:
    """The planned alert is sending (its roster's size recorded); returns the plan's counts."""
    counts = {as_text(k): int(v) for k, v in ctx.redis.hgetall(ctx.keys.plan(alert_id)).items()}
    set_status(ctx, alert_id, AlertStatus.sending, roster_size=counts.get("targeted", 0))
    return {**counts, "queued_now": queued}


def freeze(ctx: Context, alert: Alert) -> dict[str, int]:
    """Resolve the target to recipients and store the roster, its area ranges and its batches."""
    k, aid = ctx.keys, alert.id
    tree = AreaTree.load(ctx.redis, k)
    selection = select(ctx.redis, k, tree, alert.target, alert.level, ctx.settings.opt_out_override_levels)
    choose = ChannelChooser(alert.channels)

    rids = array("I")
    ranges: dict[str, list[int]] = {}
    communities: list[list[Any]] = []
    by_bucket: dict[tuple[bool, str], array[int]] = {}
    for committee in selection.members(ctx.redis, k):
        start = len(rids)
        communities.append([committee.community, start])
        place_ranges: dict[int, list[int]] = {}
        for ordinal, (rid, place, profile) in enumerate(committee.members, start):
            rids.append(rid)
            span = place_ranges.get(place)
            if span is None:
                place_ranges[place] = [ordinal, ordinal + 1]
            else:
                span[1] = ordinal + 1
            bucket = (bool(profile & VULNERABLE), choose(profile))
            ordinals = by_bucket.get(bucket)
            if ordinals is None:
                ordinals = by_bucket[bucket] = array("I")
            ordinals.append(ordinal)
        ranges[committee.community] = [start, len(rids)]
        for place, span in place_ranges.items():
            code = committee.places[place]
            if len(code) > 12:  # a building, or a grid for people attached to the whole grid
                ranges[code] = span
    _add_enclosing_ranges(tree, ranges)

    batches: list[Batch] = []
    size = ctx.settings.batch_size
    for vulnerable in (True, False):
        queue = level_queue(alert.level, vulnerable)
        for (v, channel), ordinals in sorted(by_bucket.items()):
            if v is vulnerable:
                batches += [
                    Batch(queue, channel, to_ranges(ordinals[i : i + size])) for i in range(0, len(ordinals), size)
                ]
    counts = {"targeted": len(rids), "batches": len(batches)}
    for (_, channel), ordinals in by_bucket.items():
        counts[f"ch:{channel}"] = counts.get(f"ch:{channel}", 0) + len(ordinals)

    vulnerable_bits = bytearray((len(rids) + 7) // 8)
    for (is_vulnerable, _), ordinals in by_bucket.items():
        if is_vulnerable:
            for o in ordinals:
                vulnerable_bits[o >> 3] |= 0x80 >> (o & 7)
    _store_frozen(ctx, aid, rids.tobytes(), ranges, communities, batches, counts, bytes(vulnerable_bits))
    return counts


def _add_enclosing_ranges(tree: AreaTree, ranges: dict[str, list[int]]) -> None:
    """Grids, streets, districts and the city, from their buildings' and committees' ranges."""
    for code, (start, end) in list(ranges.items()):
        if len(code) == 17:
            enclosing = [code[:14]]
        elif len(code) == 12:
            enclosing = [a.code for a in tree.ancestors(code)]
        else:
            continue
        for parent in enclosing:
            span = ranges.get(parent)
            if span is None:
                ranges[parent] = [start, end]
            else:
                span[0], span[1] = min(span[0], start), max(span[1], end)


def _store_frozen(
    ctx: Context,
    aid: str,
    roster: bytes,
    ranges: dict[str, list[int]],
    communities: list[list[Any]],
    batches: list[Batch],
    counts: dict[str, int],
    vulnerable: bytes,
) -> None:
    k = ctx.keys
    ttl = ALERT_RETENTION_SECONDS
    with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.delete(k.roster(aid), k.ranges(aid), k.batches(aid), k.plan(aid))
        for offset in range(0, len(roster), _WRITE_CHUNK):
            pipe.setrange(k.roster(aid), offset, roster[offset : offset + _WRITE_CHUNK])
        items = [(code, f"{s}:{e}") for code, (s, e) in ranges.items()]
        for i in range(0, len(items), 5000):
            pipe.hset(k.ranges(aid), mapping=dict(items[i : i + 5000]))
        for i in range(0, len(batches), 1000):
            pipe.rpush(k.batches(aid), *[b.to_json() for b in batches[i : i + 1000]])
        pipe.hset(k.plan(aid), mapping=counts)  # type: ignore[arg-type]
        pipe.set(k.bits(aid, "vulnerable"), vulnerable)
        for key in (k.roster(aid), k.ranges(aid), k.batches(aid), k.plan(aid), k.bits(aid, "vulnerable")):
            pipe.expire(key, ttl)
        pipe.execute()
    # Written last: its presence means the roster is frozen.
    marker = json.dumps({"size": len(roster) // 4, "communities": communities}, separators=(",", ":"))
    ctx.redis.set(k.roster_communities(aid), marker, ex=ttl)


def batch_job_id(ctx: Context, alert_id: str, index: int) -> str:
    return f"{ctx.keys.ns}-{alert_id}-b{index}"


def enqueue_batches(ctx: Context, alert: Alert) -> int:
    """Queue every planned batch that has no job yet; returns how many were queued now."""
    specs = [Batch.from_json(raw) for raw in ctx.redis.lrange(ctx.keys.batches(alert.id), 0, -1)]
    job_ids = [batch_job_id(ctx, alert.id, i) for i in range(len(specs))]
    with ctx.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(f"rq:job:{job_id}")
        exists = pipe.execute()
    by_queue: dict[str, list[Any]] = {}
    for spec, job_id, present in zip(specs, job_ids, exists, strict=True):
        if present:
            continue
        by_queue.setdefault(spec.queue, []).append(
            Queue.prepare_data(
                BATCH_JOB,
                args=(alert.id, spec.channel, spec.ranges),
                job_id=job_id,
                timeout=900,
                result_ttl=3600,
                failure_ttl=ALERT_RETENTION_SECONDS,
                retry=until_done(),
            )
        )
    queued = 0
    for name, jobs in by_queue.items():
        queue = ctx.queue(name)
        with ctx.redis.pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
        queued += len(jobs)
    return queued


def area_range(ctx: Context, alert_id: str, code: str) -> tuple[int, int] | None:
    """The ordinal range [start, end) of an area in a frozen roster, or None if it has nobody."""
    raw = ctx.redis.hget(ctx.keys.ranges(alert_id), code)
    if raw is None:
        return None
    start, end = as_text(raw).split(":")
    return int(start), int(end)


__all__ = ["NO_CHANNEL", "AreaLevel", "Batch", "expand", "freeze", "queue_batches", "to_ranges"]
