"""Who asked for help, newest first, and what the duty room is doing about each request.

Every call for help is kept with the time it was first made (a sorted set per alert, written where
the request is recorded), so the console lists them newest first at a cost that follows the
number of requests, not the size of the roster. A duty officer marks each one assigned (to whom)
or handled; that is stored beside it and audited. The console shows the number to call: the
people who may see a request are the ones expected to phone back.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field

from audiences.residents import load_residents
from broadcast.core.context import Context
from broadcast.core.keys import ALERT_RETENTION_SECONDS, Keys, as_text
from broadcast.delivering.deliver import read_rids
from broadcast.delivering.ledger import RosterIndex, roster_index
from broadcast.following.escalation import area_names
from broadcast.issuing.alerts import AlertError, audit
from broadcast.web.console.access import Forbidden, Permission, covers, may
from broadcast.web.console.users import User

HELP_SHOWN = 200  # on the live page; the full list pages through the rest
SCAN_CHUNK = 1000
LIVE_SCAN = 20_000  # requests looked at per live update: a user whose areas hold few of a city's
# requests gets the newest of them found among the city's newest, not a full scan every second


class HelpState(str, Enum):
    new = "new"
    assigned = "assigned"
    handled = "handled"

    @property
    def label(self) -> str:
        return {"new": "未处理 new", "assigned": "已指派 assigned", "handled": "已处理 handled"}[self.value]


class HelpUpdate(BaseModel):
    """What a duty officer records about one request for help."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    state: HelpState
    assignee: str = Field(default="", max_length=40)
    note: str = Field(default="", max_length=200)


def mask_phone(phone: str | None) -> str:
    """+8613812345678 → 138****5678."""
    if not phone:
        return ""
    digits = phone[3:] if phone.startswith("+86") else phone
    return digits[:3] + "****" + digits[-4:] if len(digits) > 7 else "****"


def _in_scope(index: RosterIndex, allowed: set[str] | None, ordinal: int) -> bool:
    if not 0 <= ordinal < index.size:
        return False
    return allowed is None or index.community_of(ordinal) in allowed


async def handling_of(client: redis.asyncio.Redis, keys: Keys, alert_id: str) -> dict[int, dict[str, Any]]:
    """Every request the duty room has marked, by ordinal (a human-sized list)."""
    raw = await client.hgetall(keys.help_handling(alert_id))
    return {int(as_text(k)): json.loads(v) for k, v in raw.items()}


async def help_cases(
    client: redis.asyncio.Redis,
    keys: Keys,
    alert_id: str,
    communities: list[dict[str, Any]],
    *,
    everywhere: bool,
    limit: int = HELP_SHOWN,
    skip: int = 0,
    scan: int | None = LIVE_SCAN,
) -> dict[str, Any]:
    """The requests for help in the given committee rows of a progress document (all of the alert's
    when ``everywhere``), newest first: ``limit`` of them after the first ``skip``; with how many
    there are, how many are still open, and whether more follow. At most ``scan`` requests are
    looked at (None: all of them, for the full list)."""
    index = await roster_index(client, keys, alert_id)
    total = sum(int(row.get("needs_help", 0)) for row in communities)
    empty: dict[str, Any] = {"total": total, "open": total, "cases": [], "more": False}
    if index is None:
        return empty
    allowed = None if everywhere else {row["code"] for row in communities}
    handling = {o: h for o, h in (await handling_of(client, keys, alert_id)).items() if _in_scope(index, allowed, o)}
    handled = sum(1 for h in handling.values() if h.get("state") == HelpState.handled.value)
    found: list[tuple[int, float]] = []
    matched, offset, cut = 0, 0, False
    while len(found) <= limit:
        chunk: list[Any] = await client.zrevrangebyscore(
            keys.help_asked(alert_id), "+inf", "-inf", start=offset, num=SCAN_CHUNK, withscores=True
        )
        offset += len(chunk)
        for member, score in chunk:
            ordinal = int(as_text(member))
            if _in_scope(index, allowed, ordinal):
                matched += 1
                if matched > skip:
                    found.append((ordinal, float(score)))
        if len(chunk) < SCAN_CHUNK:
            break
        if scan is not None and offset >= scan:
            cut = True  # more may follow beyond what was looked at
            break
    more = cut or len(found) > limit
    found = found[:limit]
    ordinals = [o for o, _ in found]
    if not ordinals:
        return {**empty, "open": total - handled, "more": more}
    rids = await read_rids(client, keys, alert_id, ordinals)
    residents = await load_residents(client, keys, rids)
    outcomes_raw = await client.hmget(keys.alert_outcomes(alert_id), [str(o) for o in ordinals])
    places = sorted({r.building or r.place for r in residents.values() if r.building or r.place})
    names = await area_names(client, keys, [*places, *index.communities])
    cases = []
    for (ordinal, asked), rid, outcome in zip(found, rids, outcomes_raw, strict=True):
        resident = residents.get(rid)
        if resident is None:
            continue
        mark = handling.get(ordinal, {})
        building = resident.building or resident.place
        community = index.community_of(ordinal)
        cases.append(
            {
                "ordinal": ordinal,
                "asked_at": asked,
                "community": names.get(community, community),
                "community_code": community,
                "place": " ".join(filter(None, [names.get(building, ""), resident.room])),
                "place_code": building,
                "name": resident.name,
                "phone": mask_phone(resident.phone),
                "dial": resident.phone or "",
                "state": mark.get("state", HelpState.new.value),
                "assignee": mark.get("assignee", ""),
                "note": mark.get("note", ""),
                "marked_by": mark.get("by", ""),
                "marked_at": mark.get("at", ""),
                "outcome": (json.loads(outcome) or {}).get("outcome") if outcome else None,
            }
        )
    return {"total": total, "open": total - handled, "cases": cases, "more": more}


def mark_help(ctx: Context, user: User, alert_id: str, ordinal: int, update: HelpUpdate, origin: str) -> dict[str, Any]:
    """Record what the duty room did about one request for help (audited); refused for a resident
    who did not ask, or outside the user's areas."""
    if not (may(user, Permission.compose) or may(user, Permission.approve)):
        raise Forbidden(f"a {user.role.value} may not handle requests for help")
    if ctx.redis.zscore(ctx.keys.help_asked(alert_id), str(ordinal)) is None:
        raise AlertError(f"resident {ordinal} of alert {alert_id} has not asked for help", status=404, field="ordinal")
    raw = ctx.redis.get(ctx.keys.roster_communities(alert_id))
    data: dict[str, Any] = json.loads(raw) if raw else {"communities": [], "size": 0}
    index = RosterIndex([c for c, _ in data["communities"]], [s for _, s in data["communities"]], int(data["size"]))
    if not covers(user, index.community_of(ordinal)):
        raise Forbidden("this resident lives outside your areas", "ordinal")
    if update.state is HelpState.assigned and not update.assignee:
        raise AlertError("指派给谁？Say who it is assigned to", status=422, field="assignee")
    saved = {
        "state": update.state.value,
        "assignee": update.assignee,
        "note": update.note,
        "by": user.name,
        "at": ctx.clock.now().isoformat(),
    }
    key = ctx.keys.help_handling(alert_id)
    with ctx.redis.pipeline(transaction=True) as pipe:
        if update.state is HelpState.new:
            pipe.hdel(key, str(ordinal))
        else:
            pipe.hset(key, str(ordinal), json.dumps(saved, ensure_ascii=False))
        pipe.expire(key, ALERT_RETENTION_SECONDS)
        pipe.execute()
    audit(
        ctx,
        user.name,
        "help_case",
        alert_id=alert_id,
        origin=origin,
        ordinal=ordinal,
        state=update.state.value,
        assignee=update.assignee,
        note=update.note,
    )
    return saved
