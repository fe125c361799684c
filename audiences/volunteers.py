"""Grid volunteers and community workers: who they are, the grids or buildings each covers, and gaps.

Each volunteer is also a registry entry (role volunteer, external id ``v:{id}``) placed at the
smallest area holding everything they cover, so "all volunteers in 黄浦区" is a group of an
ordinary target and their replies are matched like anyone's.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Annotated

import redis
import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from audiences.areas import Area, AreaLevel, AreaTree
from audiences.registry import Registry
from audiences.residents import Resident, Role, normalise_phone
from broadcast.core.keys import Keys, as_text
from broadcast.core.models import ChannelKind


class VolunteerRole(str, Enum):
    grid_worker = "网格员"
    building_leader = "楼组长"
    community_worker = "居委社工"
    volunteer = "志愿者"


class Volunteer(BaseModel):
    """Someone who follows up in person: who they are, how to reach them, where they cover."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    name: str = Field(min_length=1, max_length=64)
    phone: str
    role: VolunteerRole
    community: str = Field(pattern=r"^\d{12}$")
    grids: list[Annotated[str, StringConstraints(pattern=r"^\d{14}$")]] = []
    buildings: list[Annotated[str, StringConstraints(pattern=r"^\d{17}$")]] = []

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return normalise_phone(value)

    @model_validator(mode="after")
    def _inside(self) -> Volunteer:
        outside = [c for c in [*self.grids, *self.buildings] if not c.startswith(self.community)]
        if outside:
            raise ValueError(f"{', '.join(outside)} not inside committee {self.community}")
        return self

    def entry(self) -> Resident:
        """The volunteer's registry entry, at the smallest area holding all they cover."""
        covered = [*self.grids, *self.buildings]
        grid = building = None
        if covered and len({c[:14] for c in covered}) == 1:
            grid = covered[0][:14]
            if not self.grids and len(set(self.buildings)) == 1:
                building = self.buildings[0]
        return Resident.model_construct(  # its parts were validated with the volunteer
            external_id=f"v:{self.id}",
            name=self.name,
            phone=self.phone,
            community=self.community,
            grid=grid,
            building=building,
            channels=[ChannelKind.sms, ChannelKind.voice],
            role=Role.volunteer,
        )


def store_volunteers(client: redis.Redis, keys: Keys, volunteers: Sequence[Volunteer], *, register: bool = True) -> int:
    """Upsert volunteers by id, index them by the grids and buildings they cover, and (unless the
    caller writes entries itself, as seeding does) upsert their registry entries."""
    ids = [v.id for v in volunteers]
    old_raw = client.hmget(keys.volunteers, ids) if ids else []
    with client.pipeline(transaction=True) as pipe:
        for raw in old_raw:
            if raw is not None:
                old = Volunteer.model_validate_json(raw)
                for grid in old.grids:
                    pipe.srem(keys.grid_volunteers(grid), old.id)
                for building in old.buildings:
                    pipe.srem(keys.building_volunteers(building), old.id)
                pipe.srem(keys.community_volunteers(old.community), old.id)
        for v in volunteers:
            pipe.hset(keys.volunteers, v.id, v.model_dump_json())
            for grid in v.grids:
                pipe.sadd(keys.grid_volunteers(grid), v.id)
            for building in v.buildings:
                pipe.sadd(keys.building_volunteers(building), v.id)
            pipe.sadd(keys.community_volunteers(v.community), v.id)
        pipe.execute()
    if register:
        Registry(client, keys).upsert([v.entry() for v in volunteers])
    return len(volunteers)


def grids_without_volunteers(client: redis.Redis, keys: Keys, tree: AreaTree, area: str) -> list[Area]:
    """The grids in ``area`` that no volunteer covers (buildings covered one by one do not count)."""
    grids = list(tree.descendants(area, AreaLevel.grid))
    with client.pipeline(transaction=False) as pipe:
        for grid in grids:
            pipe.scard(keys.grid_volunteers(grid.code))
        covered = pipe.execute()
    return [grid for grid, n in zip(grids, covered, strict=True) if not n]


async def volunteers_for_grid(client: redis.asyncio.Redis, keys: Keys, grid: str) -> list[Volunteer]:
    """The volunteers who cover a grid."""
    return await _volunteers(
        client, keys, sorted(as_text(i) for i in await client.smembers(keys.grid_volunteers(grid)))
    )


async def volunteers_for(client: redis.asyncio.Redis, keys: Keys, entry: Resident) -> list[Volunteer]:
    """Who follows up on someone: those covering their building first, then their grid's."""
    ids: list[str] = []
    for key in (
        keys.building_volunteers(entry.building) if entry.building else None,
        keys.grid_volunteers(entry.grid) if entry.grid else None,
    ):
        if key is not None:
            ids += [i for i in sorted(as_text(v) for v in await client.smembers(key)) if i not in ids]
    return await _volunteers(client, keys, ids)


async def community_volunteers(client: redis.asyncio.Redis, keys: Keys, community: str) -> list[Volunteer]:
    """Everyone who follows up in a committee: its grid volunteers and its community workers."""
    ids = sorted(as_text(i) for i in await client.smembers(keys.community_volunteers(community)))
    return await _volunteers(client, keys, ids)


async def _volunteers(client: redis.asyncio.Redis, keys: Keys, ids: list[str]) -> list[Volunteer]:
    if not ids:
        return []
    raw = await client.hmget(keys.volunteers, ids)
    return [Volunteer.model_validate_json(r) for r in raw if r is not None]
