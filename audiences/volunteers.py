"""Grid volunteers and community workers, and the grids or buildings each one covers."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Annotated

import redis
import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from audiences.residents import normalise_phone
from broadcast.keys import Keys


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


def store_volunteers(client: redis.Redis, keys: Keys, volunteers: Sequence[Volunteer]) -> int:
    """Upsert volunteers by id and index them by the grids they cover."""
    ids = [v.id for v in volunteers]
    old_raw = client.hmget(keys.volunteers, ids) if ids else []
    with client.pipeline(transaction=True) as pipe:
        for raw in old_raw:
            if raw is not None:
                old = Volunteer.model_validate_json(raw)
                for grid in old.grids:
                    pipe.srem(keys.grid_volunteers(grid), old.id)
        for v in volunteers:
            pipe.hset(keys.volunteers, v.id, v.model_dump_json())
            for grid in v.grids:
                pipe.sadd(keys.grid_volunteers(grid), v.id)
        pipe.execute()
    return len(volunteers)


async def volunteers_for_grid(client: redis.asyncio.Redis, keys: Keys, grid: str) -> list[Volunteer]:
    """The volunteers who cover a grid."""
    ids = sorted(await client.smembers(keys.grid_volunteers(grid)))
    if not ids:
        return []
    raw = await client.hmget(keys.volunteers, ids)
    return [Volunteer.model_validate_json(r) for r in raw if r is not None]
