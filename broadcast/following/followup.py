"""Door-to-door follow-up: who is still on a volunteer's list, what they found, and the committee's roll-up.

A volunteer covers grids or buildings; each is an ordinal range of the alert's roster, so their list
is the unconfirmed ordinals of those ranges. An outcome recorded in person is stored per ordinal
(latest wins, the same request twice is one outcome):

    reached_safe   confirmed in person (counts as confirmed, by a volunteer), off the list
    needs_help     a case for the community, on the list until reached
    not_home       stays on the list, with when someone knocked
    moved_away     off the list, not counted as confirmed
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import redis.asyncio

from audiences.residents import Resident, load_residents
from audiences.volunteers import Volunteer
from broadcast.core.context import Context
from broadcast.core.keys import ALERT_RETENTION_SECONDS, Keys, as_bytes, as_text
from broadcast.core.models import AckMethod, Alert, ChannelKind, EventKind, RecipientEvent
from broadcast.delivering.deliver import read_rids
from broadcast.delivering.ledger import CHANNEL_BY_CODE, METHOD_BY_CODE, Ledger, RosterIndex
from broadcast.hearing.inbound import Inbox


class Outcome(str, Enum):
    reached_safe = "reached_safe"
    needs_help = "needs_help"
    not_home = "not_home"
    moved_away = "moved_away"


CLOSING = {Outcome.reached_safe, Outcome.moved_away}  # off the list once recorded

FLAGS = {
    "zh": {
        "elderly_alone": "独居老人",
        "hearing": "听障",
        "sight": "视障",
        "mobility": "行动不便",
        "no_smartphone": "无智能手机",
    },
    "en": {
        "elderly_alone": "lives alone",
        "hearing": "hearing",
        "sight": "sight",
        "mobility": "mobility",
        "no_smartphone": "no smartphone",
    },
}


def masked(phone: str | None) -> str:
    """A phone number a passer-by cannot read off the screen: 139****0001."""
    if not phone:
        return ""
    national = phone[3:] if phone.startswith("+86") else phone.lstrip("+")
    return national[:3] + "****" + national[-4:] if len(national) >= 8 else "****"


def flags_of(resident: Resident, language: str) -> list[str]:
    words = FLAGS["en" if language == "en" else "zh"]
    found = [words["elderly_alone"]] if resident.elderly_alone else []
    found += [words[d] for d in resident.disability if d in words]
    if resident.no_smartphone:
        found.append(words["no_smartphone"])
    return found


async def covered_ranges(
    client: redis.asyncio.Redis, keys: Keys, alert_id: str, volunteer: Volunteer
) -> list[tuple[str, int, int]]:
    """(area, start, end) of every grid or building the volunteer covers that the alert reached."""
    codes = [*volunteer.grids, *volunteer.buildings]
    if not codes:
        return []
    raw = await client.hmget(keys.ranges(alert_id), codes)
    out = []
    for code, span in zip(codes, raw, strict=True):
        if span is not None:
            start, end = as_text(span).split(":")
            out.append((code, int(start), int(end)))
    return out


async def bitmaps(
    client: redis.asyncio.Redis, keys: Keys, alert_id: str, states: Sequence[str], start: int, end: int
) -> dict[str, bytes]:
    """The bytes of several per-recipient bitmaps covering ordinals [start, end)."""
    async with client.pipeline(transaction=False) as pipe:
        for state in states:
            pipe.getrange(keys.bits(alert_id, state), start // 8, (end - 1) // 8)
        raw = await pipe.execute()
    return {state: as_bytes(r) for state, r in zip(states, raw, strict=True)}


def bit(bitmap: bytes, start: int, ordinal: int) -> bool:
    i = ordinal // 8 - start // 8
    return i < len(bitmap) and bool(bitmap[i] & (0x80 >> (ordinal % 8)))


async def outcomes_of(
    client: redis.asyncio.Redis, keys: Keys, alert_id: str, ordinals: Sequence[int]
) -> dict[int, Any]:
    """The latest in-person outcome of each ordinal that has one."""
    if not ordinals:
        return {}
    raw = await client.hmget(keys.alert_outcomes(alert_id), [str(o) for o in ordinals])
    return {o: json.loads(r) for o, r in zip(ordinals, raw, strict=True) if r is not None}


@dataclass
class ListEntry:
    ordinal: int
    resident: Resident
    needs_help: bool
    vulnerable: bool
    outcome: dict[str, Any] | None


async def work_list(client: redis.asyncio.Redis, keys: Keys, alert: Alert, volunteer: Volunteer) -> list[ListEntry]:
    """The volunteer's residents still to see: asked for help first, then the vulnerable, then the rest."""
    entries: list[ListEntry] = []
    for _, start, end in await covered_ranges(client, keys, alert.id, volunteer):
        maps = await bitmaps(client, keys, alert.id, ("acknowledged", "needs_help", "closed", "vulnerable"), start, end)
        # On the list until settled in person; those who confirmed themselves are off it, unless they
        # asked for help.
        waiting = [
            o
            for o in range(start, end)
            if not bit(maps["closed"], start, o)
            and (bit(maps["needs_help"], start, o) or not bit(maps["acknowledged"], start, o))
        ]
        rids = await read_rids(client, keys, alert.id, waiting)
        residents = await load_residents(client, keys, rids)
        outcomes = await outcomes_of(client, keys, alert.id, waiting)
        for o, rid in zip(waiting, rids, strict=True):
            resident = residents.get(rid)
            if resident is not None:
                entries.append(
                    ListEntry(
                        o,
                        resident,
                        bit(maps["needs_help"], start, o),
                        bit(maps["vulnerable"], start, o),
                        outcomes.get(o),
                    )
                )
    entries.sort(key=lambda e: (not e.needs_help, not e.vulnerable, e.ordinal))
    return entries


class OutcomeRefused(Exception):
    def __init__(self, status: int, message: str, field: str) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


async def record_outcome(
    ctx: Context,
    client: redis.asyncio.Redis,
    inbox: Inbox,
    alert: Alert,
    index: RosterIndex,
    volunteer: Volunteer,
    ordinal: int,
    outcome: Outcome,
    request_id: str,
) -> dict[str, Any]:
    """Store what a volunteer found at a door; the same request twice is stored once."""
    ranges = await covered_ranges(client, ctx.keys, alert.id, volunteer)
    if not any(start <= ordinal < end for _, start, end in ranges):
        raise OutcomeRefused(403, "this resident is not in your grid or buildings", "ordinal")
    key = ctx.keys.alert_outcomes(alert.id)
    current = await client.hget(key, str(ordinal))
    if current is not None and json.loads(current).get("request") == request_id:
        return dict(json.loads(current))
    now = ctx.clock.now()
    saved = {"outcome": outcome.value, "volunteer": volunteer.id, "at": now.isoformat(), "request": request_id}
    await client.hset(key, str(ordinal), json.dumps(saved))
    await client.expire(key, ALERT_RETENTION_SECONDS)
    if outcome in (Outcome.reached_safe, Outcome.needs_help):
        kind = EventKind.acknowledged if outcome is Outcome.reached_safe else EventKind.needs_help
        event = RecipientEvent(
            alert_id=alert.id, ordinal=ordinal, kind=kind, channel=ChannelKind.sms, method=AckMethod.volunteer
        )
        await inbox.record_recipient_event(event)
    if outcome in CLOSING:
        ledger = Ledger(client, ctx.keys, alert.id)
        issued_at = alert.issued_at or alert.created_at
        await ledger.mark(
            EventKind.closed, None, [(ordinal, index.community_index(ordinal))], issued_at=issued_at, at=now
        )
    await client.hincrby(ctx.keys.counts(alert.id), f"outcome:{outcome.value}", 1)
    return saved


def _slot_time(issued_at: datetime, raw: bytes) -> str | None:
    (value,) = struct.unpack(">I", raw)
    return (issued_at + timedelta(seconds=value - 1)).isoformat() if value else None


async def timeline(client: redis.asyncio.Redis, keys: Keys, alert: Alert, ordinal: int) -> dict[str, Any]:
    """One recipient's story: sent, delivered, confirmed (how and when), failures, the volunteer's outcome."""
    ledger = Ledger(client, keys, alert.id)
    slot = await ledger.slot(ordinal)
    issued_at = alert.issued_at or alert.created_at
    states = {}
    for state in ("sent", "delivered", "failed", "acknowledged", "needs_help", "closed"):
        states[state] = (await ledger.bits(state, [ordinal]))[0]
    channels: dict[str, list[str]] = {}
    for kind in ChannelKind:
        for state in ("sent", "delivered", "failed"):
            if (await ledger.bits(f"{state}:{kind.value}", [ordinal]))[0]:
                channels.setdefault(kind.value, []).append(state)
    outcome = (await outcomes_of(client, keys, alert.id, [ordinal])).get(ordinal)
    return {
        "ordinal": ordinal,
        "sent_at": _slot_time(issued_at, slot[0:4]),
        "delivered_at": _slot_time(issued_at, slot[4:8]),
        "confirmed_at": _slot_time(issued_at, slot[8:12]),
        "delivered_by": CHANNEL_BY_CODE[slot[12]].value if slot[12] in CHANNEL_BY_CODE else None,
        "confirmed_by": METHOD_BY_CODE[slot[13]].value if slot[13] in METHOD_BY_CODE else None,
        "last_error": struct.unpack(">H", slot[14:16])[0] or None,
        "states": states,
        "channels": channels,
        "outcome": outcome,
    }
