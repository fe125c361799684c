"""How many people an area holds: residents, key-unit contacts and volunteers, at any level.

Down to committees the counts come from the per-committee census written with each members
index; inside a committee (grids, buildings) they come from its members index, whose places say
where everyone is. No record is read.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from audiences.areas import LEVEL_ORDER, Area, AreaLevel, AreaTree
from audiences.registry import census_of
from audiences.residents import MEMBER
from audiences.screens import screen_buildings
from audiences.targeting import resolve
from broadcast.core.keys import Keys
from broadcast.core.models import Target

CENSUS_FIELDS = ("residents", "key_unit_contacts", "volunteers")
_COMMUNITY_RANK = LEVEL_ORDER.index(AreaLevel.community)
_PREFIX_DIGITS = {AreaLevel.district: 6, AreaLevel.street: 9, AreaLevel.community: 12}  # what a code keeps


def describe(area: Area) -> dict[str, Any]:
    """An area as the API shows it."""
    out: dict[str, Any] = {"code": area.code, "name": area.name, "level": area.level.value, "kind": area.kind}
    if area.placeholder:
        out["placeholder"] = True
    return out


def _empty() -> dict[str, int]:
    return dict.fromkeys(CENSUS_FIELDS, 0)


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for name in CENSUS_FIELDS:
        total[name] += part.get(name, 0)


def community_census(client: redis.Redis, keys: Keys, communities: list[str]) -> dict[str, dict[str, int]]:
    """Each committee's census (zeros for committees nobody is registered in)."""
    raw = client.hmget(keys.community_counts, communities) if communities else []
    return {c: json.loads(r) if r else _empty() for c, r in zip(communities, raw, strict=True)}


def place_census(client: redis.Redis, keys: Keys, community: str) -> dict[str, dict[str, int]]:
    """The census of each place (building, grid or the committee itself) of one committee."""
    with client.pipeline(transaction=False) as pipe:
        pipe.get(keys.members(community))
        pipe.get(keys.places(community))
        packed, places_raw = pipe.execute()
    if not packed:
        return {}
    places: list[str] = json.loads(places_raw)
    profiles: dict[int, list[int]] = {}
    for _, place, profile in MEMBER.iter_unpack(packed):
        profiles.setdefault(place, []).append(profile)
    return {places[p]: census_of(found) for p, found in profiles.items()}


def area_report(client: redis.Redis, keys: Keys, tree: AreaTree, code: str) -> dict[str, Any]:
    """The area, its parent chain, its children, and the census of each (KeyError if unknown)."""
    area = tree.get(code)
    children = tree.children(code)
    child_counts = {child.code: _empty() for child in children}
    own = _empty()
    if LEVEL_ORDER.index(area.level) < _COMMUNITY_RANK:
        communities = [c.code for c in tree.descendants(code, AreaLevel.community)]
        digits = _PREFIX_DIGITS[LEVEL_ORDER[LEVEL_ORDER.index(area.level) + 1]]
        child_by_prefix = {child.code[:digits]: child.code for child in children}
        for community, counts in community_census(client, keys, communities).items():
            _add(own, counts)
            if community[:digits] in child_by_prefix:
                _add(child_counts[child_by_prefix[community[:digits]]], counts)
    else:
        community = code[:12]
        for place, counts in place_census(client, keys, community).items():
            if place.startswith(code):
                _add(own, counts)
                child = next((c for c in child_counts if place.startswith(c)), None)
                if child is not None:
                    _add(child_counts[child], counts)
    screens = len(screen_buildings(client, keys, resolve(tree, Target(areas=[code]))))
    return {
        "area": describe(area),
        "parents": [describe(a) for a in tree.ancestors(code)],
        **own,
        "screens": screens,
        "children": [{**describe(child), **child_counts[child.code]} for child in children],
    }
