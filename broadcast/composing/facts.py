"""The facts of a committee a message is worded with: its name, its street's and district's, its
shelter and hotline, read from the area registry."""

from __future__ import annotations

import json
from collections.abc import Iterable

import redis.asyncio

from broadcast.composing.compose import AreaFacts
from broadcast.core.keys import Keys


async def area_facts(
    client: redis.asyncio.Redis, keys: Keys, communities: Iterable[str], hotline: str
) -> dict[str, AreaFacts]:
    """Names (and shelter) of each committee, its street and its district."""
    codes: set[str] = set()
    for c in communities:
        codes |= {c, c[:9] + "000", c[:6] + "000000"}
    ordered = sorted(codes)
    raw = await client.hmget(keys.areas, ordered)
    info = {code: json.loads(r) for code, r in zip(ordered, raw, strict=True) if r}
    facts = {}
    for c in communities:
        own = info.get(c, {})
        facts[c] = AreaFacts(
            community=own.get("name", ""),
            street=info.get(c[:9] + "000", {}).get("name", ""),
            district=info.get(c[:6] + "000000", {}).get("name", ""),
            shelter=own.get("shelter", ""),
            hotline=own.get("hotline", hotline),
            shelter_en=own.get("shelter_en", ""),
        )
    return facts
