"""CSV importers for residents, buildings, volunteers, screens, key units and custom groups.

Every importer works the same way: read every row, validate every row (values, then references
to areas and to other rows), and only when no line has a problem write anything. A file with
bad lines is an ImportRejected naming each line and its reason. Re-importing a file updates by
external id or id; it never duplicates anyone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ValidationError

from audiences.areas import Area, AreaLevel, AreaTree, store_areas
from audiences.csvfile import Columns, ImportRejected, Row, Table, read_rows
from audiences.groups import DERIVED_GROUPS, CustomGroup, custom_groups, store_custom_group
from audiences.key_units import KIND_NAMES_ZH, Contact, KeyUnit, load_key_units, store_key_units
from audiences.registry import Registry
from audiences.residents import Resident
from audiences.screens import Screen, store_screens
from audiences.volunteers import Volunteer, VolunteerRole, store_volunteers
from broadcast.keys import Keys

M = TypeVar("M", bound=BaseModel)
_LIST_SPLIT = re.compile(r"[;；,，、|]")
_YES = {"1", "true", "yes", "y", "t", "是", "有", "√"}
_NO = {"", "0", "false", "no", "n", "f", "否", "无", "×"}
_WORDS = {  # Chinese (and other) words people put in cells, to our values
    "中文": "zh",
    "汉语": "zh",
    "chinese": "zh",
    "英文": "en",
    "英语": "en",
    "english": "en",
    "短信": "sms",
    "语音": "voice",
    "电话": "voice",
    "推送": "push",
    "app": "push",
    "听力": "hearing",
    "听障": "hearing",
    "视力": "sight",
    "视障": "sight",
    "肢体": "mobility",
    "行动不便": "mobility",
    "网格员": VolunteerRole.grid_worker.value,
    "grid_worker": VolunteerRole.grid_worker.value,
    "楼组长": VolunteerRole.building_leader.value,
    "building_leader": VolunteerRole.building_leader.value,
    "居委社工": VolunteerRole.community_worker.value,
    "社工": VolunteerRole.community_worker.value,
    "community_worker": VolunteerRole.community_worker.value,
    "志愿者": VolunteerRole.volunteer.value,
    "volunteer": VolunteerRole.volunteer.value,
}


@dataclass
class ImportReport:
    """What an import did (or, with dry_run, would do)."""

    kind: str
    rows: int
    created: int = 0
    updated: int = 0
    removed: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Cell values
def _word(value: str) -> str:
    return _WORDS.get(value.strip().lower(), value.strip())


def _flag(value: str) -> str:
    text = value.strip().lower()
    return "true" if text in _YES else "false" if text in _NO else value  # anything else: the model says why


def _list(value: str, word: Callable[[str], str] = _word) -> list[str]:
    return [word(part) for part in _LIST_SPLIT.split(value) if part.strip()]


def _validated(model: type[M], row: Row, values: dict[str, Any], problems: list[str]) -> M | None:
    """The row as a model, or None with each of its problems recorded against its line."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"line {row.line}: {where + ': ' if where else ''}{message}")
        return None


def _check_area(tree: AreaTree, code: str, level: AreaLevel, row: Row, problems: list[str], hint: str = "") -> bool:
    area = tree.areas.get(code)
    if area is None or area.level is not level:
        problems.append(f"line {row.line}: {level.value} {code} is not in the registry{hint}")
        return False
    return True


def _check_community(tree: AreaTree, code: str, row: Row, problems: list[str]) -> bool:
    area = tree.areas.get(code)
    if area is None or area.level is not AreaLevel.community:
        problems.append(f"line {row.line}: committee {code} is not a known residential or village committee")
        return False
    if area.placeholder:
        problems.append(f"line {row.line}: committee {code} ({area.name}) is a placeholder nobody lives in")
        return False
    return True


def _unique(rows: Sequence[tuple[Row, str]], what: str, problems: list[str]) -> None:
    first: dict[str, int] = {}
    for row, key in rows:
        if key in first:
            problems.append(f"line {row.line}: {what} {key} already on line {first[key]}")
        else:
            first[key] = row.line


def _counted(kind: str, table: Table, stored: Sequence[object], dry_run: bool) -> ImportReport:
    """A report counting as updated the items already stored (non-None in ``stored``), the rest as new."""
    report = ImportReport(kind, len(table.rows), dry_run=dry_run)
    report.updated = sum(1 for item in stored if item is not None)
    report.created = len(stored) - report.updated
    return report


def _finish(source: str, table: Table, problems: list[str]) -> None:
    every = table.problems + problems
    if every:
        every.sort(key=lambda p: int(m.group(1)) if (m := re.match(r"line (\d+)", p)) else 0)
        raise ImportRejected(source, every)


# Residents
RESIDENT_COLUMNS = Columns(
    required=("external_id", "name", "building"),
    optional=(
        "phone",
        "language",
        "room",
        "community",
        "grid",
        "elderly",
        "elderly_alone",
        "disability",
        "no_smartphone",
        "opted_out",
        "channels",
        "push_tokens",
    ),
    aliases={
        "编号": "external_id",
        "居民编号": "external_id",
        "姓名": "name",
        "手机": "phone",
        "手机号": "phone",
        "电话": "phone",
        "语言": "language",
        "楼栋": "building",
        "楼栋编码": "building",
        "房号": "room",
        "室号": "room",
        "居委会": "community",
        "社区": "community",
        "网格": "grid",
        "老人": "elderly",
        "独居老人": "elderly_alone",
        "残障": "disability",
        "无智能手机": "no_smartphone",
        "退订": "opted_out",
        "渠道": "channels",
        "推送令牌": "push_tokens",
    },
)


def parse_residents(
    table: Table, tree: AreaTree, replace_community: str | None = None
) -> tuple[list[Resident], list[str]]:
    """Residents from rows, and every problem found (by line)."""
    problems: list[str] = []
    residents: list[Resident] = []
    _unique([(row, row.get("external_id")) for row in table.rows], "external id", problems)
    for row in table.rows:
        building = row.get("building")
        tokens = _list(row.get("push_tokens"), str.strip)
        channels = _list(row.get("channels"))
        if not channels:  # by default: the app if they have it, then SMS, then a call
            channels = (["push"] if tokens else []) + (["sms", "voice"] if row.get("phone") else [])
        values = {
            "external_id": row.get("external_id"),
            "name": row.get("name"),
            "phone": row.get("phone") or None,
            "language": _word(row.get("language") or "zh"),
            "community": row.get("community") or building[:12],
            "grid": row.get("grid") or building[:14],
            "building": building,
            "room": row.get("room"),
            "elderly": _flag(row.get("elderly")),
            "elderly_alone": _flag(row.get("elderly_alone")),
            "disability": _list(row.get("disability")),
            "no_smartphone": _flag(row.get("no_smartphone")),
            "opted_out": _flag(row.get("opted_out")),
            "channels": channels,
            "push_tokens": tokens,
        }
        resident = _validated(Resident, row, values, problems)
        if resident is None or not _check_community(tree, resident.community, row, problems):
            continue
        if not _check_area(tree, building, AreaLevel.building, row, problems, "; import buildings first"):
            continue
        if replace_community and resident.community != replace_community:
            problems.append(
                f"line {row.line}: lives in committee {resident.community}, but the file replaces {replace_community}"
            )
            continue
        if resident.elderly_alone and not resident.elderly:
            resident = resident.model_copy(update={"elderly": True})
        residents.append(resident)
    return residents, problems


def import_residents(
    client: redis.Redis,
    keys: Keys,
    tree: AreaTree,
    raw: bytes,
    *,
    source: str = "residents.csv",
    replace_community: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import residents; with ``replace_community``, residents of that committee not in the file leave."""
    if replace_community is not None:
        area = tree.areas.get(replace_community)
        if area is None or area.level is not AreaLevel.community:
            raise ImportRejected(source, [f"--replace-community {replace_community} is not a known committee"])
    table = read_rows(raw, RESIDENT_COLUMNS, source)
    residents, problems = parse_residents(table, tree, replace_community)
    _finish(source, table, problems)
    registry = Registry(client, keys)
    report = _counted("residents", table, list(registry.rids_of([r.external_id for r in residents]).values()), dry_run)
    leaving: list[str] = []
    if replace_community is not None:
        listed = {r.external_id for r in residents}
        leaving = sorted(ext for ext in registry.residents_of(replace_community) if ext not in listed)
    report.removed = len(leaving)
    if not dry_run:
        registry.upsert(residents)
        registry.remove(leaving)
    return report


# Buildings (and the grids they sit in)
BUILDING_COLUMNS = Columns(
    required=("code", "name"),
    optional=("grid_name",),
    aliases={"楼栋编码": "code", "编码": "code", "名称": "name", "楼栋": "name", "网格名称": "grid_name"},
)


def import_buildings(
    client: redis.Redis, keys: Keys, tree: AreaTree, raw: bytes, *, source: str = "buildings.csv", dry_run: bool = False
) -> ImportReport:
    """Import buildings by code (committee 12 digits + grid 2 + building 3); unknown grids are created."""
    table = read_rows(raw, BUILDING_COLUMNS, source)
    problems: list[str] = []
    _unique([(row, row.get("code")) for row in table.rows], "building", problems)
    areas: dict[str, Area] = {}
    grid_names: dict[str, tuple[str, int]] = {}
    for row in table.rows:
        code, name, grid_name = row.get("code"), row.get("name"), row.get("grid_name")
        if not re.fullmatch(r"\d{17}", code) or code[12:14] == "00" or code[14:] == "000":
            problems.append(f"line {row.line}: code {code!r} is not a building code (committee + grid 01-99 + 001-999)")
            continue
        if not name or len(name) > 100:
            problems.append(f"line {row.line}: name: a building needs a name of at most 100 characters")
            continue
        if not _check_community(tree, code[:12], row, problems):
            continue
        grid = code[:14]
        if grid_name:
            if grid in grid_names and grid_names[grid][0] != grid_name:
                problems.append(
                    f"line {row.line}: grid {grid} is named {grid_names[grid][0]!r} on line {grid_names[grid][1]}"
                )
                continue
            grid_names[grid] = (grid_name, row.line)
        if grid_name or grid not in tree.areas:
            community = tree.areas[code[:12]]
            areas[grid] = Area(
                grid, grid_name or f"{community.name}第{int(code[12:14])}网格", AreaLevel.grid, community.code
            )
        areas[code] = Area(code, name, AreaLevel.building, grid)
    _finish(source, table, problems)
    buildings = [a for a in areas.values() if a.level is AreaLevel.building]
    report = _counted("buildings", table, [tree.areas.get(b.code) for b in buildings], dry_run)
    if not dry_run:
        store_areas(client, keys, areas.values())
    return report


# Volunteers
VOLUNTEER_COLUMNS = Columns(
    required=("id", "name", "phone", "role", "community"),
    optional=("grids", "buildings"),
    aliases={
        "编号": "id",
        "姓名": "name",
        "手机": "phone",
        "电话": "phone",
        "角色": "role",
        "居委会": "community",
        "网格": "grids",
        "楼栋": "buildings",
    },
)


def import_volunteers(
    client: redis.Redis,
    keys: Keys,
    tree: AreaTree,
    raw: bytes,
    *,
    source: str = "volunteers.csv",
    dry_run: bool = False,
) -> ImportReport:
    """Import volunteers by id, with the grids and buildings (';'-separated) each covers."""
    table = read_rows(raw, VOLUNTEER_COLUMNS, source)
    problems: list[str] = []
    _unique([(row, row.get("id")) for row in table.rows], "volunteer", problems)
    volunteers: list[Volunteer] = []
    for row in table.rows:
        values = {
            "id": row.get("id"),
            "name": row.get("name"),
            "phone": row.get("phone"),
            "role": _word(row.get("role")),
            "community": row.get("community"),
            "grids": _list(row.get("grids"), str.strip),
            "buildings": _list(row.get("buildings"), str.strip),
        }
        volunteer = _validated(Volunteer, row, values, problems)
        if volunteer is None or not _check_community(tree, volunteer.community, row, problems):
            continue
        ok = all([_check_area(tree, g, AreaLevel.grid, row, problems) for g in volunteer.grids])
        ok &= all([_check_area(tree, b, AreaLevel.building, row, problems) for b in volunteer.buildings])
        if ok:
            volunteers.append(volunteer)
    _finish(source, table, problems)
    stored = client.hmget(keys.volunteers, [v.id for v in volunteers]) if volunteers else []
    report = _counted("volunteers", table, stored, dry_run)
    if not dry_run:
        store_volunteers(client, keys, volunteers)
    return report


# Screens
SCREEN_COLUMNS = Columns(
    required=("id", "building", "transport", "address", "columns", "lines"),
    optional=("name",),
    aliases={
        "编号": "id",
        "楼栋": "building",
        "传输": "transport",
        "地址": "address",
        "列数": "columns",
        "行数": "lines",
    },
)


def import_screens(
    client: redis.Redis, keys: Keys, tree: AreaTree, raw: bytes, *, source: str = "screens.csv", dry_run: bool = False
) -> ImportReport:
    """Import screens by id: building, transport (mqtt or http), address (topic or URL), size."""
    table = read_rows(raw, SCREEN_COLUMNS, source)
    problems: list[str] = []
    _unique([(row, row.get("id")) for row in table.rows], "screen", problems)
    _unique([(row, row.get("address")) for row in table.rows], "address", problems)
    screens: list[Screen] = []
    for row in table.rows:
        values = {**row.values, "transport": row.get("transport").lower()}
        screen = _validated(Screen, row, values, problems)
        if screen is not None and _check_area(tree, screen.building, AreaLevel.building, row, problems):
            screens.append(screen)
    _finish(source, table, problems)
    stored = client.hmget(keys.screens, [s.id for s in screens]) if screens else []
    report = _counted("screens", table, stored, dry_run)
    if not dry_run:
        store_screens(client, keys, screens)
    return report


# Key units: one row per contact person; a unit's rows agree on the unit's own columns
KEY_UNIT_COLUMNS = Columns(
    required=("unit_id", "unit_name", "kind", "grid", "contact_name", "contact_phone"),
    optional=("community", "building", "address", "contact_title"),
    aliases={
        "单位编号": "unit_id",
        "单位名称": "unit_name",
        "类别": "kind",
        "网格": "grid",
        "楼栋": "building",
        "居委会": "community",
        "地址": "address",
        "联系人": "contact_name",
        "联系电话": "contact_phone",
        "职务": "contact_title",
    },
)
_UNIT_FIELDS = ("unit_name", "kind", "community", "grid", "building", "address")


def import_key_units(
    client: redis.Redis, keys: Keys, tree: AreaTree, raw: bytes, *, source: str = "key_units.csv", dry_run: bool = False
) -> ImportReport:
    """Import key units by id; each unit's contacts are exactly the rows that name it."""
    kinds = {zh: kind.value for kind, zh in KIND_NAMES_ZH.items()}
    table = read_rows(raw, KEY_UNIT_COLUMNS, source)
    problems: list[str] = []
    first_row: dict[str, Row] = {}
    contacts: dict[str, list[Contact | None]] = {}
    for row in table.rows:
        unit_id = row.get("unit_id")
        first = first_row.setdefault(unit_id, row)
        differing = [f for f in _UNIT_FIELDS if row.get(f) != first.get(f)]
        if differing:
            problems.append(f"line {row.line}: {', '.join(differing)} differ from line {first.line} for unit {unit_id}")
            continue
        contact = {
            "name": row.get("contact_name"),
            "phone": row.get("contact_phone"),
            "title": row.get("contact_title"),
        }
        contacts.setdefault(unit_id, []).append(_validated(Contact, row, contact, problems))
    units: list[KeyUnit] = []
    for unit_id, row in first_row.items():
        listed = contacts.get(unit_id, [])
        if None in listed:
            continue  # the bad contact's line is already named
        values = {
            "id": unit_id,
            "name": row.get("unit_name"),
            "kind": kinds.get(row.get("kind"), row.get("kind").lower()),
            "community": row.get("community") or row.get("grid")[:12],
            "grid": row.get("grid"),
            "building": row.get("building") or None,
            "address": row.get("address"),
            "contacts": listed,
        }
        unit = _validated(KeyUnit, row, values, problems)
        if unit is None or not _check_community(tree, unit.community, row, problems):
            continue
        if _check_area(tree, unit.grid, AreaLevel.grid, row, problems) and (
            unit.building is None or _check_area(tree, unit.building, AreaLevel.building, row, problems)
        ):
            units.append(unit)
    _finish(source, table, problems)
    known = load_key_units(client, keys, [u.id for u in units])
    report = _counted("key_units", table, [known.get(u.id) for u in units], dry_run)
    if not dry_run:
        store_key_units(client, keys, units)
    return report


# Custom groups
GROUP_COLUMNS = Columns(required=("external_id",), aliases={"编号": "external_id", "居民编号": "external_id"})


def import_group(
    client: redis.Redis,
    keys: Keys,
    name: str,
    title: str,
    raw: bytes,
    *,
    source: str = "group.csv",
    dry_run: bool = False,
) -> ImportReport:
    """Create or replace a custom group from a list of external ids (all must be in the registry)."""
    if name in DERIVED_GROUPS:
        raise ImportRejected(source, [f"{name!r} is a derived group; choose another name"])
    existing = custom_groups(client, keys).get(name)
    group = CustomGroup(name=name, title=title or (existing.title if existing else name))
    table = read_rows(raw, GROUP_COLUMNS, source)
    problems: list[str] = []
    _unique([(row, row.get("external_id")) for row in table.rows], "external id", problems)
    rids = Registry(client, keys).rids_of([row.get("external_id") for row in table.rows])
    for row in table.rows:
        if rids.get(row.get("external_id")) is None:
            problems.append(f"line {row.line}: no one with external id {row.get('external_id')!r} in the registry")
    _finish(source, table, problems)
    report = ImportReport("group", len(table.rows), dry_run=dry_run)
    report.created, report.updated = (0, 1) if existing else (1, 0)
    if not dry_run:
        store_custom_group(client, keys, group, [rid for rid in rids.values() if rid is not None])
    return report
