"""A synthetic population: plausible, deterministic residents, grids, buildings and volunteers.

For demos and benchmarks; real deployments import their own registry. Each committee's people
depend only on (seed, committee), so seeding a street gives the same people as seeding its district.
Phone numbers are unique across the whole city: the committee's position in the city's list and
the resident's number inside it make up the digits.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from audiences.areas import Area, AreaLevel, AreaTree, building_code, grid_code
from audiences.residents import Resident
from audiences.volunteers import Volunteer, VolunteerRole
from broadcast.models import ChannelKind, Language

HOUSEHOLDS_PER_GRID = 300
MAX_PER_COMMUNITY = 10_000
ENGLISH_SHARE = {"310115": 0.04, "310105": 0.04, "310112": 0.03, "310104": 0.02}  # 浦东, 长宁, 闵行, 徐汇
ENGLISH_SHARE_ELSEWHERE = 0.005

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余于杜叶程魏苏吕丁任沈"
    "姚卢傅钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤"
)
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文辉力林斌宇浩凯俊峰欣怡佳琪梦雪晨阳子涵雨轩思博一诺"
)
_EN_GIVEN = ["James", "Mary", "Robert", "Linda", "David", "Sarah", "Thomas", "Emma", "Lukas", "Yuki", "Hana", "Pierre"]
_EN_FAMILY = ["Smith", "Brown", "Miller", "Wilson", "Martin", "Tanaka", "Kim", "Dubois", "Schmidt", "Rossi"]


@dataclass
class Population:
    """What the generator made for one area."""

    residents: list[Resident] = field(default_factory=list)
    volunteers: list[Volunteer] = field(default_factory=list)
    areas: list[Area] = field(default_factory=list)  # grids and buildings


def city_community_index(tree: AreaTree) -> dict[str, int]:
    """Each committee's position among all committees of the city, in code order."""
    codes = sorted(a.code for a in tree.areas.values() if a.level is AreaLevel.community)
    return {code: i for i, code in enumerate(codes)}


def _shares(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` by weights, largest remainder, so the parts add up exactly."""
    scale = total / sum(weights)
    raw = [w * scale for w in weights]
    parts = [math.floor(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - parts[i], reverse=True)[: total - sum(parts)]:
        parts[i] += 1
    return parts


def generate(tree: AreaTree, area_code: str, residents: int, seed: int = 1) -> Population:
    """Generate ``residents`` people living in ``area_code`` (any level down to committee)."""
    communities = [a for a in tree.descendants(area_code, AreaLevel.community) if not a.placeholder]
    if not communities:
        raise ValueError(f"area {area_code} has no residential or village committees")
    weights = [random.Random(f"{seed}:w:{c.code}").uniform(0.5, 1.5) for c in communities]
    counts = _shares(residents, weights)
    if max(counts) > MAX_PER_COMMUNITY:
        raise ValueError(f"more than {MAX_PER_COMMUNITY} residents per committee; choose a larger area")
    index = city_community_index(tree)
    population = Population()
    for community, n in zip(communities, counts, strict=True):
        if n:
            _committee(population, community, n, seed, index[community.code])
    return population


def _committee(pop: Population, community: Area, n: int, seed: int, city_index: int) -> None:
    rng = random.Random(f"{seed}:{community.code}")
    english_share = ENGLISH_SHARE.get(community.code[:6], ENGLISH_SHARE_ELSEWHERE)
    households = list(_households(rng, n))
    grids = max(1, math.ceil(len(households) / HOUSEHOLDS_PER_GRID))
    per_grid = math.ceil(len(households) / grids)
    person = 0
    for g in range(grids):
        gcode = grid_code(community.code, g + 1)
        pop.areas.append(Area(gcode, f"{community.name}第{g + 1}网格", AreaLevel.grid, community.code))
        grid_households = households[g * per_grid : (g + 1) * per_grid]
        floors = rng.choice((6, 6, 7, 11, 18))
        per_floor = rng.choice((2, 4, 6))
        per_building = floors * per_floor
        for b in range(math.ceil(len(grid_households) / per_building)):
            bcode = building_code(gcode, b + 1)
            pop.areas.append(Area(bcode, f"{community.name}{g + 1}-{b + 1}号楼", AreaLevel.building, gcode))
            for h, size in enumerate(grid_households[b * per_building : (b + 1) * per_building]):
                room = f"{h // per_floor + 1}{h % per_floor + 1:02d}"
                english = rng.random() < english_share
                alone = size == 1
                for _ in range(size):
                    pop.residents.append(
                        _person(rng, community.code, gcode, bcode, room, city_index, person, english, alone)
                    )
                    person += 1
        pop.volunteers.append(
            Volunteer(
                id=f"v-{gcode}",
                name=_chinese_name(rng),
                phone=_phone("137", city_index, g),
                role=VolunteerRole.grid_worker,
                community=community.code,
                grids=[gcode],
            )
        )
    pop.volunteers.append(
        Volunteer(
            id=f"w-{community.code}",
            name=_chinese_name(rng),
            phone=_phone("136", city_index, 0),
            role=VolunteerRole.community_worker,
            community=community.code,
        )
    )


def _households(rng: random.Random, n: int) -> Iterator[int]:
    left = n
    while left:
        size = min(left, rng.choices((1, 2, 3, 4), weights=(18, 34, 30, 18))[0])
        left -= size
        yield size


def _phone(prefix: str, city_index: int, k: int) -> str:
    return f"+86{prefix}{city_index * MAX_PER_COMMUNITY + k:08d}"


def _chinese_name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))


def _person(
    rng: random.Random,
    community: str,
    grid: str,
    building: str,
    room: str,
    city_index: int,
    k: int,
    english: bool,
    lives_alone: bool,
) -> Resident:
    elderly = rng.random() < 0.16
    elderly_alone = elderly and (lives_alone or rng.random() < 0.25)
    no_smartphone = (elderly and rng.random() < 0.45) or rng.random() < 0.02
    disability = [d for d, p in (("hearing", 0.01), ("sight", 0.008), ("mobility", 0.015)) if rng.random() < p]
    external_id = f"sim-{community}-{k:05d}"
    if no_smartphone:
        channels = [ChannelKind.voice, ChannelKind.sms]
        tokens: list[str] = []
    else:
        channels = [ChannelKind.push, ChannelKind.sms, ChannelKind.voice]
        tokens = ["jpush-" + hashlib.sha1(external_id.encode()).hexdigest()[:20]]
    name = f"{rng.choice(_EN_GIVEN)} {rng.choice(_EN_FAMILY)}" if english else _chinese_name(rng)
    return Resident(
        external_id=external_id,
        name=name,
        phone=_phone("139", city_index, k),
        language=Language.en if english else Language.zh,
        community=community,
        grid=grid,
        building=building,
        room=room,
        elderly=elderly,
        elderly_alone=elderly_alone,
        disability=disability,
        no_smartphone=no_smartphone,
        channels=channels,
        push_tokens=tokens,
    )


def store_population(client: Any, keys: Any, population: Population, chunk: int = 5000) -> dict[str, int]:
    """Write a generated population to the registry (upsert by external id)."""
    from audiences.areas import store_areas
    from audiences.residents import Registry
    from audiences.volunteers import store_volunteers

    store_areas(client, keys, population.areas)
    registry = Registry(client, keys)
    totals = {"created": 0, "updated": 0}
    residents = sorted(population.residents, key=lambda r: r.community)
    for i in range(0, len(residents), chunk):
        result = registry.upsert(residents[i : i + chunk])
        totals["created"] += result["created"]
        totals["updated"] += result["updated"]
    store_volunteers(client, keys, population.volunteers)
    return {**totals, "volunteers": len(population.volunteers), "areas": len(population.areas)}
