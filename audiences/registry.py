"""Writing registry entries: records, the external-id, phone and push-token indexes, and each committee's
members index.

Two ways in, one layout. ``upsert`` rebuilds every touched committee's members index from the
records (what imports need: any committee may already hold people), switching all of them in one
transaction, so targeting never sees some committees of an import and not others. ``bulk_load`` packs the
members index straight from the entries it is given whenever the committee had no members before,
which is what makes seeding a million people a matter of seconds; a committee that already had
members still goes through the rebuild, so both ways store the same registry.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from audiences.residents import (
    HGET_MANY,
    KEY_UNIT_CONTACT,
    MEMBER,
    VOLUNTEER,
    Resident,
    Role,
    decode_record,
    encode_record,
    unpack_members,
)
from broadcast.core.keys import Keys, as_bytes, as_text
from broadcast.core.models import ChannelKind

_PIPELINE_COMMANDS = 5000  # commands sent per round trip when writing in bulk
_SCRIPT_ITEMS = 2000  # fields read or written per script call (a few milliseconds of Redis time)

# Bulk reads and writes of hash fields spread over many small hashes (index buckets): one script
# call does thousands, where a pipeline would pay a client-side command for each. The keys travel
# as arguments, which one Redis (or a Sentinel pair) allows and Redis Cluster would not.
_HSET_MANY = """
for i = 1, #ARGV, 3 do redis.call('HSET', ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
return #ARGV / 3
"""
_HDEL_MANY = """
for i = 1, #ARGV, 2 do redis.call('HDEL', ARGV[i], ARGV[i + 1]) end
return #ARGV / 2
"""
# A new external id is claimed, not overwritten: if another import claimed it meanwhile, its rid wins.
_CLAIM = """
local out = {}
for i = 1, #ARGV, 3 do
  if redis.call('HSETNX', ARGV[i], ARGV[i + 1], ARGV[i + 2]) == 1 then
    out[#out + 1] = ARGV[i + 2]
  else
    out[#out + 1] = redis.call('HGET', ARGV[i], ARGV[i + 1])
  end
end
return out
"""
# A phone's index value lists every rid using it; '+' adds a rid, '-' drops it.
_PHONE_LINKS = """
for i = 1, #ARGV, 4 do
  local key, phone, rid, op = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local listed = {}
  local current = redis.call('HGET', key, phone)
  if current then
    for r in string.gmatch(current, '%S+') do
      if r ~= rid then listed[#listed + 1] = r end
    end
  end
  if op == '+' then listed[#listed + 1] = rid end
  if #listed == 0 then
    redis.call('HDEL', key, phone)
  else
    redis.call('HSET', key, phone, table.concat(listed, ' '))
  end
end
return #ARGV / 4
"""


class _Pipe:
    """A non-transactional pipeline that sends itself every few thousand commands."""

    def __init__(self, client: redis.Redis) -> None:
        self.pipe = client.pipeline(transaction=False)
        self.queued = 0

    def __getattr__(self, name: str) -> Any:
        command = getattr(self.pipe, name)

        def queue(*args: Any, **kwargs: Any) -> None:
            command(*args, **kwargs)
            self.queued += 1
            if self.queued >= _PIPELINE_COMMANDS:
                self.flush()

        return queue

    def flush(self) -> None:
        if self.queued:
            self.pipe.execute()
            self.queued = 0


@contextmanager
def bulk_pipeline(client: redis.Redis) -> Iterator[Any]:
    """Queue any number of writes; they go out in chunks, and the rest when the block ends."""
    pipe = _Pipe(client)
    yield pipe
    pipe.flush()


def census_of(profiles: Iterable[int]) -> dict[str, int]:
    """How many residents, key-unit contacts and volunteers a committee's profiles hold."""
    counts = Counter(
        "volunteers" if p & VOLUNTEER else "key_unit_contacts" if p & KEY_UNIT_CONTACT else "residents"
        for p in profiles
    )
    return {k: counts.get(k, 0) for k in ("residents", "key_unit_contacts", "volunteers")}


@dataclass(frozen=True)
class PackedMembers:
    """A committee's members index as stored: the packed entries, its places (JSON) and census (JSON)."""

    members: bytes
    places: str
    census: str


def pack_members(members: list[tuple[int, Resident, int]]) -> PackedMembers | None:
    """A committee's (rid, entry, profile) in roster order, packed; None for a committee nobody is in."""
    if not members:
        return None
    ordered = sorted(members, key=lambda m: m[1].sort_key(m[0]))
    places = sorted({e.place for _, e, _ in ordered})
    number = {p: i for i, p in enumerate(places)}
    packed = b"".join(MEMBER.pack(rid, number[e.place], profile) for rid, e, profile in ordered)
    census = census_of(profile for _, _, profile in ordered)
    return PackedMembers(packed, json.dumps(places), json.dumps(census))


@dataclass(frozen=True)
class Written:
    """What ``write_entries`` wrote: new people, each entry's rid and profile, and the committees touched."""

    created: int
    rids: list[int]
    profiles: list[int]
    touched: set[str]  # committees entries joined or left
    moved_out: set[str]  # committees the updated entries were in before
    joining: dict[str, set[int]]  # committee -> rids written into it


class Registry:
    """Writes registry entries and keeps each committee's members index in roster order."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def _script(self, source: str, items: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run a bulk script over ``items`` (tuples of its arguments), a few thousand per call, all
        calls in one round trip."""
        if not items:
            return []
        script = self.client.register_script(source)
        with self.client.pipeline(transaction=False) as pipe:
            for i in range(0, len(items), _SCRIPT_ITEMS):
                script(args=[a for item in items[i : i + _SCRIPT_ITEMS] for a in item], client=pipe)
            replies = pipe.execute()
        return [value for reply in replies if isinstance(reply, list) for value in reply]

    # Reading
    def rids_of(self, external_ids: Sequence[str]) -> dict[str, int | None]:
        """Each external id's rid, or None for ids not in the registry."""
        raw = self._script(HGET_MANY, [(self.keys.resident_by_external(e), e) for e in external_ids])
        return {ext: int(r) if r is not None else None for ext, r in zip(external_ids, raw, strict=True)}

    def load(self, rids: Iterable[int]) -> dict[int, Resident]:
        """Entries by rid; ids without a record are left out."""
        rids = list(rids)
        raw = self._script(HGET_MANY, [(self.keys.resident_bucket(rid), rid) for rid in rids])
        return {rid: decode_record(r) for rid, r in zip(rids, raw, strict=True) if r is not None}

    def by_external_id(self, external_ids: Sequence[str]) -> dict[str, Resident]:
        """Entries by external id; unknown ids are left out."""
        rids = {ext: rid for ext, rid in self.rids_of(external_ids).items() if rid is not None}
        records = self.load(rids.values())
        return {ext: records[rid] for ext, rid in rids.items() if rid in records}

    def members(self, community: str) -> list[tuple[int, int, int]]:
        """(rid, place number, profile) of a committee, in roster order."""
        return unpack_members(as_bytes(self.client.get(self.keys.members(community)) or b""))

    # Writing
    def upsert(self, entries: Sequence[Resident]) -> dict[str, int]:
        """Insert or update entries by external id, rebuilding the touched committees from records."""
        return self._store(entries, direct=False)

    def bulk_load(self, entries: Sequence[Resident], *, new: bool = False) -> dict[str, int]:
        """Insert or update entries by external id; committees new to the registry are packed directly.

        ``new`` is the caller's promise that none of these external ids is in the registry yet
        and that no two entries, here or already stored, share a phone (a seed into an empty
        registry): the lookups and the merging of shared phones are skipped.
        """
        return self._store(entries, direct=True, new=new)

    def _store(self, entries: Sequence[Resident], *, direct: bool, new: bool = False) -> dict[str, int]:
        written = self.write_entries(entries, new=new)
        packed_directly: set[str] = set()
        if direct:
            packed_directly = self._pack_fresh(entries, written)
        self.rebuild_members(written.touched - packed_directly, written.joining)
        return {"created": written.created, "updated": len(entries) - written.created}

    def write_entries(self, entries: Sequence[Resident], *, new: bool = False) -> Written:
        """Write entries' records and indexes by external id, leaving every members index as it is:
        people new to a committee are not reachable by targeting until ``rebuild_members`` switches."""
        if len({e.external_id for e in entries}) != len(entries):
            raise ValueError("an external id appears twice in one write")
        existing = (
            dict.fromkeys((e.external_id for e in entries), None)
            if new
            else self.rids_of([e.external_id for e in entries])
        )
        created = sum(1 for rid in existing.values() if rid is None)
        first = int(self.client.incrby(self.keys.resident_next, created)) - created + 1 if created else 0
        new_ids = iter(range(first, first + created))
        rids = [existing[e.external_id] or next(new_ids) for e in entries]
        claims = [
            (self.keys.resident_by_external(e.external_id), e.external_id, rid)
            for e, rid in zip(entries, rids, strict=True)
            if existing[e.external_id] is None
        ]
        taken = {
            ext: int(winner)
            for (_, ext, rid), winner in zip(claims, self._script(_CLAIM, claims), strict=True)
            if int(winner) != rid
        }
        if taken:  # another import created these people meanwhile: this write updates them
            rids = [taken.get(e.external_id, rid) for e, rid in zip(entries, rids, strict=True)]
            existing.update(taken)
            created -= len(taken)
        profiles = [e.profile() for e in entries]
        old = self.load(rid for rid in existing.values() if rid is not None)
        self._write_records(entries, rids, profiles, old, unshared_phones=new)
        joining: dict[str, set[int]] = {}
        for rid, entry in zip(rids, entries, strict=True):
            joining.setdefault(entry.community, set()).add(rid)
        touched = {e.community for e in entries} | {o.community for o in old.values()}
        moved_out = {o.community for o in old.values()}
        return Written(created, rids, profiles, touched, moved_out, joining)

    def _pack_fresh(self, entries: Sequence[Resident], written: Written) -> set[str]:
        """Pack the members index of committees that had none straight from their entries (seeding)."""
        touched = sorted(written.touched)
        with self.client.pipeline(transaction=False) as pipe:
            for community in touched:
                pipe.exists(self.keys.members(community))
            had_members = dict(zip(touched, pipe.execute(), strict=True))
        fresh = {c for c in touched if not had_members[c] and c not in written.moved_out}
        by_community: dict[str, list[tuple[int, Resident, int]]] = {}
        for rid, entry, profile in zip(written.rids, entries, written.profiles, strict=True):
            if entry.community in fresh:
                by_community.setdefault(entry.community, []).append((rid, entry, profile))
        with bulk_pipeline(self.client) as pipe:
            for community, members in by_community.items():
                self._write_members(pipe, community, members)
        return set(by_community)

    def _write_records(
        self,
        entries: Sequence[Resident],
        rids: Sequence[int],
        profiles: Sequence[int],
        old: dict[int, Resident],
        unshared_phones: bool,
    ) -> None:
        """Records, phones and push tokens; a phone that several entries share lists all their rids."""
        k = self.keys
        links: list[tuple[str, str, int, str]] = []
        tokens_added: list[tuple[str, str, int]] = []
        tokens_dropped: list[tuple[str, str]] = []
        by_bucket: dict[str, dict[str, str]] = {}
        for rid, entry, profile in zip(rids, entries, profiles, strict=True):
            before = old.get(rid)
            if before is not None and before.phone and before.phone != entry.phone:
                links.append((k.resident_by_phone(before.phone), before.phone, rid, "-"))
            if entry.phone and (before is None or before.phone != entry.phone):
                links.append((k.resident_by_phone(entry.phone), entry.phone, rid, "+"))
            known = set(before.push_tokens) if before is not None else set()
            tokens_dropped += [(k.resident_by_push_token(t), t) for t in known - set(entry.push_tokens)]
            tokens_added += [(k.resident_by_push_token(t), t, rid) for t in entry.push_tokens if t not in known]
            by_bucket.setdefault(k.resident_bucket(rid), {})[str(rid)] = encode_record(entry, profile)
        with bulk_pipeline(self.client) as pipe:
            for key, mapping in by_bucket.items():
                pipe.hset(key, mapping=mapping)
        if unshared_phones:
            self._script(_HSET_MANY, [(key, phone, rid) for key, phone, rid, _ in links])
        else:
            self._script(_PHONE_LINKS, links)
        self._script(_HDEL_MANY, tokens_dropped)
        self._script(_HSET_MANY, tokens_added)

    def _write_members(self, pipe: Any, community: str, members: list[tuple[int, Resident, int]]) -> None:
        """Pack a committee's members index (and its places and census) from its entries."""
        self._store_packed(pipe, community, pack_members(members))

    def _store_packed(self, pipe: Any, community: str, packed: PackedMembers | None) -> None:
        k = self.keys
        if packed is None:
            pipe.delete(k.members(community), k.places(community))
            pipe.srem(k.communities, community)
            pipe.hdel(k.community_counts, community)
            return
        pipe.set(k.members(community), packed.members)
        pipe.set(k.places(community), packed.places)
        pipe.sadd(k.communities, community)
        pipe.hset(k.community_counts, community, packed.census)

    def rebuild_members(
        self,
        communities: Iterable[str],
        joining: Mapping[str, Iterable[int]] | None = None,
        leaving: Iterable[int] = (),
    ) -> None:
        """Recompute each committee's members index from its entries' current records, and switch
        them all in one transaction: targeting sees every committee as it was, or every one anew.

        ``joining`` names entries just written into a committee; entries whose record now names
        another committee, that were deleted, or that are ``leaving``, drop out.
        """
        ordered = sorted(set(communities))
        if not ordered:
            return
        gone = set(leaving)
        watched = [self.keys.members(c) for c in ordered]
        # Another import touching one of these committees must not lose its people: the indexes are
        # written only if nobody rewrote any of them since they were read, else read again.
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(*watched)
                    # Packed as each committee is read: 8 bytes a member, not its records, stay in memory.
                    rebuilt = [
                        (c, pack_members(self._members_now(pipe, c, (joining or {}).get(c, ()), gone))) for c in ordered
                    ]
                    pipe.multi()
                    for community, packed in rebuilt:
                        self._store_packed(pipe, community, packed)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def _members_now(
        self, pipe: Any, community: str, joining: Iterable[int], gone: set[int]
    ) -> list[tuple[int, Resident, int]]:
        """A committee's entries as their records now say: its current members and those joining."""
        packed = as_bytes(pipe.get(self.keys.members(community)) or b"")
        candidates = {rid for rid, _, _ in unpack_members(packed)} | set(joining)
        records = self.load(candidates - gone)
        return [(rid, e, e.profile()) for rid, e in records.items() if e.community == community]

    def remove(self, external_ids: Sequence[str]) -> int:
        """Delete entries by external id (and from every custom group); returns how many existed."""
        k = self.keys
        rids = [rid for rid in self.rids_of(external_ids).values() if rid is not None]
        records = self.load(rids)
        groups = [as_text(g) for g in self.client.hkeys(k.groups)]
        with bulk_pipeline(self.client) as pipe:
            for rid, entry in records.items():
                pipe.hdel(k.resident_bucket(rid), str(rid))
                pipe.hdel(k.resident_by_external(entry.external_id), entry.external_id)
            for name in groups:
                if records:
                    pipe.srem(k.group(name), *records)
        self._script(
            _PHONE_LINKS, [(k.resident_by_phone(e.phone), e.phone, rid, "-") for rid, e in records.items() if e.phone]
        )
        self._script(_HDEL_MANY, [(k.resident_by_push_token(t), t) for e in records.values() for t in e.push_tokens])
        self.rebuild_members({e.community for e in records.values()})
        return len(records)

    def forget_push_tokens(self, tokens: dict[int, str]) -> int:
        """Drop push tokens the provider no longer knows (rid → token); returns how many were dropped.

        Someone left without a token stops having push among their channels, so the next alert
        goes straight to their next channel.
        """
        changed: list[Resident] = []
        for rid, entry in self.load(tokens).items():
            if tokens[rid] not in entry.push_tokens:
                continue
            remaining = [t for t in entry.push_tokens if t != tokens[rid]]
            channels = entry.channels if remaining else [c for c in entry.channels if c is not ChannelKind.push]
            changed.append(entry.model_copy(update={"push_tokens": remaining, "channels": channels}))
        if changed:
            self.upsert(changed)
        return len(changed)

    def residents_of(self, community: str) -> dict[str, Resident]:
        """The committee's residents (not key-unit contacts or volunteers), by external id."""
        rids = [rid for rid, _, profile in self.members(community) if not profile & (KEY_UNIT_CONTACT | VOLUNTEER)]
        return {e.external_id: e for e in self.load(rids).values() if e.role is Role.resident}
