"""Groups: who inside the targeted areas a warning is for.

*Derived* groups come from profile bits every members index already holds (vulnerable, elderly,
key units, volunteers …). *Custom* groups are named sets of registry entries (a flood-rescue team,
the residents of basement flats) kept as Redis sets and loaded once per plan. A member belongs to
the target if it is in any named group; with no group named, everyone in the areas is in except
volunteers, who are reached as volunteers (their own group, and the follow-up lists) rather than
twice as residents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis
from pydantic import BaseModel, ConfigDict, Field

from audiences.residents import (
    ELDERLY,
    ELDERLY_ALONE,
    ENGLISH,
    HEARING,
    KEY_UNIT_CONTACT,
    MOBILITY,
    NO_SMARTPHONE,
    OPTED_OUT,
    SIGHT,
    VOLUNTEER,
    VULNERABLE,
)
from audiences.targeting import TargetError
from broadcast.core.keys import Keys, as_text
from broadcast.core.models import Level

# Derived groups: a member belongs if any of the group's profile bits is set.
DERIVED_GROUPS: dict[str, tuple[int, str]] = {
    "vulnerable": (VULNERABLE, "elderly living alone, with a disability, or without a smartphone"),
    "elderly": (ELDERLY, "60 or older"),
    "elderly_alone": (ELDERLY_ALONE, "elderly living alone"),
    "disability": (HEARING | SIGHT | MOBILITY, "any disability"),
    "hearing": (HEARING, "hearing impaired"),
    "sight": (SIGHT, "sight impaired"),
    "mobility": (MOBILITY, "mobility impaired"),
    "no_smartphone": (NO_SMARTPHONE, "without a smartphone"),
    "english": (ENGLISH, "English speakers"),
    "key_units": (KEY_UNIT_CONTACT, "contact people of key units (灾害防御重点单位)"),
    "volunteers": (VOLUNTEER, "grid workers, building leaders, community workers and volunteers"),
}
GROUP_NAME = r"^[a-z][a-z0-9_:-]{0,63}$"


class CustomGroup(BaseModel):
    """A named set of registry entries, chosen by hand rather than derived from flags."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=GROUP_NAME)
    title: str = Field(min_length=1, max_length=100)
    size: int = 0


def custom_groups(client: redis.Redis, keys: Keys) -> dict[str, CustomGroup]:
    """Every custom group, by name."""
    return {as_text(k): CustomGroup.model_validate_json(v) for k, v in client.hgetall(keys.groups).items()}


def store_custom_group(client: redis.Redis, keys: Keys, group: CustomGroup, rids: Iterable[int]) -> CustomGroup:
    """Create or replace a custom group's membership."""
    if group.name in DERIVED_GROUPS:
        raise ValueError(f"{group.name!r} is a derived group; choose another name")
    members = sorted(set(rids))
    stored = group.model_copy(update={"size": len(members)})
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.group(group.name))
        for i in range(0, len(members), 5000):
            pipe.sadd(keys.group(group.name), *members[i : i + 5000])
        pipe.hset(keys.groups, group.name, stored.model_dump_json())
        pipe.execute()
    return stored


def unknown_groups(client: redis.Redis, keys: Keys, groups: Sequence[str]) -> list[str]:
    """The names that are neither derived nor custom groups."""
    custom = custom_groups(client, keys) if any(g not in DERIVED_GROUPS for g in groups) else {}
    return [g for g in groups if g not in DERIVED_GROUPS and g not in custom]


@dataclass(frozen=True)
class Audience:
    """The per-member rule of a target: which profiles and rids are in."""

    grouped: bool  # some group was named
    mask: int  # profile bits of the named derived groups
    custom: frozenset[int]  # rids of the named custom groups
    skip: int  # profile bits that leave a member out whatever the groups

    def admitted(self, members: Iterable[tuple[int, int, int]], covered: Sequence[bool]) -> list[tuple[int, int, int]]:
        """The (rid, place number, profile) members in covered places that the rule lets in, in order."""
        skip, mask, custom = self.skip, self.mask, self.custom
        if not self.grouped:
            return [m for m in members if covered[m[1]] and not m[2] & skip]
        return [m for m in members if covered[m[1]] and not m[2] & skip and (m[2] & mask or m[0] in custom)]


def audience(
    client: redis.Redis, keys: Keys, groups: Sequence[str], level: Level | None, override_levels: Sequence[Level]
) -> Audience:
    """The rule for ``groups`` at ``level``: opt-outs hold unless the level overrides them.

    Unknown group names are a TargetError naming them; a custom group's members are loaded here,
    once, so the selection pass does no Redis round trip per member.
    """
    unknown = unknown_groups(client, keys, groups)
    if unknown:
        known = ", ".join([*DERIVED_GROUPS, *sorted(custom_groups(client, keys))])
        raise TargetError(f"unknown group(s): {', '.join(unknown)}; known: {known}", "target.groups")
    mask = 0
    custom: set[int] = set()
    for name in groups:
        if name in DERIVED_GROUPS:
            mask |= DERIVED_GROUPS[name][0]
        else:
            custom |= {int(rid) for rid in client.smembers(keys.group(name))}
    skip = 0 if groups else VOLUNTEER
    if level not in override_levels:
        skip |= OPTED_OUT
    return Audience(bool(groups), mask, frozenset(custom), skip)
