"""Drill scorecards (演练评估): drills of the same kind compared over time, per committee and street.

A drill's scorecard is the part of its after-action report a bureau compares from one drill to the
next: per committee and per street, the confirmation rate, minutes to 50 % and 80 % confirmed, help
requests and door-to-door completion. The alert's own keys expire a month after it; drills of one
kind (5·12, 10·13) come months apart, so the scorecard is kept on its own for years
(``DRILL_RETENTION_SECONDS``). It is kept when the drill ends (cancelled, or at its expiry, by a
job scheduled when it was planned) and again whenever its report is made.

Comparing two drills says, for each area, what got better and what got worse: a higher rate, fewer
minutes to 50 % or 80 %, a higher door-to-door completion are better; a change within
``SAME_WITHIN`` counts as no change. The area's verdict follows the confirmation rate, and where the
rate held, the time to 80 %, then to 50 %, then door-to-door completion.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import redis.asyncio

from broadcast.core.context import FOLLOWUP_QUEUE, Context, current
from broadcast.core.csv_export import csv_document
from broadcast.core.jobs import SCORECARD_JOB
from broadcast.core.keys import DRILL_RETENTION_SECONDS, Keys, as_text
from broadcast.core.models import Alert
from broadcast.issuing.alerts import load_alert_async

FIGURES = ("targeted", "rate", "minutes_to_50", "minutes_to_80", "help", "door_to_door")
# Which way is better for each figure compared (help requests are reported, not judged).
BETTER = {"rate": 1, "minutes_to_80": -1, "minutes_to_50": -1, "door_to_door": 1}  # in the order they decide
SAME_WITHIN = {"rate": 0.01, "minutes_to_80": 0.5, "minutes_to_50": 0.5, "door_to_door": 0.01}


def scorecard_of(review: dict[str, Any]) -> dict[str, Any]:
    """The figures of a drill's after-action report that the next drill is compared with."""
    alert = review["alert"]

    def rows(level: str) -> list[dict[str, Any]]:
        return [{"code": r["code"], "name": r["name"], **{f: r.get(f) for f in FIGURES}} for r in review[level]]

    totals = review["totals"]
    targeted = totals.get("targeted", 0)
    return {
        "alert": alert["id"],
        "event": alert["event"],
        "level": alert["level"],
        "issued_at": alert.get("issued_at") or alert["created_at"],
        "areas": alert["target"]["areas"],
        "targeted": targeted,
        "rate": round(totals.get("confirmed", 0) / targeted, 4) if targeted else 0.0,
        "committees": rows("committees"),
        "streets": rows("streets"),
    }


async def keep_scorecard(client: redis.asyncio.Redis, keys: Keys, scorecard: dict[str, Any]) -> None:
    """Keep a drill's scorecard for years, listed under its kind of event."""
    issued = scorecard["issued_at"]
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(keys.drill_scorecard(scorecard["alert"]), json.dumps(scorecard, ensure_ascii=False))
        pipe.expire(keys.drill_scorecard(scorecard["alert"]), DRILL_RETENTION_SECONDS)
        pipe.zadd(keys.drills(scorecard["event"]), {scorecard["alert"]: datetime.fromisoformat(issued).timestamp()})
        pipe.expire(keys.drills(scorecard["event"]), DRILL_RETENTION_SECONDS)
        await pipe.execute()


async def drill_scorecards(client: redis.asyncio.Redis, keys: Keys, event: str) -> list[dict[str, Any]]:
    """Every kept scorecard of one kind of drill, oldest first."""
    ids = [as_text(i) for i in await client.zrange(keys.drills(event), 0, -1)]
    raw = [await client.get(keys.drill_scorecard(i)) for i in ids]
    return [json.loads(r) for r in raw if r]


def _verdict(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> tuple[dict[str, Any], str, list[str], list[str]]:
    """Each figure's change, the figures that got better and worse, and the area's verdict: decided by
    the first of ``BETTER``'s figures (rate first) that changed beyond ``SAME_WITHIN``."""
    if before is None or after is None:
        return {}, "new" if before is None else "absent", [], []
    change: dict[str, Any] = {}
    better: list[str] = []
    worse: list[str] = []
    for figure in (*BETTER, "help"):
        a, b = before.get(figure), after.get(figure)
        if a is None or b is None:
            change[figure] = None
            if figure in BETTER and (a is None) != (b is None):
                # reaching 50 % (or 80 %) at all, or no longer reaching it
                (better if a is None else worse).append(figure)
            continue
        delta = round(b - a, 4)
        change[figure] = delta
        if figure in BETTER and abs(delta) > SAME_WITHIN[figure]:
            (better if delta * BETTER[figure] > 0 else worse).append(figure)
    verdict = next(("improved" if f in better else "worse" for f in BETTER if f in better or f in worse), "same")
    return change, verdict, better, worse


def compare(previous: dict[str, Any], latest: dict[str, Any], level: str = "committees") -> list[dict[str, Any]]:
    """Each area of two drills side by side (``level``: committees or streets), with its change and verdict."""
    before = {r["code"]: r for r in previous[level]}
    after = {r["code"]: r for r in latest[level]}
    rows = []
    for code in dict.fromkeys([*after, *before]):
        change, verdict, better, worse = _verdict(before.get(code), after.get(code))
        name = (after.get(code) or before.get(code) or {}).get("name", code)
        rows.append(
            {
                "code": code,
                "name": name,
                "before": before.get(code),
                "after": after.get(code),
                "change": change,
                "better": better,
                "worse": worse,
                "verdict": verdict,
            }
        )
    return rows


COMPARE_COLUMNS = (
    "level",
    "code",
    "name",
    *(f"{f}_before" for f in FIGURES),
    *(f"{f}_after" for f in FIGURES),
    *(f"{f}_change" for f in (*BETTER, "help")),
    "verdict",
)


def compare_csv(previous: dict[str, Any], latest: dict[str, Any]) -> str:
    """Two drills compared, per street then per committee, as a CSV document (UTF-8 with BOM)."""
    lines: list[list[object]] = []
    for level in ("streets", "committees"):
        for row in compare(previous, latest, level):
            before, after, change = row["before"] or {}, row["after"] or {}, row["change"]
            lines.append(
                [
                    level[:-1],
                    row["code"],
                    row["name"],
                    *(before.get(f, "") for f in FIGURES),
                    *(after.get(f, "") for f in FIGURES),
                    *("" if change.get(f) is None else change[f] for f in (*BETTER, "help")),
                    row["verdict"],
                ]
            )
    return csv_document(COMPARE_COLUMNS, lines)


def schedule_scorecard(ctx: Context, alert: Alert, now: bool = False) -> None:
    """Keep a drill's scorecard when it ends: at its expiry, or now (it was cancelled)."""
    if not alert.exercise:
        return
    queue = ctx.queue(FOLLOWUP_QUEUE)
    job_id = f"{ctx.keys.ns}-{alert.id}-scorecard{'-now' if now else ''}"
    if now:
        queue.enqueue(SCORECARD_JOB, alert.id, job_id=job_id, result_ttl=3600, job_timeout=1800)
    else:
        queue.enqueue_at(alert.expires_at, SCORECARD_JOB, alert.id, job_id=job_id, result_ttl=3600, job_timeout=1800)


def keep_job(alert_id: str) -> dict[str, Any]:
    """RQ entry point: work out a drill's after-action figures and keep its scorecard."""
    return asyncio.run(keep_drill(current(), alert_id))


async def keep_drill(ctx: Context, alert_id: str) -> dict[str, Any]:
    """Keep the scorecard of drill ``alert_id`` (from its ledger, now)."""
    from broadcast.following.review import after_action  # numpy: not for every process that plans alerts

    client = ctx.async_redis()
    try:
        alert = await load_alert_async(client, ctx.keys, alert_id)
        if alert is None or not alert.exercise or alert.issued_at is None:
            return {"skipped": "not a drill that was issued"}
        scorecard = scorecard_of(await after_action(client, ctx.keys, ctx.settings, alert, ctx.clock.now()))
        await keep_scorecard(client, ctx.keys, scorecard)
        return {"kept": alert_id, "committees": len(scorecard["committees"])}
    finally:
        await client.aclose()
