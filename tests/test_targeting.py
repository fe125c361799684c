"""Targeting: who a mix of areas, groups and exclusions reaches, checked against counts made here
straight from the generated population, for both the preview and the frozen roster."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from audiences.areas import AreaTree
from audiences.groups import CustomGroup, store_custom_group
from audiences.population import Population, generate, store_population
from audiences.preview import preview
from audiences.registry import Registry
from audiences.residents import Resident, Role
from audiences.screens import Screen, Transport, screens_for, screens_in, store_screens
from audiences.targeting import TargetError, resolve
from broadcast.core.context import Context
from broadcast.core.models import Alert, AlertStatus, ChannelKind, EventType, Level, Target
from broadcast.issuing.plan import freeze
from broadcast.running.cli import main
from tests.conftest import Stack
from tests.helpers import request_json

PUDONG, ZHANGJIANG, HUANGPU = "310115000000", "310115125000", "310101000000"


@pytest.fixture
def city(ctx: Context, tree: AreaTree) -> Population:
    """People in 浦东新区 and 黄浦区, with volunteers and key units; a few opted out of warnings."""
    people = generate(tree, PUDONG, 2500, seed=11, key_units=True)
    people.extend(generate(tree, HUANGPU, 1200, seed=12, key_units=True))
    for i in range(0, len(people.residents), 97):
        people.residents[i] = people.residents[i].model_copy(update={"opted_out": True})
    store_population(ctx.redis, ctx.keys, people)
    return people


@pytest.fixture
def areas(ctx: Context, city: Population) -> AreaTree:
    """The hierarchy with the city's grids and buildings."""
    return AreaTree.load(ctx.redis, ctx.keys)


def enclosing(tree: AreaTree, entry: Resident) -> set[str]:
    """Every area code that contains an entry: its place's prefixes and the committee's ancestors."""
    codes = {entry.community, *(a.code for a in tree.ancestors(entry.community))}
    return codes | {entry.place[:n] for n in (14, 17) if len(entry.place) >= n}


GROUPS: dict[str, Callable[[Resident], bool]] = {
    "elderly_alone": lambda e: e.elderly_alone,
    "vulnerable": lambda e: e.elderly_alone or bool(e.disability) or e.no_smartphone,
    "key_units": lambda e: e.role is Role.key_unit_contact,
    "volunteers": lambda e: e.role is Role.volunteer,
}


def expected(
    tree: AreaTree,
    people: Population,
    target: Target,
    level: Level,
    custom: set[str] = frozenset(),  # type: ignore[assignment]
) -> set[str]:
    """External ids the target should reach, decided from the Python objects alone."""
    out = set()
    for entry in people.entries():
        codes = enclosing(tree, entry)
        if not codes & set(target.areas) or codes & set(target.exclude):
            continue
        if entry.opted_out and level is not Level.red:
            continue
        if target.groups:
            if not any(GROUPS[g](entry) if g in GROUPS else entry.external_id in custom for g in target.groups):
                continue
        elif entry.role is Role.volunteer:
            continue
        out.add(entry.external_id)
    return out


def frozen_roster(ctx: Context, target: Target, level: Level, alert_id: str) -> tuple[list[str], dict[str, int]]:
    """Freeze a roster for ``target`` and read back who is on it, in ordinal order."""
    now = datetime.now(UTC)
    alert = Alert(
        id=alert_id,
        status=AlertStatus.issued,
        created_at=now,
        issued_at=now,
        event=EventType.typhoon,
        level=level,
        target=target,
        channels=[ChannelKind.sms, ChannelKind.voice],
        composed_by="officer-a",
    )
    counts = freeze(ctx, alert)
    raw = ctx.redis.get(ctx.keys.roster(alert_id)) or b""
    rids = [int.from_bytes(raw[i : i + 4], "little") for i in range(0, len(raw), 4)]
    records = Registry(ctx.redis, ctx.keys).load(rids)
    return [records[rid].external_id for rid in rids], counts


@dataclass
class Case:
    label: str
    target: Target
    level: Level = Level.orange


def cases(people: Population) -> Iterator[Case]:
    communities = sorted({r.community for r in people.residents if r.community.startswith("310101")})
    grid_resident = next(r for r in people.residents if r.community.startswith("310115"))
    assert grid_resident.grid and grid_resident.building
    building_elsewhere = next(r.building for r in people.residents if r.community != grid_resident.community)
    assert building_elsewhere
    yield Case("浦东新区 except 张江镇", Target(areas=[PUDONG], exclude=[ZHANGJIANG]))
    yield Case("all key units in 黄浦区", Target(areas=[HUANGPU], groups=["key_units"]))
    yield Case("elderly alone in three committees", Target(areas=communities[:3], groups=["elderly_alone"]))
    yield Case(
        "a grid less one building, plus a building elsewhere",
        Target(areas=[grid_resident.grid, building_elsewhere], exclude=[grid_resident.building]),
    )
    yield Case("volunteers of 黄浦区", Target(areas=[HUANGPU], groups=["volunteers"]))
    yield Case("vulnerable or the flood team", Target(areas=[PUDONG, HUANGPU], groups=["vulnerable", "flood-team"]))
    yield Case("red reaches those who opted out", Target(areas=[HUANGPU]), Level.red)


def test_targets_reach_exactly_who_an_independent_count_says(ctx: Context, areas: AreaTree, city: Population) -> None:
    team = {r.external_id for r in city.residents[5:300:25]}
    rids = Registry(ctx.redis, ctx.keys).rids_of(sorted(team))
    store_custom_group(ctx.redis, ctx.keys, CustomGroup(name="flood-team", title="防汛抢险队"), rids.values())  # type: ignore[arg-type]

    for n, case in enumerate(cases(city)):
        want = expected(areas, city, case.target, case.level, team)
        assert want, f"{case.label}: the case selects nobody and proves nothing"
        counts = preview(
            ctx.redis, ctx.keys, areas, case.target, [ChannelKind.sms, ChannelKind.voice], case.level, [Level.red]
        )
        roster, planned = frozen_roster(ctx, case.target, case.level, f"c{n}")
        assert counts["targeted"] == len(want), case.label
        assert sorted(roster) == sorted(want), case.label
        assert planned["targeted"] == len(want), case.label
        by_channel = {k[3:]: v for k, v in planned.items() if k.startswith("ch:")}
        assert {k: v for k, v in counts["channels"].items() if v} == by_channel, case.label
        assert sum(row["targeted"] for row in counts["areas"]["community"]) == len(want), case.label


def test_roster_keeps_every_area_contiguous_in_code_order(ctx: Context, areas: AreaTree, city: Population) -> None:
    roster, _ = frozen_roster(ctx, Target(areas=[PUDONG]), Level.red, "r1")
    by_id = {e.external_id: e for e in city.entries()}
    places = [by_id[ext].place for ext in roster]
    assert places == sorted(places), "the roster runs in area order"
    positions: dict[str, list[int]] = {}
    for ordinal, ext in enumerate(roster):
        for code in enclosing(areas, by_id[ext]):
            positions.setdefault(code, []).append(ordinal)
    ranges = {k.decode(): v.decode() for k, v in ctx.redis.hgetall(ctx.keys.ranges("r1")).items()}
    assert set(ranges) == set(positions)
    for code, span in ranges.items():
        start, end = map(int, span.split(":"))
        assert positions[code] == list(range(start, end)), code


def test_unknown_codes_and_groups_are_named(ctx: Context, areas: AreaTree, city: Population) -> None:
    with pytest.raises(TargetError) as caught:
        preview(ctx.redis, ctx.keys, areas, Target(areas=[PUDONG, "310115999000"], exclude=["310101999999"]))
    assert "310115999000" in str(caught.value) and caught.value.field == "target.areas"
    with pytest.raises(TargetError) as caught:
        preview(ctx.redis, ctx.keys, areas, Target(areas=[PUDONG], groups=["elderly", "pets"]))
    assert "pets" in str(caught.value) and caught.value.field == "target.groups"


def test_cli_preview_prints_counts_and_names_unknown_codes(
    ctx: Context, city: Population, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", ctx.redis_url)
    monkeypatch.setenv("BROADCAST_NAMESPACE", ctx.settings.namespace)
    assert main(["target", "preview", "--area", HUANGPU, "--group", "key_units", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    units = [u for u in city.key_units if u.community.startswith("310101")]
    assert counts["targeted"] == sum(len(u.contacts) for u in units) > 0
    assert counts["channels"]["sms"] == counts["targeted"], "contacts are texted first"

    assert main(["target", "preview", "--area", "310101999000", "--exclude", "310115999999", "--json"]) == 2
    err = capsys.readouterr().err
    assert "310101999000" in err and "310115999999" in err


def test_preview_over_the_api(
    ctx: Context, areas: AreaTree, city: Population, stack: Stack, officer_token: str
) -> None:
    body = {"areas": [PUDONG], "exclude": [ZHANGJIANG], "channels": ["push", "sms"], "level": "orange"}
    status, counts = request_json(f"{stack.url}/api/v1/targets/preview", "POST", body, token=officer_token)
    assert status == 200
    assert counts["targeted"] == len(expected(areas, city, Target(areas=[PUDONG], exclude=[ZHANGJIANG]), Level.orange))
    assert set(counts["channels"]) == {"push", "sms", "none"}
    assert ZHANGJIANG not in {row["code"] for row in counts["areas"]["street"]}

    status, answer = request_json(
        f"{stack.url}/api/v1/targets/preview", "POST", {"areas": ["310115999000"]}, token=officer_token
    )
    assert status == 422 and "310115999000" in answer["error"]["message"]
    status, answer = request_json(f"{stack.url}/api/v1/targets/preview", "POST", {"areas": ["12"]}, token=officer_token)
    assert status == 422 and answer["error"]["field"] == "areas.0"


def test_screens_of_targeted_buildings_are_found_and_counted(ctx: Context, areas: AreaTree, city: Population) -> None:
    buildings = sorted({r.building for r in city.residents if r.building and r.community.startswith("310101")})
    screens = [
        Screen(id=f"s{i}", building=b, transport=Transport.mqtt, address=f"screens/{b}/lift", columns=16, lines=4)
        for i, b in enumerate(buildings[:6])
    ]
    store_screens(ctx.redis, ctx.keys, screens)
    target = Target(areas=[buildings[0][:14], buildings[5]], exclude=[buildings[1]])
    want = {s.id for s in screens if (s.building.startswith(buildings[0][:14]) or s.building == buildings[5])} - {"s1"}
    assert {s.id for s in screens_in(ctx.redis, ctx.keys, resolve(areas, target))} == want
    assert preview(ctx.redis, ctx.keys, areas, target)["screens"] == len(want)
    grouped = Target(areas=target.areas, groups=["elderly"])
    assert preview(ctx.redis, ctx.keys, areas, grouped)["screens"] == 0
    assert screens_for(ctx.redis, ctx.keys, areas, grouped) == [], "screens serve whole areas, not groups"
    assert [s.id for s in screens_for(ctx.redis, ctx.keys, areas, target)] == sorted(want)

    moved = screens[0].model_copy(update={"building": buildings[5]})
    store_screens(ctx.redis, ctx.keys, [moved])
    found = screens_in(ctx.redis, ctx.keys, resolve(areas, Target(areas=[buildings[5]])))
    assert {s.id for s in found} == {"s0", "s5"}, "a screen that moved is found only where it is now"
