"""People in the registry: the record, its compact profile, and how both are stored.

A registry entry is a resident, a contact person of a key unit (灾害防御重点单位), or a volunteer:
everyone a warning may be addressed to. Each entry has a 16-bit *profile* (flags, language,
channel order, role) that the per-committee *members index* keeps beside the entry's id and place,
so that freezing a roster for millions reads a few megabytes and parses no record.

The record itself is a short JSON array, not an object: at 25 million entries every byte counts
(see ``encode_record``). Everything the profile holds is left out of the record.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any

import phonenumbers
import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from broadcast.core.keys import Keys
from broadcast.core.models import ChannelKind, Language

MEMBER = struct.Struct("<IHH")  # rid, place number within the committee, profile

# Profile bits (u16)
ELDERLY_ALONE = 1 << 0
HEARING = 1 << 1
SIGHT = 1 << 2
MOBILITY = 1 << 3
NO_SMARTPHONE = 1 << 4
ENGLISH = 1 << 5
ELDERLY = 1 << 6
OPTED_OUT = 1 << 7  # asked for no warnings that are not life-threatening
_ORDER_SHIFT = 8  # bits 8-11: index into CHANNEL_ORDERS
KEY_UNIT_CONTACT = 1 << 12
VOLUNTEER = 1 << 13
VULNERABLE = ELDERLY_ALONE | HEARING | SIGHT | MOBILITY | NO_SMARTPHONE
DISABILITIES = (("hearing", HEARING), ("sight", SIGHT), ("mobility", MOBILITY))

# Every ordered choice of personal channels, so an entry's preference fits in four bits.
PERSONAL_CHANNELS = (ChannelKind.sms, ChannelKind.voice, ChannelKind.push)
CHANNEL_ORDERS: list[tuple[ChannelKind, ...]] = [
    order for n in range(len(PERSONAL_CHANNELS) + 1) for order in itertools.permutations(PERSONAL_CHANNELS, n)
]
_ORDER_INDEX = {order: i for i, order in enumerate(CHANNEL_ORDERS)}


class Role(str, Enum):
    """Why an entry is in the registry; derived entries carry their source in the external id."""

    resident = "resident"
    key_unit_contact = "key_unit_contact"  # external id "k:{unit id}:{phone}"
    volunteer = "volunteer"  # external id "v:{volunteer id}"


_ROLE_BITS = {Role.resident: 0, Role.key_unit_contact: KEY_UNIT_CONTACT, Role.volunteer: VOLUNTEER}
_ROLE_PREFIX = {Role.key_unit_contact: "k:", Role.volunteer: "v:"}

Text = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[^\x00-\x1f\x7f]*$")]


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
    """Someone a warning is addressed to, where they are, and how to reach them."""

    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(pattern=r"^\S{1,96}$")
    name: Text = Field(min_length=1, max_length=64)
    phone: str | None = None
    language: Language = Language.zh
    community: str = Field(pattern=r"^\d{12}$")
    grid: str | None = Field(default=None, pattern=r"^\d{14}$")
    building: str | None = Field(default=None, pattern=r"^\d{17}$")
    room: Text = Field(default="", max_length=32)
    elderly: bool = False  # 60 or older
    elderly_alone: bool = False
    disability: list[Annotated[str, StringConstraints(pattern=r"^(hearing|sight|mobility)$")]] = []
    no_smartphone: bool = False
    opted_out: bool = False
    channels: list[ChannelKind] = [ChannelKind.sms]
    push_tokens: list[Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{8,256}$")]] = []
    role: Role = Role.resident

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalise_phone(value) if value else None

    @field_validator("disability")
    @classmethod
    def _disability(cls, value: list[str]) -> list[str]:
        return [kind for kind, _ in DISABILITIES if kind in value]  # one canonical order

    @model_validator(mode="after")
    def _consistent(self) -> Resident:
        prefix = _ROLE_PREFIX.get(self.role)
        if prefix is None and ":" in self.external_id:
            raise ValueError("a resident's external id may not contain ':' (reserved for derived entries)")
        if prefix is not None and not self.external_id.startswith(prefix):
            raise ValueError(f"a {self.role.value} entry's external id starts with {prefix!r}")
        if self.grid and not self.grid.startswith(self.community):
            raise ValueError(f"grid {self.grid} is not inside committee {self.community}")
        if self.building and not (self.grid and self.building.startswith(self.grid)):
            raise ValueError(f"building {self.building} is not inside grid {self.grid}")
        if self.role is Role.resident and not self.building:
            raise ValueError("a resident lives in a building")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("each channel may appear only once in channels")
        if ChannelKind.screen in self.channels:
            raise ValueError("screens belong to buildings, not to people")
        if (ChannelKind.sms in self.channels or ChannelKind.voice in self.channels) and not self.phone:
            raise ValueError("sms and voice need a phone number")
        if ChannelKind.push in self.channels and not self.push_tokens:
            raise ValueError("push needs at least one push token")
        return self

    @property
    def place(self) -> str:
        """Where the entry sits in the roster: its building, else its grid, else its committee."""
        return self.building or self.grid or self.community

    @property
    def vulnerable(self) -> bool:
        """Elderly living alone, with a disability, or without a smartphone: first in every queue."""
        return self.elderly_alone or bool(self.disability) or self.no_smartphone

    def profile(self) -> int:
        """The 16-bit summary the members index keeps for targeting and channel choice."""
        bits = _ROLE_BITS[self.role] | (_ORDER_INDEX[tuple(self.channels)] << _ORDER_SHIFT)
        for flag, bit in (
            (self.elderly, ELDERLY),
            (self.elderly_alone, ELDERLY_ALONE),
            (self.no_smartphone, NO_SMARTPHONE),
            (self.language is Language.en, ENGLISH),
            (self.opted_out, OPTED_OUT),
        ):
            if flag:
                bits |= bit
        for kind, bit in DISABILITIES:
            if kind in self.disability:
                bits |= bit
        return bits

    def sort_key(self, rid: int) -> tuple[str, str, int]:
        """Roster order inside a committee: place (so grid too), room, then id."""
        return (self.place, _room_key(self.room), rid)

    def to_record(self) -> str:
        return encode_record(self)

    @classmethod
    def from_record(cls, raw: bytes | str) -> Resident:
        return decode_record(raw)


def encode_record(entry: Resident, profile: int | None = None) -> str:
    """The stored form: [external id, name, phone, place, room, profile, push tokens…].

    Community and grid are prefixes of the place; flags, language, channels and role are in the
    profile. About 100 bytes for a typical resident instead of 250 as a JSON object.
    """
    if profile is None:
        profile = entry.profile()
    fields: list[Any] = [entry.external_id, entry.name, entry.phone or "", entry.place, entry.room, profile]
    return json.dumps(fields + entry.push_tokens, ensure_ascii=False, separators=(",", ":"))


def decode_record(raw: bytes | str) -> Resident:
    """A stored record back as the entry it was made from (trusted: it was validated when written)."""
    external_id, name, phone, place, room, profile, *tokens = json.loads(raw)
    role = (
        Role.volunteer
        if profile & VOLUNTEER
        else Role.key_unit_contact
        if profile & KEY_UNIT_CONTACT
        else Role.resident
    )
    return Resident.model_construct(
        external_id=external_id,
        name=name,
        phone=phone or None,
        language=language_of(profile),
        community=place[:12],
        grid=place[:14] if len(place) >= 14 else None,
        building=place if len(place) == 17 else None,
        room=room,
        elderly=bool(profile & ELDERLY),
        elderly_alone=bool(profile & ELDERLY_ALONE),
        disability=[kind for kind, bit in DISABILITIES if profile & bit],
        no_smartphone=bool(profile & NO_SMARTPHONE),
        opted_out=bool(profile & OPTED_OUT),
        channels=list(channel_order(profile)),
        push_tokens=tokens,
        role=role,
    )


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
    """The entry's channels in preferred order, from a profile."""
    return CHANNEL_ORDERS[(profile >> _ORDER_SHIFT) & 0x0F]


def language_of(profile: int) -> Language:
    return Language.en if profile & ENGLISH else Language.zh


def unpack_members(raw: bytes) -> list[tuple[int, int, int]]:
    """(rid, place number, profile) for every member of a committee."""
    return list(MEMBER.iter_unpack(raw)) if raw else []


def phone_rids(raw: bytes | str | None) -> list[int]:
    """The rids a phone index value names (usually one; a shared phone names several)."""
    if raw is None:
        return []
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [int(part) for part in text.split()]


# HGET of many fields over many small hashes (record buckets, index buckets) in one command: a
# pipeline would cost the client a command each. The keys travel as arguments, which one Redis (or a
# Sentinel pair) allows and Redis Cluster would not.
HGET_MANY = """
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = redis.call('HGET', ARGV[i], ARGV[i + 1]) end
return out
"""
# The same, with the (key, field) pairs in one argument, each followed by a newline (neither holds
# one: keys are ours, fields are ids and phone numbers): packing thousands of arguments is most of
# what such a call costs the asyncio client.
_HGET_MANY_PACKED = """
local out = {}
for key, field in string.gmatch(ARGV[1], "([^\\n]+)\\n([^\\n]+)\\n") do
  out[#out + 1] = redis.call('HGET', key, field)
end
return out
"""
_HGET_MANY_CHUNK = 5000  # fields a call (a few milliseconds of Redis time)


async def hget_many(client: redis.asyncio.Redis, pairs: Sequence[tuple[str, str]]) -> list[Any]:
    """HGET each (key, field), in order (None where missing); a round trip per five thousand."""
    out: list[Any] = []
    for start in range(0, len(pairs), _HGET_MANY_CHUNK):
        packed = "".join(f"{key}\n{field}\n" for key, field in pairs[start : start + _HGET_MANY_CHUNK])
        out += await client.eval(_HGET_MANY_PACKED, 0, packed)  # a missing field comes back as None
    return out


async def load_places(client: redis.asyncio.Redis, keys: Keys, rids: Sequence[int]) -> dict[int, str]:
    """Where each entry sits in a roster (its place; see Resident.place), by id, without decoding records."""
    raw = await hget_many(client, [(keys.resident_bucket(rid), str(rid)) for rid in rids])
    return {rid: json.loads(r)[3] for rid, r in zip(rids, raw, strict=True) if r is not None}


async def load_residents(client: redis.asyncio.Redis, keys: Keys, rids: Sequence[int]) -> dict[int, Resident]:
    """Fetch entries' records by id (one round trip)."""
    raw = await hget_many(client, [(keys.resident_bucket(rid), str(rid)) for rid in rids])
    return {rid: decode_record(r) for rid, r in zip(rids, raw, strict=True) if r is not None}
