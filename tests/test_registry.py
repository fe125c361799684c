"""The registry: what is stored for each person, and the bulk path that seeds a million of them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis

from audiences.areas import AreaTree, read_divisions, store_areas
from audiences.census import community_census
from audiences.key_units import Contact, KeyUnit, KeyUnitKind, store_key_units
from audiences.population import Population, generate, store_population
from audiences.registry import Registry
from audiences.residents import Resident, channel_order, decode_record, encode_record, phone_rids
from audiences.volunteers import Volunteer, VolunteerRole, store_volunteers, volunteers_for
from broadcast import lifecycle
from broadcast.core.keys import Keys
from broadcast.core.models import ChannelKind, Level, ReplyEvent
from broadcast.hearing.inbound import Inbox, Recorded
from broadcast.issuing.plan import freeze
from broadcast.running.cli import main
from tests.conftest import STREET
from tests.helpers import draft

COMMUNITY = "310115005001"


def dump(client: redis.Redis, ns: str) -> dict[str, Any]:
    """Every key of a namespace with its value, the namespace left out, so two registries compare."""
    out: dict[str, Any] = {}
    for raw in client.scan_iter(match=f"{ns}:*", count=1000):
        key = raw.decode()
        kind = client.type(key).decode()
        read: Any = {"string": client.get, "hash": client.hgetall, "set": client.smembers}[kind]
        value = read(key)
        out[key.removeprefix(ns)] = value
    return out


def test_generated_people_are_valid_and_their_records_round_trip(tree: AreaTree) -> None:
    people = generate(tree, STREET, 600, seed=3, key_units=True)
    entries = people.entries()
    assert len(entries) > 600 and people.key_units and people.volunteers
    for entry in entries:
        assert Resident.model_validate(entry.model_dump()) == entry, entry.external_id
        assert decode_record(encode_record(entry)) == entry, entry.external_id
    assert len(encode_record(people.residents[0]).encode()) < 130, "records stay compact"
    elderly = sum(r.elderly for r in people.residents) / len(people.residents)
    assert 0.10 <= elderly <= 0.20, "10-20 % elderly"
    assert all(not tree.get(r.community).placeholder for r in people.residents)


def test_bulk_path_stores_the_same_registry_as_the_normal_path(ctx: Any, tree: AreaTree) -> None:
    people = generate(tree, STREET, 600, seed=3, key_units=True)
    bulk, normal = ctx.keys, Keys(ctx.keys.ns + "n")
    store_areas(ctx.redis, normal, read_divisions())

    assert store_population(ctx.redis, bulk, people)["created"] == len(people.entries())
    store_areas(ctx.redis, normal, people.areas)
    Registry(ctx.redis, normal).upsert(people.entries())
    store_volunteers(ctx.redis, normal, people.volunteers, register=False)
    store_key_units(ctx.redis, normal, people.key_units, register=False)

    stored = dump(ctx.redis, bulk.ns)
    assert stored == dump(ctx.redis, normal.ns)
    assert any(key.startswith(":members:") for key in stored)

    again = store_population(ctx.redis, bulk, people)
    assert again["created"] == 0 and again["updated"] == len(people.entries())
    assert dump(ctx.redis, bulk.ns) == {**stored, ":areas:version": b"3"}, "seeding twice changes nothing else"


def test_a_shared_phone_reaches_every_entry_until_one_leaves(ctx: Any, population: Population) -> None:
    registry = Registry(ctx.redis, ctx.keys)
    first, second = population.residents[0], population.residents[1]
    assert first.phone
    registry.upsert([second.model_copy(update={"phone": first.phone})])
    rids = registry.rids_of([first.external_id, second.external_id])
    listed = phone_rids(ctx.redis.hget(ctx.keys.resident_by_phone(first.phone), first.phone))
    assert sorted(listed) == sorted(rids.values())  # type: ignore[type-var]
    assert second.phone and ctx.redis.hget(ctx.keys.resident_by_phone(second.phone), second.phone) is None

    assert registry.remove([first.external_id]) == 1
    assert phone_rids(ctx.redis.hget(ctx.keys.resident_by_phone(first.phone), first.phone)) == [
        rids[second.external_id]
    ]
    assert registry.by_external_id([first.external_id]) == {}


def test_moving_house_moves_the_entry_between_committees(ctx: Any, population: Population) -> None:
    registry = Registry(ctx.redis, ctx.keys)
    mover = next(r for r in population.residents if r.community == COMMUNITY)
    there = next(r for r in population.residents if r.community != COMMUNITY)
    rid = registry.rids_of([mover.external_id])[mover.external_id]
    before = community_census(ctx.redis, ctx.keys, [COMMUNITY])[COMMUNITY]

    registry.upsert(
        [mover.model_copy(update={"community": there.community, "grid": there.grid, "building": there.building})]
    )

    assert rid not in {m[0] for m in registry.members(COMMUNITY)}
    assert rid in {m[0] for m in registry.members(there.community)}
    assert community_census(ctx.redis, ctx.keys, [COMMUNITY])[COMMUNITY]["residents"] == before["residents"] - 1


@pytest.mark.parametrize(
    ("grids", "buildings", "place"),
    [
        ([], [], COMMUNITY),
        (["31011500500101"], [], "31011500500101"),
        ([], ["31011500500101002"], "31011500500101002"),
        ([], ["31011500500101002", "31011500500101003"], "31011500500101"),
        (["31011500500101"], ["31011500500101002"], "31011500500101"),
        (["31011500500101", "31011500500102"], [], COMMUNITY),
    ],
)
def test_a_volunteer_sits_at_the_smallest_area_holding_what_they_cover(
    grids: list[str], buildings: list[str], place: str
) -> None:
    volunteer = Volunteer(
        id="v1",
        name="王芳",
        phone="13912345678",
        role=VolunteerRole.grid_worker,
        community=COMMUNITY,
        grids=grids,
        buildings=buildings,
    )
    assert volunteer.entry().place == place
    assert Resident.model_validate(volunteer.entry().model_dump()) == volunteer.entry()


def test_a_reply_from_a_shared_phone_confirms_the_entry_the_alert_reached(ctx: Any, population: Population) -> None:
    resident = next(r for r in population.residents if r.community == COMMUNITY)
    site = next(r for r in population.residents if r.community != COMMUNITY)
    assert resident.phone and site.grid
    unit = KeyUnit(
        id="site-1",
        name="陆家嘴某工地",
        kind=KeyUnitKind.construction_site,
        community=site.community,
        grid=site.grid,
        contacts=[Contact(name=resident.name, phone=resident.phone, title="负责人")],
    )
    store_key_units(ctx.redis, ctx.keys, [unit])
    alert = lifecycle.compose(ctx, draft([site.grid], Level.blue))
    freeze(ctx, alert)

    async def reply() -> Recorded:
        client = ctx.async_redis()
        try:
            return await Inbox(ctx, client).record_reply(
                ReplyEvent(channel=ChannelKind.sms, from_address=resident.phone or "", body="1")
            )
        finally:
            await client.aclose()

    recorded = asyncio.run(reply())
    assert (recorded.outcome, recorded.alert_id) == ("acknowledged", alert.id)
    contact_rid = Registry(ctx.redis, ctx.keys).rids_of([f"k:site-1:{resident.phone}"])[f"k:site-1:{resident.phone}"]
    roster = ctx.redis.get(ctx.keys.roster(alert.id)) or b""
    assert recorded.ordinal is not None
    assert int.from_bytes(roster[recorded.ordinal * 4 : recorded.ordinal * 4 + 4], "little") == contact_rid


def test_who_follows_up_on_a_resident(ctx: Any, population: Population) -> None:
    led = {b for v in population.volunteers for b in v.buildings}
    resident = next(r for r in population.residents if r.building in led)

    async def lookup() -> list[Volunteer]:
        client = ctx.async_redis()
        try:
            return await volunteers_for(client, ctx.keys, resident)
        finally:
            await client.aclose()

    found = asyncio.run(lookup())
    assert [v.role for v in found] == [VolunteerRole.building_leader, VolunteerRole.grid_worker]
    assert found[0].buildings == [resident.building] and found[1].grids == [resident.grid]


def test_an_import_landing_mid_rebuild_loses_nobody(ctx: Any, population: Population) -> None:
    neighbour = next(r for r in population.residents if r.community == COMMUNITY)
    first = neighbour.model_copy(update={"external_id": "late-1", "phone": "13800001111"})
    second = neighbour.model_copy(update={"external_id": "late-2", "phone": "13800002222"})
    registry = Registry(ctx.redis, ctx.keys)
    load = registry.load
    landed = False

    def load_while_another_import_lands(rids: Any) -> dict[int, Resident]:
        nonlocal landed
        found = load(rids)
        if len(found) > 1 and not landed:  # the committee's records are read: now the other import writes
            landed = True
            Registry(ctx.redis, ctx.keys).upsert([second])
        return found

    registry.load = load_while_another_import_lands  # type: ignore[method-assign]
    registry.upsert([first])

    assert landed
    members = {rid for rid, _, _ in Registry(ctx.redis, ctx.keys).members(COMMUNITY)}
    assert set(Registry(ctx.redis, ctx.keys).rids_of(["late-1", "late-2"]).values()) <= members


def test_two_imports_creating_the_same_person_make_one_entry(ctx: Any, population: Population) -> None:
    neighbour = next(r for r in population.residents if r.community == COMMUNITY)
    newcomer = neighbour.model_copy(update={"external_id": "new-1", "phone": "13800003333", "name": "后到"})
    registry = Registry(ctx.redis, ctx.keys)
    lookup = registry.rids_of

    def look_up_before_the_other_import_lands(external_ids: Any) -> dict[str, int | None]:
        found = lookup(external_ids)
        Registry(ctx.redis, ctx.keys).upsert([newcomer.model_copy(update={"name": "先到"})])
        return found

    registry.rids_of = look_up_before_the_other_import_lands  # type: ignore[method-assign]
    assert registry.upsert([newcomer]) == {"created": 0, "updated": 1}

    members = Registry(ctx.redis, ctx.keys).load(rid for rid, _, _ in registry.members(COMMUNITY))
    assert [e.name for e in members.values() if e.external_id == "new-1"] == ["后到"]


def test_push_tokens_name_their_resident_until_forgotten(ctx: Any, population: Population) -> None:
    registry = Registry(ctx.redis, ctx.keys)
    resident = next(r for r in population.residents if r.push_tokens)
    rid = registry.rids_of([resident.external_id])[resident.external_id]

    def owner(token: str) -> bytes | None:
        return ctx.redis.hget(ctx.keys.resident_by_push_token(token), token)  # type: ignore[no-any-return]

    assert owner(resident.push_tokens[0]) == str(rid).encode()
    registry.upsert([resident.model_copy(update={"push_tokens": ["jpush-new-device-0001"]})])
    assert owner(resident.push_tokens[0]) is None and owner("jpush-new-device-0001") == str(rid).encode()

    assert registry.forget_push_tokens({rid: "jpush-new-device-0001"}) == 1  # type: ignore[dict-item]
    forgotten = registry.by_external_id([resident.external_id])[resident.external_id]
    assert forgotten.push_tokens == [] and ChannelKind.push not in forgotten.channels
    assert owner("jpush-new-device-0001") is None
    profile = next(p for r, _, p in registry.members(resident.community) if r == rid)
    assert channel_order(profile) == tuple(forgotten.channels), "the members index follows the record"

    other = next(r for r in population.residents if r.push_tokens and r is not resident)
    registry.remove([other.external_id])
    assert owner(other.push_tokens[0]) is None


def test_seeding_is_deterministic_and_a_second_seed_changes_nobody(
    ctx: Any, tree: AreaTree, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate(tree, STREET, 300, seed=7).entries() == generate(tree, STREET, 300, seed=7).entries()
    assert generate(tree, STREET, 300, seed=7).entries() != generate(tree, STREET, 300, seed=8).entries()
    monkeypatch.setenv("REDIS_URL", ctx.redis_url)
    monkeypatch.setenv("BROADCAST_NAMESPACE", ctx.keys.ns)
    argv = ["seed", "--residents", "300", "--area", STREET, "--seed", "7", "--key-units", "--json"]

    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["residents"] == 300 and first["created"] == 300 + first["volunteers"] + _contacts(tree)
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["created"], second["updated"]) == (0, first["created"])

    assert main(["seed", "--residents", "300", "--area", "310115999000"]) == 2
    assert "unknown area code 310115999000" in capsys.readouterr().err


def _contacts(tree: AreaTree) -> int:
    return sum(len(u.contacts) for u in generate(tree, STREET, 300, seed=7, key_units=True).key_units)
