"""A synthetic population: plausible, deterministic residents, grids, buildings, volunteers and key units.

For demos and benchmarks; real deployments import their own registry. Each committee's people
depend only on (seed, committee), so seeding a street gives the same people as seeding its district.
Phone numbers are unique across the whole city: a prefix per kind of person, the committee's
position in the city's list and the person's number inside it make up the digits.

Generation streams committee by committee, so a million people never sit in memory at once.
Generated entries are built without re-validation (their values are valid by construction; the
tests validate a generated population in full).
"""

from __future__ import annotations

import gc
import hashlib
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import redis

from audiences.areas import Area, AreaLevel, AreaTree, building_code, grid_code, store_areas
from audiences.key_units import Contact, KeyUnit, KeyUnitKind, store_key_units
from audiences.registry import Registry
from audiences.residents import Resident, Role
from audiences.volunteers import Volunteer, VolunteerRole, store_volunteers
from broadcast.core.keys import Keys
from broadcast.core.models import ChannelKind, Language

HOUSEHOLDS_PER_GRID = 300
MAX_PER_COMMUNITY = 10_000
ENGLISH_SHARE = {"310115": 0.04, "310105": 0.04, "310112": 0.03, "310104": 0.02}  # 浦东, 长宁, 闵行, 徐汇
ENGLISH_SHARE_ELSEWHERE = 0.005
BUILDING_LEADER_SHARE = 0.3  # buildings with a 楼组长 of their own
KEY_UNIT_SHARE = 0.15  # committees with a key unit (school, site, hospital …)

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余于杜叶程魏苏吕丁任沈"
    "姚卢傅钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤"
)
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文辉力林斌宇浩凯俊峰欣怡佳琪梦雪晨阳子涵雨轩思博一诺"
)
_EN_GIVEN = ["James", "Mary", "Robert", "Linda", "David", "Sarah", "Thomas", "Emma", "Lukas", "Yuki", "Hana", "Pierre"]
_HOUSEHOLD_SIZES = (1, 2, 3, 4)
_HOUSEHOLD_CUMULATIVE = (18, 52, 82, 100)  # 18 % live alone, 34 % in twos, 30 % in threes, 18 % in fours
# Copying a template costs half of model_construct, and a benchmark makes a million residents.
_RESIDENT = Resident.model_construct(external_id="", name="", community="", role=Role.resident)
_EN_FAMILY = ["Smith", "Brown", "Miller", "Wilson", "Martin", "Tanaka", "Kim", "Dubois", "Schmidt", "Rossi"]


@dataclass
class Population:
    """What the generator made for one area (or one committee of it)."""

    residents: list[Resident] = field(default_factory=list)
    volunteers: list[Volunteer] = field(default_factory=list)
    key_units: list[KeyUnit] = field(default_factory=list)
    areas: list[Area] = field(default_factory=list)  # grids and buildings

    def extend(self, other: Population) -> None:
        self.residents += other.residents
        self.volunteers += other.volunteers
        self.key_units += other.key_units
        self.areas += other.areas

    def entries(self) -> list[Resident]:
        """Every registry entry: residents, volunteers and key-unit contacts."""
        return [
            *self.residents,
            *(v.entry() for v in self.volunteers),
            *(e for u in self.key_units for e in u.entries()),
        ]


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


def generate(tree: AreaTree, area_code: str, residents: int, seed: int = 1, key_units: bool = False) -> Population:
    """Generate ``residents`` people living in ``area_code`` (any level down to committee)."""
    population = Population()
    for committee in committees(tree, area_code, residents, seed, key_units):
        population.extend(committee)
    return population


def committees(
    tree: AreaTree, area_code: str, residents: int, seed: int = 1, key_units: bool = False
) -> Iterator[Population]:
    """The population of ``area_code``, one committee at a time, in code order; key units on request
    (about one committee in seven gets a school, site, hospital … with one or two contacts)."""
    communities = [a for a in tree.descendants(area_code, AreaLevel.community) if not a.placeholder]
    if not communities:
        raise ValueError(f"area {area_code} has no residential or village committees")
    weights = [random.Random(f"{seed}:w:{c.code}").uniform(0.5, 1.5) for c in communities]
    counts = _shares(residents, weights)
    if max(counts) > MAX_PER_COMMUNITY:
        raise ValueError(f"more than {MAX_PER_COMMUNITY} residents per committee; choose a larger area")
    index = city_community_index(tree)
    for community, n in zip(communities, counts, strict=True):
        if n:
            population = Population()
            _committee(population, community, n, seed, index[community.code], key_units)
            yield population


def _committee(pop: Population, community: Area, n: int, seed: int, city_index: int, key_units: bool) -> None:
    rng = random.Random(f"{seed}:{community.code}")
    english_share = ENGLISH_SHARE.get(community.code[:6], ENGLISH_SHARE_ELSEWHERE)
    households = list(_households(rng, n))
    grids = max(1, math.ceil(len(households) / HOUSEHOLDS_PER_GRID))
    per_grid = math.ceil(len(households) / grids)
    person = 0
    leaders = 0
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
            if rng.random() < BUILDING_LEADER_SHARE:
                pop.volunteers.append(
                    _volunteer(rng, f"b-{bcode}", "135", city_index, leaders, VolunteerRole.building_leader, community)
                )
                pop.volunteers[-1].buildings.append(bcode)
                leaders += 1
        pop.volunteers.append(_volunteer(rng, f"v-{gcode}", "137", city_index, g, VolunteerRole.grid_worker, community))
        pop.volunteers[-1].grids.append(gcode)
    pop.volunteers.append(
        _volunteer(rng, f"w-{community.code}", "136", city_index, 0, VolunteerRole.community_worker, community)
    )
    if key_units and rng.random() < KEY_UNIT_SHARE:
        kind = rng.choice(list(KeyUnitKind)[:-1])
        contacts = [
            Contact.model_construct(name=_chinese_name(rng), phone=_phone("138", city_index, k), title=title)
            for k, title in enumerate(("负责人", "安全员")[: rng.choice((1, 2))])
        ]
        pop.key_units.append(
            KeyUnit.model_construct(
                id=f"ku-{community.code}",
                name=f"{community.name}{kind.zh}",
                kind=kind,
                community=community.code,
                grid=grid_code(community.code, 1),
                building=None,
                address="",
                contacts=contacts,
            )
        )


def _volunteer(
    rng: random.Random, vid: str, prefix: str, city_index: int, k: int, role: VolunteerRole, community: Area
) -> Volunteer:
    return Volunteer.model_construct(
        id=vid,
        name=_chinese_name(rng),
        phone=_phone(prefix, city_index, k),
        role=role,
        community=community.code,
        grids=[],
        buildings=[],
    )


def _households(rng: random.Random, n: int) -> Iterator[int]:
    left = n
    while left:
        size = min(left, rng.choices(_HOUSEHOLD_SIZES, cum_weights=_HOUSEHOLD_CUMULATIVE)[0])
        left -= size
        yield size


def _phone(prefix: str, city_index: int, k: int) -> str:
    return f"+86{prefix}{city_index * MAX_PER_COMMUNITY + k:08d}"


def _chinese_name(rng: random.Random) -> str:
    # choices() draws with one random() call each; choice() loops on getrandbits: this runs a million times.
    return "".join(rng.choices(_SURNAMES)) + "".join(rng.choices(_GIVEN, k=1 if rng.random() < 0.5 else 2))


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
        tokens = [hashlib.sha1(external_id.encode()).hexdigest()[:19]]  # like a JPush registration id
    name = f"{rng.choice(_EN_GIVEN)} {rng.choice(_EN_FAMILY)}" if english else _chinese_name(rng)
    return _RESIDENT.model_copy(
        update={
            "external_id": external_id,
            "name": name,
            "phone": _phone("139", city_index, k),
            "language": Language.en if english else Language.zh,
            "community": community,
            "grid": grid,
            "building": building,
            "room": room,
            "elderly": elderly,
            "elderly_alone": elderly_alone,
            "disability": disability,
            "no_smartphone": no_smartphone,
            "channels": channels,
            "push_tokens": tokens,
        }
    )


def store_population(
    client: redis.Redis, keys: Keys, population: Population | Iterable[Population], chunk: int = 50_000
) -> dict[str, int]:
    """Write a generated population to the registry through the bulk path (upsert by external id).

    Accepts one population or a stream of them (``committees``), written ``chunk`` people at a time.
    """
    registry = Registry(client, keys)
    # Into an empty registry every generated person is new: generated ids and phones never repeat.
    new = not client.exists(keys.resident_next)
    totals = {"created": 0, "updated": 0, "residents": 0, "volunteers": 0, "key_units": 0, "areas": 0}
    parts = _chunks([population] if isinstance(population, Population) else population, chunk)
    for part in _without_cycle_collection(parts):
        store_areas(client, keys, part.areas)
        result = registry.bulk_load(part.entries(), new=new)
        store_volunteers(client, keys, part.volunteers, register=False)
        store_key_units(client, keys, part.key_units, register=False)
        for name, value in (
            *result.items(),
            ("residents", len(part.residents)),
            ("volunteers", len(part.volunteers)),
            ("key_units", len(part.key_units)),
            ("areas", len(part.areas)),
        ):
            totals[name] += value
    return totals


def _without_cycle_collection(parts: Iterator[Population]) -> Iterator[Population]:
    """Seeding allocates millions of small objects that hold no reference cycles; the cyclic
    collector would walk them again and again (a quarter of the time). Reference counting still
    frees every chunk once it is written."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield from parts
    finally:
        if enabled:
            gc.enable()


def _chunks(parts: Iterable[Population], size: int) -> Iterator[Population]:
    pending = Population()
    for part in parts:
        pending.extend(part)
        if len(pending.residents) >= size:
            yield pending
            pending = Population()
    if pending.residents or pending.areas:
        yield pending
