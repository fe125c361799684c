"""Screens in buildings and lifts: where each one is, how to reach it, and how much text it shows.

A screen belongs to a building. Per committee, a small hash maps screen ids to buildings, so the
screens of any area (a building, a grid, a committee, a district) are found from the committees
the target covers, with the same place filter the roster uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import Enum
from urllib.parse import urlparse

import redis
from pydantic import BaseModel, ConfigDict, Field, model_validator

from audiences.areas import AreaTree
from audiences.targeting import CommunitySelection, resolve
from broadcast.core.keys import Keys, as_text
from broadcast.core.models import Target

_MQTT_TOPIC = re.compile(r"^[^#+\x00$][^#+\x00]{0,255}$")


class Transport(str, Enum):
    mqtt = "mqtt"  # the address is a topic on the service's broker
    http = "http"  # the address is an endpoint the screen's controller serves


class Screen(BaseModel):
    """A building or lift display."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    building: str = Field(pattern=r"^\d{17}$")
    transport: Transport
    address: str = Field(min_length=1, max_length=512)
    columns: int = Field(ge=4, le=200)  # full-width characters per line
    lines: int = Field(ge=1, le=50)
    name: str = Field(default="", max_length=64)

    @model_validator(mode="after")
    def _address(self) -> Screen:
        if self.transport is Transport.mqtt and not _MQTT_TOPIC.match(self.address):
            raise ValueError(f"{self.address!r} is not an MQTT topic to publish to (no wildcards, no leading $)")
        if self.transport is Transport.http:
            url = urlparse(self.address)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise ValueError(f"{self.address!r} is not an http(s) URL")
        return self

    @property
    def community(self) -> str:
        return self.building[:12]


def store_screens(client: redis.Redis, keys: Keys, screens: Sequence[Screen]) -> int:
    """Upsert screens by id; a screen moved to another building leaves its old committee's index."""
    ids = [s.id for s in screens]
    old_raw = client.hmget(keys.screens, ids) if ids else []
    with client.pipeline(transaction=True) as pipe:
        for raw in old_raw:
            if raw is not None:
                old = Screen.model_validate_json(raw)
                pipe.hdel(keys.community_screens(old.community), old.id)
        for screen in screens:
            pipe.hset(keys.screens, screen.id, screen.model_dump_json())
            pipe.hset(keys.community_screens(screen.community), screen.id, screen.building)
        pipe.execute()
    return len(screens)


def screen_buildings(client: redis.Redis, keys: Keys, selections: Sequence[CommunitySelection]) -> dict[str, str]:
    """Screen id → building for every screen in the places the selections cover."""
    with client.pipeline(transaction=False) as pipe:
        for sel in selections:
            pipe.hgetall(keys.community_screens(sel.community))
        per_community = pipe.execute()
    found: dict[str, str] = {}
    for sel, screens in zip(selections, per_community, strict=True):
        for raw_id, raw_building in screens.items():
            building = as_text(raw_building)
            if sel.covers(building):
                found[as_text(raw_id)] = building
    return found


def load_screens(client: redis.Redis, keys: Keys, ids: Iterable[str]) -> list[Screen]:
    """Screens by id, in id order (ids without a record are left out)."""
    ordered = sorted(ids)
    raw = client.hmget(keys.screens, ordered) if ordered else []
    return [Screen.model_validate_json(r) for r in raw if r is not None]


def screens_in(client: redis.Redis, keys: Keys, selections: Sequence[CommunitySelection]) -> list[Screen]:
    """The screens of the targeted places, each once."""
    return load_screens(client, keys, screen_buildings(client, keys, selections))


def target_screen_buildings(
    client: redis.Redis, keys: Keys, selections: Sequence[CommunitySelection], target: Target
) -> dict[str, str]:
    """Screen id → building for a warning to ``target``: a screen shows a warning to everyone
    passing, so it serves targets for whole areas, and none that names groups."""
    return {} if target.groups else screen_buildings(client, keys, selections)


def screens_for(client: redis.Redis, keys: Keys, tree: AreaTree, target: Target) -> list[Screen]:
    """The screens a warning to ``target`` goes to (what a screen channel sends to)."""
    return load_screens(client, keys, target_screen_buildings(client, keys, resolve(tree, target), target))
