"""Who asked for help: the residents behind an alert's needs-help bits, in the user's committees.

Only committees whose counter shows a case are read, and only their slice of the bitmap, so the
cost follows the number of cases, not the size of the roster. Phone numbers are masked: the
console shows where help is needed; volunteers' work lists carry the number to call.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio

from audiences.residents import load_residents
from broadcast.deliver import read_rids
from broadcast.keys import Keys, as_bytes
from broadcast.ledger import roster_index

MAX_CASES = 50


def mask_phone(phone: str | None) -> str:
    """+8613812345678 → 138****5678."""
    if not phone:
        return ""
    digits = phone[3:] if phone.startswith("+86") else phone
    return digits[:3] + "****" + digits[-4:] if len(digits) > 7 else "****"


async def help_cases(
    client: redis.asyncio.Redis, keys: Keys, alert_id: str, communities: list[dict[str, Any]], limit: int = MAX_CASES
) -> list[dict[str, str]]:
    """Up to ``limit`` residents who asked for help, from the given committee rows of a progress document."""
    index = await roster_index(client, keys, alert_id)
    if index is None:
        return []
    position = {code: i for i, code in enumerate(index.communities)}
    ends = [*index.starts[1:], index.size]
    ordinals: list[int] = []
    names: dict[int, str] = {}
    for row in communities:
        i = position.get(row["code"])
        if i is None or not row.get("needs_help"):
            continue
        start, end = index.starts[i], ends[i]
        raw = as_bytes(await client.getrange(keys.bits(alert_id, "needs_help"), start // 8, (end - 1) // 8))
        for ordinal in range(start, end):
            byte = ordinal // 8 - start // 8
            if byte < len(raw) and raw[byte] & (0x80 >> (ordinal % 8)):
                ordinals.append(ordinal)
                names[ordinal] = row["name"]
                if len(ordinals) >= limit:
                    break
        if len(ordinals) >= limit:
            break
    if not ordinals:
        return []
    rids = await read_rids(client, keys, alert_id, ordinals)
    residents = await load_residents(client, keys, rids)
    buildings = sorted({r.building for r in residents.values() if r.building})
    raw_places = await client.hmget(keys.areas, buildings) if buildings else []
    place_names = {code: json.loads(raw)["name"] for code, raw in zip(buildings, raw_places, strict=True) if raw}
    cases = []
    for ordinal, rid in zip(ordinals, rids, strict=True):
        resident = residents.get(rid)
        if resident is None:
            continue
        cases.append(
            {
                "community": names[ordinal],
                "place": " ".join(filter(None, [place_names.get(resident.building or "", ""), resident.room])),
                "name": resident.name,
                "phone": mask_phone(resident.phone),
            }
        )
    return cases
