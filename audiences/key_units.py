"""Key units (灾害防御重点单位): construction sites, schools, hospitals, hazardous-chemical sites,
underground garages … and the people who answer for them when a warning comes.

Each contact person is a registry entry (role key_unit_contact, external id ``k:{unit}:{phone}``)
at the unit's building, or its grid when the unit has no building of its own. An area warning
reaches them with everyone else; the ``key_units`` group reaches only them.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audiences.registry import Registry
from audiences.residents import Resident, Role, normalise_phone
from broadcast.core.keys import Keys, as_text
from broadcast.core.models import ChannelKind


class KeyUnitKind(str, Enum):
    construction_site = "construction_site"
    school = "school"
    hospital = "hospital"
    hazardous_chemicals = "hazardous_chemicals"
    underground_garage = "underground_garage"
    elderly_care = "elderly_care"
    other = "other"

    @property
    def zh(self) -> str:
        return KIND_NAMES_ZH[self]


KIND_NAMES_ZH = {
    KeyUnitKind.construction_site: "建筑工地",
    KeyUnitKind.school: "学校",
    KeyUnitKind.hospital: "医院",
    KeyUnitKind.hazardous_chemicals: "危险化学品单位",
    KeyUnitKind.underground_garage: "地下车库",
    KeyUnitKind.elderly_care: "养老机构",
    KeyUnitKind.other: "其他",
}


class Contact(BaseModel):
    """A person who answers for a key unit."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    phone: str
    title: str = Field(default="", max_length=32)  # 负责人, 安全员 …

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return normalise_phone(value)


class KeyUnit(BaseModel):
    """A place that must act on a warning, where it is, and whom to tell."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1, max_length=100)
    kind: KeyUnitKind
    community: str = Field(pattern=r"^\d{12}$")
    grid: str = Field(pattern=r"^\d{14}$")
    building: str | None = Field(default=None, pattern=r"^\d{17}$")
    address: str = Field(default="", max_length=200)
    contacts: list[Contact] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _consistent(self) -> KeyUnit:
        if not self.grid.startswith(self.community):
            raise ValueError(f"grid {self.grid} is not inside committee {self.community}")
        if self.building and not self.building.startswith(self.grid):
            raise ValueError(f"building {self.building} is not inside grid {self.grid}")
        phones = [c.phone for c in self.contacts]
        if len(set(phones)) != len(phones):
            raise ValueError("a contact phone appears twice for one unit")
        return self

    def entries(self) -> list[Resident]:
        """The contacts' registry entries."""
        return [
            Resident.model_construct(  # its parts were validated with the unit
                external_id=contact_external_id(self.id, c.phone),
                name=c.name,
                phone=c.phone,
                community=self.community,
                grid=self.grid,
                building=self.building,
                channels=[ChannelKind.sms, ChannelKind.voice],
                role=Role.key_unit_contact,
            )
            for c in self.contacts
        ]


def contact_external_id(unit_id: str, phone: str) -> str:
    return f"k:{unit_id}:{phone}"


def load_key_units(client: redis.Redis, keys: Keys, ids: Sequence[str] | None = None) -> dict[str, KeyUnit]:
    """Key units by id (all of them when ``ids`` is None)."""
    if ids is None:
        stored = {as_text(k): v for k, v in client.hgetall(keys.key_units).items()}
    else:
        found = client.hmget(keys.key_units, list(ids)) if ids else []
        stored = {i: v for i, v in zip(ids, found, strict=True) if v is not None}
    return {i: KeyUnit.model_validate_json(v) for i, v in stored.items()}


def store_key_units(client: redis.Redis, keys: Keys, units: Sequence[KeyUnit], *, register: bool = True) -> int:
    """Upsert key units by id; contacts no longer listed leave the registry."""
    old = load_key_units(client, keys, [u.id for u in units])
    listed = {u.id: {c.phone for c in u.contacts} for u in units}
    gone = [contact_external_id(i, c.phone) for i, u in old.items() for c in u.contacts if c.phone not in listed[i]]
    registry = Registry(client, keys)
    if gone:
        registry.remove(gone)
    if units:
        client.hset(keys.key_units, mapping={u.id: u.model_dump_json() for u in units})
    if register:
        registry.upsert([e for u in units for e in u.entries()])
    return len(units)
