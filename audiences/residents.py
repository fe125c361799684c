"""Residents in the registry: the record, its compact profile, and where each lives in Redis.

A resident's record is JSON in a bucket hash. Per committee, a packed *members* index lists the
committee's residents in roster order (grid, building, room, resident id), 8 bytes each, with a
16-bit *profile* (flags, language, channel order) so that freezing a roster for a million people
reads a few megabytes and parses no JSON.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import phonenumbers
import redis
import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from broadcast.keys import Keys, as_bytes, as_text
from broadcast.models import ChannelKind, Language

MEMBER = struct.Struct("<IHH")  # rid, building number within the committee, profile

# Profile bits (u16)
ELDERLY_ALONE = 1 << 0
HEARING = 1 << 1
SIGHT = 1 << 2
MOBILITY = 1 << 3
NO_SMARTPHONE = 1 << 4
ENGLISH = 1 << 5
ELDERLY = 1 << 6
VULNERABLE = ELDERLY_ALONE | HEARING | SIGHT | MOBILITY | NO_SMARTPHONE
_ORDER_SHIFT = 8

# Every ordered choice of personal channels, so a resident's preference fits in four bits.
PERSONAL_CHANNELS = (ChannelKind.sms, ChannelKind.voice, ChannelKind.push)
CHANNEL_ORDERS: list[tuple[ChannelKind, ...]] = [
    order for n in range(len(PERSONAL_CHANNELS) + 1) for order in itertools.permutations(PERSONAL_CHANNELS, n)
]
_ORDER_INDEX = {order: i for i, order in enumerate(CHANNEL_ORDERS)}

PhoneText = Annotated[str, StringConstraints(min_length=5, max_length=20)]


def normalise_phone(value: str) -> str:
    """An E.164 mainland-China mobile number, or ValueError saying why not."""
    try:
        number = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid phone number")
    if number.country_code == 86 and phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise ValueError(f"{value!r} is not a mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class Resident(BaseModel):
    """A person who should receive warnings, and how to reach them."""

    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = None
    language: Language = Language.zh
    community: str = Field(pattern=r"^\d{12}$")
    grid: str = Field(pattern=r"^\d{14}$")
    building: str = Field(pattern=r"^\d{17}$")
    room: str = Field(default="", max_length=32)
    elderly: bool = False  # 60 or older
    elderly_alone: bool = False
    disability: list[Annotated[str, StringConstraints(pattern=r"^(hearing|sight|mobility)$")]] = []
    no_smartphone: bool = False
    channels: list[ChannelKind] = [ChannelKind.sms]
    push_tokens: list[Annotated[str, StringConstraints(min_length=8, max_length=256)]] = []

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalise_phone(value) if value else None

    @model_validator(mode="after")
    def _consistent(self) -> Resident:
        if not self.grid.startswith(self.community):
            raise ValueError(f"grid {self.grid} is not inside committee {self.community}")
        if not self.building.startswith(self.grid):
            raise ValueError(f"building {self.building} is not inside grid {self.grid}")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("each channel may appear only once in channels")
        if ChannelKind.screen in self.channels:
            raise ValueError("screens belong to buildings, not to residents")
        if (ChannelKind.sms in self.channels or ChannelKind.voice in self.channels) and not self.phone:
            raise ValueError("sms and voice need a phone number")
        if ChannelKind.push in self.channels and not self.push_tokens:
            raise ValueError("push needs at least one push token")
        return self

    @property
    def vulnerable(self) -> bool:
        """Elderly living alone, with a disability, or without a smartphone: first in every queue."""
        return self.elderly_alone or bool(self.disability) or self.no_smartphone

    def profile(self) -> int:
        """The 16-bit summary the members index keeps for targeting and channel choice."""
        bits = 0
        if self.elderly:
            bits |= ELDERLY
        if self.elderly_alone:
            bits |= ELDERLY_ALONE
        for kind, bit in (("hearing", HEARING), ("sight", SIGHT), ("mobility", MOBILITY)):
            if kind in self.disability:
                bits |= bit
        if self.no_smartphone:
            bits |= NO_SMARTPHONE
        if self.language is Language.en:
            bits |= ENGLISH
        return bits | (_ORDER_INDEX[tuple(self.channels)] << _ORDER_SHIFT)

    def sort_key(self, rid: int) -> tuple[str, str, int]:
        """Roster order inside a committee: building (so grid too), room, then id."""
        return (self.building, _room_key(self.room), rid)

    def to_record(self) -> str:
        return self.model_dump_json(exclude_defaults=True)

    @classmethod
    def from_record(cls, raw: bytes | str) -> Resident:
        return cls.model_validate_json(raw)


def _room_key(room: str) -> str:
    # "3-502" sorts before "12-101": pad digit runs.
    out, digits = [], ""
    for ch in room:
        if ch.isdigit():
            digits += ch
            continue
        if digits:
            out.append(digits.zfill(6))
            digits = ""
        out.append(ch)
    if digits:
        out.append(digits.zfill(6))
    return "".join(out)


def channel_order(profile: int) -> tuple[ChannelKind, ...]:
    """The resident's channels in preferred order, from a profile."""
    return CHANNEL_ORDERS[(profile >> _ORDER_SHIFT) & 0x0F]


def language_of(profile: int) -> Language:
    return Language.en if profile & ENGLISH else Language.zh


def unpack_members(raw: bytes) -> list[tuple[int, int, int]]:
    """(rid, building number, profile) for every member of a committee."""
    return list(MEMBER.iter_unpack(raw)) if raw else []


class Registry:
    """Writes residents and keeps each committee's members index in roster order."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def upsert(self, residents: Sequence[Resident]) -> dict[str, int]:
        """Insert or update residents by external id; returns counts of created and updated."""
        k = self.keys
        externals = [r.external_id for r in residents]
        existing = (
            dict(zip(externals, self.client.hmget(k.resident_by_external, externals), strict=True)) if externals else {}
        )
        created = sum(1 for v in existing.values() if v is None)
        first = int(self.client.incrby(k.resident_next, created)) - created + 1 if created else 0
        new_ids = iter(range(first, first + created))
        rids: list[int] = [
            int(as_text(existing[r.external_id])) if existing[r.external_id] else next(new_ids) for r in residents
        ]
        old = self._load(rids)
        touched: set[str] = set()
        with self.client.pipeline(transaction=False) as pipe:
            for rid, resident in zip(rids, residents, strict=True):
                before = old.get(rid)
                if before is not None:
                    touched.add(before.community)
                    if before.phone and before.phone != resident.phone:
                        pipe.hdel(k.resident_by_phone, before.phone)
                    for token in set(before.push_tokens) - set(resident.push_tokens):
                        pipe.hdel(k.resident_by_push_token, token)
                touched.add(resident.community)
                pipe.hset(k.resident_bucket(rid), str(rid), resident.to_record())
                pipe.hset(k.resident_by_external, resident.external_id, rid)
                if resident.phone:
                    pipe.hset(k.resident_by_phone, resident.phone, rid)
                for token in resident.push_tokens:
                    pipe.hset(k.resident_by_push_token, token, rid)
            pipe.execute()
        joining: dict[str, set[int]] = {}
        for rid, resident in zip(rids, residents, strict=True):
            joining.setdefault(resident.community, set()).add(rid)
        self.rebuild_members(touched, joining)
        return {"created": created, "updated": len(residents) - created}

    def _load(self, rids: Iterable[int]) -> dict[int, Resident]:
        rids = list(rids)
        with self.client.pipeline(transaction=False) as pipe:
            for rid in rids:
                pipe.hget(self.keys.resident_bucket(rid), str(rid))
            raw = pipe.execute()
        return {rid: Resident.from_record(r) for rid, r in zip(rids, raw, strict=True) if r is not None}

    def rebuild_members(self, communities: Iterable[str], joining: dict[str, set[int]] | None = None) -> None:
        """Recompute each committee's members index from its residents' current records.

        ``joining`` names residents just written into a committee; residents whose record now
        names another committee, or who were deleted, drop out.
        """
        for community in sorted(set(communities)):
            members_key = self.keys.members(community)
            candidates = {rid for rid, _, _ in unpack_members(as_bytes(self.client.get(members_key) or b""))}
            candidates |= (joining or {}).get(community, set())
            records = self._load(candidates)
            inside = sorted((r.sort_key(rid), rid, r) for rid, r in records.items() if r.community == community)
            buildings = sorted({r.building for _, _, r in inside})
            number = {b: i for i, b in enumerate(buildings)}
            packed = b"".join(MEMBER.pack(rid, number[r.building], r.profile()) for _, rid, r in inside)
            with self.client.pipeline(transaction=True) as pipe:
                if packed:
                    pipe.set(members_key, packed)
                    pipe.set(self.keys.buildings(community), json.dumps(buildings))
                    pipe.sadd(self.keys.communities, community)
                else:
                    pipe.delete(members_key, self.keys.buildings(community))
                    pipe.srem(self.keys.communities, community)
                pipe.execute()

    def remove(self, external_ids: Sequence[str]) -> int:
        """Delete residents by external id; returns how many existed."""
        k = self.keys
        raw = self.client.hmget(k.resident_by_external, list(external_ids)) if external_ids else []
        rids = [int(v) for v in raw if v is not None]
        records = self._load(rids)
        with self.client.pipeline(transaction=False) as pipe:
            for rid, resident in records.items():
                pipe.hdel(k.resident_bucket(rid), str(rid))
                pipe.hdel(k.resident_by_external, resident.external_id)
                if resident.phone:
                    pipe.hdel(k.resident_by_phone, resident.phone)
                for token in resident.push_tokens:
                    pipe.hdel(k.resident_by_push_token, token)
            pipe.execute()
        self.rebuild_members({r.community for r in records.values()})
        return len(records)

    def forget_push_tokens(self, tokens: dict[int, str]) -> int:
        """Drop push tokens the provider no longer knows (rid → token); returns how many were dropped.

        A resident left without a token stops having push among their channels, so the next
        alert goes straight to their next channel.
        """
        records = self._load(tokens)
        changed: list[tuple[int, Resident]] = []
        for rid, resident in records.items():
            token = tokens[rid]
            if token not in resident.push_tokens:
                continue
            remaining = [t for t in resident.push_tokens if t != token]
            channels = resident.channels if remaining else [c for c in resident.channels if c is not ChannelKind.push]
            changed.append((rid, resident.model_copy(update={"push_tokens": remaining, "channels": channels})))
        with self.client.pipeline(transaction=False) as pipe:
            for rid, resident in changed:
                pipe.hset(self.keys.resident_bucket(rid), str(rid), resident.to_record())
                pipe.hdel(self.keys.resident_by_push_token, tokens[rid])
            pipe.execute()
        self.rebuild_members({r.community for _, r in changed})
        return len(changed)


async def load_residents(client: redis.asyncio.Redis, keys: Keys, rids: Sequence[int]) -> dict[int, Resident]:
    """Fetch residents' records by id (one round trip)."""
    async with client.pipeline(transaction=False) as pipe:
        for rid in rids:
            pipe.hget(keys.resident_bucket(rid), str(rid))
        raw: list[Any] = await pipe.execute()
    return {rid: Resident.from_record(r) for rid, r in zip(rids, raw, strict=True) if r is not None}
