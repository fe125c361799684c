"""The after-action report (事后评估): what happened to one alert, from its ledger, for a bureau's review.

Everything comes from what the service recorded: the alert's record (composed, approved, issued),
every recipient's time slots (first sent, delivered and confirmed, how, and the last error), the
counters by committee and channel, the ladder's steps and notices, the help requests and what was
done about them, the volunteers' outcomes at the door, and the field reports with their triage.

The slots are read committee by committee (a committee is one contiguous range of the roster) as
arrays, so the figures are exact at any size: a citywide warning's 25 million slots are 400 MB read
in committee-sized pieces, never at once. Times are seconds after issue, as the slots keep them.

    timeline        composed, approved, issued; first, 50 %, 90 %, 99 % and last message handed to
                    a provider (of the people sent to); first and last delivery and confirmation
    curve           people sent to, delivered and confirmed against minutes since issue; confirmed
                    per district and per street
    channels        the funnel per channel, failures by class (opted out, refused, undelivered …)
    cost            SMS parts × BROADCAST_SMS_PART_PRICE, calls × minutes × BROADCAST_VOICE_MINUTE_PRICE
    ladder          each step: when due, when done, how many it reached
    help            each request: when asked, first contact (a volunteer at the door or the duty
                    room marking it handled), outcome
    door_to_door    outcomes recorded, and coverage of those who did not confirm by themselves
    committees      per committee: rate, minutes to 50 % and 80 % confirmed, help, door-to-door
    lowest          the ten committees with the lowest rate, and why (no volunteer, many without a
                    smartphone, many failures)
    reports         field reports by category and state, and how long resolving took
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import redis.asyncio

from audiences.residents import MEMBER, NO_SMARTPHONE
from broadcast.core.keys import Keys, as_bytes, as_text
from broadcast.core.models import Alert, ChannelKind
from broadcast.core.settings import Settings
from broadcast.delivering.ledger import METHOD_CODE, SLOT_SIZE, roster_index
from broadcast.following.escalation import area_names, ladder
from broadcast.following.progress import alert_progress
from broadcast.hearing.field_reports import Category, TriageState, alert_reports
from channels.base import UNREGISTERED, Outcome
from channels.twilio.sms import ERROR_OUTCOMES

PERCENTILES = (50, 90, 99)
REPORT_FIELDS = (
    *("id", "category", "category_label", "text", "place", "community"),
    *("at", "state", "assignee", "note", "urgent", "source"),
)
CURVE_POINTS = 240
LOWEST = 10
SLOTS_PER_READ = 65_536  # recipients' slots read at once (1 MB)
VOLUNTEER_METHOD = METHOD_CODE[next(m for m in METHOD_CODE if m.value == "volunteer")]
# A committee is short of something when at least this share of its people lack it.
NO_SMARTPHONE_SHARE = 0.2
FAILED_SHARE = 0.05


def failure_class(code: int) -> str:
    """The kind of failure a provider's error code names."""
    known = ERROR_OUTCOMES.get(code)
    if known in (Outcome.opted_out, Outcome.permanent):
        return known.value
    if code == UNREGISTERED:
        return Outcome.permanent.value
    if 30000 <= code < 31000:
        return "undelivered"  # the carrier or the handset did not take it
    return "unknown" if code == 0 else "other"


def nth_time(times: np.ndarray, share: float, of: int) -> int | None:
    """Seconds after issue by which ``share`` of ``of`` people had it (None: never so many)."""
    need = math.ceil(share * of)
    if need <= 0 or len(times) < need:
        return None
    return int(np.partition(times, need - 1)[need - 1])


def _minutes(seconds: int | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


class _Times:
    """Seconds-after-issue counts, one per second, grown as later times arrive."""

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, seconds: np.ndarray) -> None:
        if not len(seconds):
            return
        counted = np.bincount(seconds)
        if len(counted) > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(len(counted) - len(self.counts), dtype=np.int64)])
        self.counts[: len(counted)] += counted

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def first(self) -> int | None:
        found = np.flatnonzero(self.counts)
        return int(found[0]) if len(found) else None

    def last(self) -> int | None:
        found = np.flatnonzero(self.counts)
        return int(found[-1]) if len(found) else None

    def percentile(self, share: float) -> int | None:
        """The second by which ``share`` of the times counted had come."""
        total = self.total
        if not total:
            return None
        need = max(1, math.ceil(share * total))
        return int(np.searchsorted(np.cumsum(self.counts), need))

    def cumulative(self, edges: Sequence[int]) -> list[int]:
        """How many times were at or before each edge (seconds)."""
        running = np.cumsum(self.counts) if len(self.counts) else np.zeros(1, dtype=np.int64)
        return [int(running[min(edge, len(running) - 1)]) if len(self.counts) else 0 for edge in edges]


def _slot_columns(raw: bytes, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sent, delivered, confirmed, method) per recipient: seconds after issue plus one (0: never)."""
    words = np.frombuffer(raw.ljust(size * SLOT_SIZE, b"\0"), dtype=">u4").reshape(-1, 4)
    method = (words[:, 3] >> 16) & 0xFF
    return words[:, 0].astype(np.int64), words[:, 1].astype(np.int64), words[:, 2].astype(np.int64), method


async def _read_slots(client: redis.asyncio.Redis, keys: Keys, alert_id: str, start: int, end: int) -> bytes:
    out = bytearray()
    for first in range(start, end, SLOTS_PER_READ):
        last = min(end, first + SLOTS_PER_READ)
        out += as_bytes(await client.getrange(keys.slots(alert_id), first * SLOT_SIZE, last * SLOT_SIZE - 1))
        out = out.ljust((last - start) * SLOT_SIZE, b"\0")
    return bytes(out)


def _street(code: str) -> str:
    return code[:9] + "000"


def _district(code: str) -> str:
    return code[:6] + "000000"


async def after_action(
    client: redis.asyncio.Redis, keys: Keys, settings: Settings, alert: Alert, now: datetime
) -> dict[str, Any]:
    """The after-action report of ``alert`` as a JSON-ready document (see the module's docstring)."""
    issued = alert.issued_at or alert.created_at
    progress = await alert_progress(client, keys, alert)
    index = await roster_index(client, keys, alert.id)
    communities = index.communities if index else []
    ends = [*index.starts[1:], index.size] if index else []
    rows = {row["code"]: row for row in progress["areas"]["community"]}

    sent, delivered, confirmed = _Times(), _Times(), _Times()
    by_street: dict[str, _Times] = {}
    street_times: dict[str, list[np.ndarray]] = {}
    street_volunteer_confirmed: Counter[str] = Counter()
    committees: list[dict[str, Any]] = []
    outcomes = await _outcomes(client, keys, alert.id)
    outcome_ordinals = np.array(sorted(outcomes), dtype=np.int64)
    for i, code in enumerate(communities):
        start, end = index.starts[i], ends[i]  # type: ignore[union-attr]
        s, d, c, method = _slot_columns(await _read_slots(client, keys, alert.id, start, end), end - start)
        sent.add(s[s > 0] - 1)
        delivered.add(d[d > 0] - 1)
        acked = c[c > 0] - 1
        confirmed.add(acked)
        by_street.setdefault(_street(code), _Times()).add(acked)
        street_times.setdefault(_street(code), []).append(acked)
        by_volunteer = int(np.count_nonzero((c > 0) & (method == VOLUNTEER_METHOD)))
        street_volunteer_confirmed[_street(code)] += by_volunteer
        targeted = end - start
        row = rows.get(code, {})
        visited = int(np.count_nonzero((outcome_ordinals >= start) & (outcome_ordinals < end)))
        to_visit = targeted - (len(acked) - by_volunteer)
        committees.append(
            {
                "code": code,
                "name": row.get("name", code),
                "street": _street(code),
                "targeted": targeted,
                "sent": int(np.count_nonzero(s)),
                "delivered": int(np.count_nonzero(d)),
                "failed": int(row.get("failed", 0)),
                "confirmed": len(acked),
                "confirmed_by_volunteer": by_volunteer,
                "rate": round(len(acked) / targeted, 4) if targeted else 0.0,
                "minutes_to_50": _minutes(nth_time(acked, 0.5, targeted)),
                "minutes_to_80": _minutes(nth_time(acked, 0.8, targeted)),
                "help": int(row.get("needs_help", 0)),
                "to_visit": to_visit,
                "visited": visited,
                "door_to_door": round(visited / to_visit, 4) if to_visit else 1.0,
            }
        )
    streets = _streets(progress, committees, street_times)
    span = max(60, *(t.last() or 0 for t in (sent, delivered, confirmed)))
    step = max(10, math.ceil(span / CURVE_POINTS))
    edges = list(range(0, span + step, step))
    curve: dict[str, Any] = {
        "minutes": [round(e / 60, 2) for e in edges],
        "step_seconds": step,
        "sent": sent.cumulative(edges),
        "delivered": delivered.cumulative(edges),
        "confirmed": confirmed.cumulative(edges),
        "street": {code: times.cumulative(edges) for code, times in by_street.items()},
        "district": {},
    }
    for code, series in curve["street"].items():
        total = curve["district"].setdefault(_district(code), [0] * len(edges))
        curve["district"][_district(code)] = [a + b for a, b in zip(total, series, strict=True)]
    names = await area_names(client, keys, sorted({*curve["street"], *curve["district"]}))

    def at(seconds: int | None) -> str | None:
        return (issued + timedelta(seconds=seconds)).isoformat() if seconds is not None else None

    timeline = {
        "composed": alert.created_at.isoformat(),
        "approved": issued.isoformat() if alert.approved_by else None,
        "issued": alert.issued_at.isoformat() if alert.issued_at else None,
        "first_sent": at(sent.first()),
        **{f"sent_{p}": at(sent.percentile(p / 100)) for p in PERCENTILES},
        "last_sent": at(sent.last()),
        "first_delivered": at(delivered.first()),
        "last_delivered": at(delivered.last()),
        "first_confirmed": at(confirmed.first()),
        "last_confirmed": at(confirmed.last()),
        "ended": (alert.cancelled_at or alert.expires_at).isoformat(),
    }
    counts = {as_text(k): int(v) for k, v in (await client.hgetall(keys.counts(alert.id))).items()}
    document = {
        "alert": progress["alert"],
        "generated": now.isoformat(),
        "names": names,
        "totals": progress["totals"],
        "timeline": timeline,
        "curve": curve,
        "channels": _channels(progress, counts),
        "cost": _cost(settings, counts),
        "ladder": await _ladder(client, keys, alert, counts),
        "help": await _help(client, keys, alert.id, outcomes),
        "door_to_door": _door_to_door(committees, outcomes),
        "committees": committees,
        "streets": streets,
        "lowest": await _lowest(client, keys, alert.id, committees),
        "reports": await _reports(client, keys, alert.id),
    }
    return document


def _streets(
    progress: dict[str, Any], committees: list[dict[str, Any]], times: dict[str, list[np.ndarray]]
) -> list[dict[str, Any]]:
    """Each street's figures: its committees' added up, its times from all its people's."""
    names = {row["code"]: row["name"] for row in progress["areas"]["street"]}
    out = []
    for street in dict.fromkeys(c["street"] for c in committees):
        members = [c for c in committees if c["street"] == street]
        acked = np.concatenate(times[street]) if times[street] else np.zeros(0, dtype=np.int64)
        targeted = sum(c["targeted"] for c in members)
        row: dict[str, Any] = {"code": street, "name": names.get(street, street), "street": street}
        for name in ("targeted", "sent", "delivered", "failed", "confirmed", "help", "to_visit", "visited"):
            row[name] = sum(c[name] for c in members)
        row["rate"] = round(row["confirmed"] / targeted, 4) if targeted else 0.0
        row["minutes_to_50"] = _minutes(nth_time(acked, 0.5, targeted))
        row["minutes_to_80"] = _minutes(nth_time(acked, 0.8, targeted))
        row["door_to_door"] = round(row["visited"] / row["to_visit"], 4) if row["to_visit"] else 1.0
        out.append(row)
    return out


def _channels(progress: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """The funnel per channel (as the console counts it) with its failures by class and by code."""
    out: dict[str, Any] = {}
    for name, figures in progress["channels"].items():
        base = name.split(".", 1)[0]
        if base not in {c.value for c in ChannelKind}:
            continue  # notices to volunteers and other counters are not a channel's
        classes: Counter[str] = Counter()
        codes: dict[str, int] = {}
        for key, value in counts.items():
            parts = key.split(":")
            if parts[0] == "error" and len(parts) == 3 and parts[1] == name and value:
                classes[failure_class(int(parts[2]))] += value
                codes[parts[2]] = codes.get(parts[2], 0) + value
        out[name] = {
            **{k: figures.get(k, 0) for k in ("planned", "sent", "delivered", "failed")},
            "failures": dict(classes),
            "error_codes": codes,
        }
    return out


def _cost(settings: Settings, counts: dict[str, int]) -> dict[str, Any]:
    """SMS parts × the price of a part, calls × minutes × the price of a minute."""
    parts = sum(v for k, v in counts.items() if k.startswith("parts:sms"))
    estimated = not parts and counts.get("sent:sms", 0) > 0
    if estimated:
        parts = counts.get("sent:sms", 0)  # an alert sent before parts were counted: one part each at least
    calls = sum(v for k, v in counts.items() if k == "sent:voice" or k.startswith("sent:voice."))
    minutes = calls * settings.voice_minutes_per_call
    sms = round(parts * settings.sms_part_price, 2)
    voice = round(minutes * settings.voice_minute_price, 2)
    return {
        "currency": settings.cost_currency,
        "sms_parts": parts,
        "sms_part_price": settings.sms_part_price,
        "sms": sms,
        "sms_estimated": estimated,
        "calls": calls,
        "call_minutes": round(minutes, 1),
        "voice_minute_price": settings.voice_minute_price,
        "voice": voice,
        "total": round(sms + voice, 2),
    }


async def _ladder(
    client: redis.asyncio.Redis, keys: Keys, alert: Alert, counts: dict[str, int]
) -> list[dict[str, Any]]:
    """Each step of the alert's ladder: due, done, and how many it reached."""
    issued = alert.issued_at or alert.created_at
    done = {as_text(k): as_text(v) for k, v in (await client.hgetall(keys.alert_steps(alert.id))).items()}
    notices = {as_text(k): as_text(v) for k, v in (await client.hgetall(keys.alert_notices(alert.id))).items()}
    out = []
    for i, step in enumerate(ladder(alert)):
        action = step.action.value
        if action == "voice_vulnerable":
            reached = counts.get("sent:voice.1", 0)
            confirmed = counts.get("acknowledged:voice.1", 0)
            what = {"called": reached, "answered": counts.get("delivered:voice.1", 0), "confirmed_by_key": confirmed}
        else:
            kind = "list" if action == "volunteer_lists" else "rollup"
            sent = [k for k, v in notices.items() if k.startswith(f"{kind}:") and not v.startswith("failed")]
            reached = len(sent)
            what = {"volunteers_texted": reached}
        out.append(
            {
                "step": i,
                "action": action,
                "after_minutes": step.after_minutes,
                "due": (issued + timedelta(minutes=step.after_minutes)).isoformat(),
                "done": done.get(str(i)),
                "reached": reached,
                **what,
            }
        )
    return out


async def _outcomes(client: redis.asyncio.Redis, keys: Keys, alert_id: str) -> dict[int, dict[str, Any]]:
    raw = await client.hgetall(keys.alert_outcomes(alert_id))
    return {int(as_text(k)): json.loads(v) for k, v in raw.items()}


async def _help(
    client: redis.asyncio.Redis, keys: Keys, alert_id: str, outcomes: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """Each help request: when asked, when first contacted (a volunteer's outcome at the door, or the
    duty room marking it handled), and how it ended."""
    members: list[Any] = await client.zrange(keys.help_asked(alert_id), 0, -1, withscores=True)
    asked = {int(as_text(m)): float(s) for m, s in members}
    handling = {int(as_text(k)): json.loads(v) for k, v in (await client.hgetall(keys.help_handling(alert_id))).items()}
    notices = {as_text(k): as_text(v) for k, v in (await client.hgetall(keys.alert_notices(alert_id))).items()}
    cases = []
    for ordinal, when in sorted(asked.items(), key=lambda kv: kv[1]):
        asked_at = datetime.fromtimestamp(when, UTC)
        contacts = []
        outcome = outcomes.get(ordinal)
        if outcome:
            contacts.append(datetime.fromisoformat(outcome["at"]))
        mark = handling.get(ordinal, {})
        if mark.get("state") == "handled":
            contacts.append(datetime.fromisoformat(mark["at"]))
        notified = sorted(
            v for k, v in notices.items() if k.startswith(f"help:{ordinal}:") and not v.startswith("failed")
        )
        first = min(contacts) if contacts else None
        cases.append(
            {
                "ordinal": ordinal,
                "asked_at": asked_at.isoformat(),
                "volunteers_notified_at": notified[0] if notified else None,
                "first_contact_at": first.isoformat() if first else None,
                "minutes_to_contact": round((first - asked_at).total_seconds() / 60, 1) if first else None,
                "outcome": (outcome or {}).get("outcome"),
                "state": mark.get("state", "new"),
                "assignee": mark.get("assignee", ""),
            }
        )
    waits = sorted(c["minutes_to_contact"] for c in cases if c["minutes_to_contact"] is not None)
    return {
        "total": len(cases),
        "contacted": len(waits),
        "median_minutes_to_contact": waits[len(waits) // 2] if waits else None,
        "cases": cases,
    }


def _door_to_door(committees: list[dict[str, Any]], outcomes: dict[int, dict[str, Any]]) -> dict[str, Any]:
    to_visit = sum(c["to_visit"] for c in committees)
    visited = sum(c["visited"] for c in committees)
    return {
        "outcomes": dict(Counter(o["outcome"] for o in outcomes.values())),
        "volunteers": len({o.get("volunteer") for o in outcomes.values()}),
        "to_visit": to_visit,
        "visited": visited,
        "coverage": round(visited / to_visit, 4) if to_visit else 1.0,
    }


async def _lowest(
    client: redis.asyncio.Redis, keys: Keys, alert_id: str, committees: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The committees with the lowest confirmation rate, and what may explain each."""
    chosen = sorted(committees, key=lambda c: (c["rate"], -c["targeted"]))[:LOWEST]
    out = []
    for c in chosen:
        code = c["code"]
        grids = [f"{code}{n:02d}" for n in range(1, 100)]
        spans = await client.hmget(keys.ranges(alert_id), grids)
        grids = [g for g, span in zip(grids, spans, strict=True) if span is not None]  # those the alert reached
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(keys.members(code))
            for grid in grids:
                pipe.scard(keys.grid_volunteers(grid))
            pipe.scard(keys.community_volunteers(code))
            replies = await pipe.execute()
        packed, grid_counts, workers = as_bytes(replies[0] or b""), replies[1:-1], replies[-1]
        profiles = [p for _, _, p in MEMBER.iter_unpack(packed)] if packed else []
        no_phone = sum(1 for p in profiles if p & NO_SMARTPHONE)
        share = no_phone / len(profiles) if profiles else 0.0
        reasons: list[dict[str, Any]] = []
        bare = sum(1 for n in grid_counts if not n)
        if not workers and (not grids or bare == len(grids)):
            reasons.append({"why": "no_volunteer", "text": "无网格员或社工 no volunteer"})
        elif bare:
            reasons.append(
                {
                    "why": "no_volunteer",
                    "grids": bare,
                    "text": f"{bare}/{len(grids)} 个网格无网格员 grids without a volunteer",
                }
            )
        if share >= NO_SMARTPHONE_SHARE:
            reasons.append(
                {
                    "why": "no_smartphone",
                    "share": round(share, 3),
                    "text": f"{share:.0%} 无智能手机 without a smartphone",
                }
            )
        failed = c["failed"] / c["targeted"] if c["targeted"] else 0.0
        if failed >= FAILED_SHARE:
            reasons.append({"why": "failures", "share": round(failed, 3), "text": f"{failed:.0%} 发送失败 failed"})
        if not reasons:
            reasons.append({"why": "none_found", "text": "未见明显原因 no single cause found"})
        out.append({**c, "reasons": reasons})
    return out


async def _reports(client: redis.asyncio.Redis, keys: Keys, alert_id: str) -> dict[str, Any]:
    """Field reports by category and state, and how long resolving took."""
    listed = await alert_reports(client, keys, alert_id, limit=None)
    waits = []
    for r in listed["reports"]:
        if r["state"] == TriageState.resolved.value and r["marked_at"]:
            waits.append(
                (datetime.fromisoformat(r["marked_at"]) - datetime.fromisoformat(r["at"])).total_seconds() / 60
            )
    waits.sort()
    return {
        "total": listed["total"],
        "open": listed["open"],
        "urgent_open": listed["urgent_open"],
        "by_category": {c.value: listed["by_category"].get(c.value, 0) for c in Category},
        "by_state": dict(Counter(r["state"] for r in listed["reports"])),
        "median_minutes_to_resolve": round(waits[len(waits) // 2], 1) if waits else None,
        "reports": [
            {
                k: r[k]
                for k in (
                    "id",
                    "category",
                    "category_label",
                    "text",
                    "place",
                    "community",
                    "at",
                    "state",
                    "assignee",
                    "note",
                    "urgent",
                    "source",
                )
            }
            for r in listed["reports"]
        ],
    }
