"""The area hierarchy: city → district → street/town → committee → grid → building.

Official units come from the NBS statistical division codes (``data/shanghai_divisions.csv``);
grids and buildings carry codes of our own that extend a committee's 12 digits: a grid adds two
digits (14), a building three more (17). Sorting codes as strings therefore sorts areas the way a
roster is ordered, and an area's code is a prefix of every code below it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import redis

from broadcast.core.keys import Keys

BUNDLED_DIVISIONS = Path(__file__).parent / "data" / "shanghai_divisions.csv"


class AreaLevel(str, Enum):
    city = "city"
    district = "district"
    street = "street"
    community = "community"
    grid = "grid"
    building = "building"


LEVEL_ORDER = list(AreaLevel)
_CODE_LENGTH = {AreaLevel.grid: 14, AreaLevel.building: 17}


@dataclass(frozen=True)
class Area:
    """One unit of the hierarchy."""

    code: str
    name: str
    level: AreaLevel
    parent: str | None

    @property
    def kind(self) -> str:
        """What kind of unit the code says it is (NBS digit rules), e.g. 街道, 镇, 居委会, 村委会."""
        return area_kind(self.code, self.level)

    @property
    def placeholder(self) -> bool:
        """True for committees nobody lives in (…虚拟社区 / …虚拟生活区)."""
        return self.level is AreaLevel.community and (self.code.endswith(("498", "598")) and "虚拟" in self.name)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "level": self.level.value, "parent": self.parent}, ensure_ascii=False)


def area_kind(code: str, level: AreaLevel) -> str:
    """Classify a unit by its code digits, as the NBS rules describe them."""
    if level is AreaLevel.street:
        n = int(code[6:9])
        if n < 100:
            return "街道"
        if n < 200:
            return "镇"
        if n < 400:
            return "乡"
        return "开发区等"
    if level is AreaLevel.community:
        n = int(code[9:12])
        if n < 200:
            return "居委会"
        if n < 400:
            return "村委会"
        return "类似居委会"
    return {
        AreaLevel.city: "市",
        AreaLevel.district: "区",
        AreaLevel.grid: "网格",
        AreaLevel.building: "楼栋",
    }[level]


class AreaFileError(ValueError):
    """A division file has rows that cannot be loaded; ``problems`` names each line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:20]) + (f" … and {len(problems) - 20} more" if len(problems) > 20 else ""))
        self.problems = problems


def read_divisions(path: Path = BUNDLED_DIVISIONS) -> list[Area]:
    """Read and validate a division CSV (code,name,level,parent_code); every bad line is reported."""
    raw = path.read_bytes()
    text = raw.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0]] != ["code", "name", "level", "parent_code"]:
        raise AreaFileError([f"{path}: line 1: expected the header code,name,level,parent_code"])
    areas: list[Area] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 4:
            problems.append(f"line {line}: expected 4 columns, found {len(row)}")
            continue
        code, name, level_text, parent = (c.strip() for c in row)
        try:
            level = AreaLevel(level_text)
        except ValueError:
            problems.append(f"line {line}: unknown level {level_text!r}")
            continue
        if level in (AreaLevel.grid, AreaLevel.building):
            problems.append(f"line {line}: grids and buildings are not official divisions")
            continue
        if not (code.isdigit() and len(code) == 12):
            problems.append(f"line {line}: code {code!r} is not 12 digits")
            continue
        if not name:
            problems.append(f"line {line}: empty name")
            continue
        if code in seen:
            problems.append(f"line {line}: code {code} already on line {seen[code]}")
            continue
        if level is not AreaLevel.city and not parent:
            problems.append(f"line {line}: a {level.value} needs a parent_code")
            continue
        seen[code] = line
        areas.append(Area(code, name, level, parent or None))
    known = {a.code: a for a in areas}
    for a in areas:
        if a.parent is None:
            continue
        parent_area = known.get(a.parent)
        if parent_area is None:
            problems.append(f"line {seen[a.code]}: parent {a.parent} of {a.code} is not in the file")
        elif LEVEL_ORDER.index(parent_area.level) != LEVEL_ORDER.index(a.level) - 1:
            problems.append(f"line {seen[a.code]}: a {a.level.value} cannot sit under a {parent_area.level.value}")
    if problems:
        raise AreaFileError(problems)
    return areas


def grid_code(community: str, number: int) -> str:
    """The code of grid ``number`` (1–99) of a committee."""
    if not 1 <= number <= 99:
        raise ValueError(f"grid number {number} is outside 1–99")
    return f"{community}{number:02d}"


def building_code(grid: str, number: int) -> str:
    """The code of building ``number`` (1–999) in a grid."""
    if not 1 <= number <= 999:
        raise ValueError(f"building number {number} is outside 1–999")
    return f"{grid}{number:03d}"


def store_areas(client: redis.Redis, keys: Keys, areas: Iterable[Area]) -> int:
    """Write areas to the registry (upsert) and bump the areas version; returns how many."""
    mapping = {a.code: a.to_json() for a in areas}
    with client.pipeline(transaction=True) as pipe:
        for start in range(0, len(mapping), 2000):
            chunk = dict(list(mapping.items())[start : start + 2000])
            pipe.hset(keys.areas, mapping=chunk)  # type: ignore[arg-type]
        pipe.incr(keys.areas_version)
        pipe.execute()
    return len(mapping)


_loaded: dict[str, AreaTree] = {}  # per namespace: the last tree read, with its version


@dataclass
class AreaTree:
    """The whole hierarchy in memory, with the lookups targeting and progress need."""

    areas: dict[str, Area]
    version: int = 0
    _children: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        children: dict[str, list[str]] = {}
        for area in self.areas.values():
            if area.parent:
                children.setdefault(area.parent, []).append(area.code)
        for codes in children.values():
            codes.sort()
        self._children = children

    @classmethod
    def from_records(cls, records: dict[Any, Any], version: int = 0) -> AreaTree:
        """Build from the registry hash (code → JSON), bytes or str."""
        areas: dict[str, Area] = {}
        for raw_code, raw in records.items():
            code = raw_code.decode() if isinstance(raw_code, bytes) else raw_code
            data = json.loads(raw)
            areas[code] = Area(code, data["name"], AreaLevel(data["level"]), data.get("parent"))
        return cls(areas, version)

    @classmethod
    def load(cls, client: redis.Redis, keys: Keys) -> AreaTree:
        """Read the hierarchy from Redis."""
        with client.pipeline(transaction=False) as pipe:
            pipe.get(keys.areas_version)
            pipe.hgetall(keys.areas)
            version, records = pipe.execute()
        return cls.from_records(records, int(version or 0))

    @classmethod
    def current(cls, client: redis.Redis, keys: Keys) -> AreaTree:
        """The hierarchy, read again only when an area load has bumped the version since."""
        version = int(client.get(keys.areas_version) or 0)
        tree = _loaded.get(keys.ns)
        if tree is None or tree.version != version:
            if len(_loaded) >= 4:
                _loaded.clear()
            tree = _loaded[keys.ns] = cls.load(client, keys)
        return tree

    def stats(self) -> dict[str, Any]:
        """How many areas of each level, of each kind, and how many placeholder committees."""
        out: dict[str, Any] = {level.value: self.count(level) for level in AreaLevel}
        for level in (AreaLevel.street, AreaLevel.community):
            kinds: dict[str, int] = {}
            for area in self.areas.values():
                if area.level is level:
                    kinds[area.kind] = kinds.get(area.kind, 0) + 1
            out[f"{level.value}_kinds"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
        out["placeholders"] = sum(1 for a in self.areas.values() if a.placeholder)
        return out

    def __contains__(self, code: object) -> bool:
        return code in self.areas

    def __len__(self) -> int:
        return len(self.areas)

    def get(self, code: str) -> Area:
        """The area with this code; KeyError naming the code if unknown."""
        try:
            return self.areas[code]
        except KeyError:
            raise KeyError(f"unknown area code {code}") from None

    def children(self, code: str) -> list[Area]:
        return [self.areas[c] for c in self._children.get(code, [])]

    def ancestors(self, code: str) -> list[Area]:
        """The parent chain from the city down to the area's parent."""
        chain: list[Area] = []
        parent = self.get(code).parent
        while parent:
            area = self.areas[parent]
            chain.append(area)
            parent = area.parent
        return list(reversed(chain))

    def descendants(self, code: str, level: AreaLevel) -> Iterator[Area]:
        """Every area at ``level`` below (or equal to) ``code``, in code order."""
        area = self.get(code)
        if area.level is level:
            yield area
            return
        if LEVEL_ORDER.index(area.level) > LEVEL_ORDER.index(level):
            return
        for child in self._children.get(code, []):
            yield from self.descendants(child, level)

    def at_level(self, code: str, level: AreaLevel) -> Area | None:
        """The area at ``level`` containing ``code`` (itself if it is at that level)."""
        area = self.areas.get(code)
        while area is not None and area.level is not level:
            area = self.areas.get(area.parent) if area.parent else None
        return area

    def count(self, level: AreaLevel) -> int:
        return sum(1 for a in self.areas.values() if a.level is level)

    def unknown(self, codes: Iterable[str]) -> list[str]:
        """The codes that name no known area."""
        return [c for c in codes if c not in self.areas]
