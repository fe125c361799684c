"""CSV importers for residents, buildings, volunteers, screens, key units and custom groups.

Every importer works the same way: read every row, validate every row (values, then references
to areas and to other rows), and only when no line has a problem write anything. A file with
bad lines is an ImportRejected naming each line and its reason. Re-importing a file updates by
external id or id; it never duplicates anyone.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from array import array
from pathlib import Path

import redis

from audiences.areas import Area, AreaLevel, AreaTree, store_areas
from audiences.checking import FileCheck, ImportReport
from audiences.csvfile import (
    Columns,
    CsvFile,
    CsvSource,
    ImportRejected,
    Row,
    Table,
    flag,
    listed,
    read_rows,
    word,
)
from audiences.groups import DERIVED_GROUPS, CustomGroup, custom_groups, store_custom_group
from audiences.import_journal import import_journal
from audiences.key_units import KIND_NAMES_ZH, Contact, KeyUnit, load_key_units, store_key_units
from audiences.registry import Registry
from audiences.residents import Resident
from audiences.screens import Screen, store_screens
from audiences.volunteers import Volunteer, store_volunteers
from broadcast.core.keys import Keys

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


WRITE_CHUNK = 5_000  # rows written to Redis at a time


def parse_resident(check: FileCheck, row: Row, replace_community: str | None = None) -> Resident | None:
    """The resident a row describes, or None with each of its problems recorded against its line."""
    building = row.get("building")
    tokens = listed(row.get("push_tokens"), str.strip)
    channels = listed(row.get("channels"))
    if not channels:  # by default: the app if they have it, then SMS, then a call
        channels = (["push"] if tokens else []) + (["sms", "voice"] if row.get("phone") else [])
    values = {
        "external_id": row.get("external_id"),
        "name": row.get("name"),
        "phone": row.get("phone") or None,
        "language": word(row.get("language") or "zh"),
        "community": row.get("community") or building[:12],
        "grid": row.get("grid") or building[:14],
        "building": building,
        "room": row.get("room"),
        "elderly": flag(row.get("elderly")),
        "elderly_alone": flag(row.get("elderly_alone")),
        "disability": listed(row.get("disability")),
        "no_smartphone": flag(row.get("no_smartphone")),
        "opted_out": flag(row.get("opted_out")),
        "channels": channels,
        "push_tokens": tokens,
    }
    resident = check.model(Resident, row, values)
    if resident is None or not check.community(row, resident.community):
        return None
    if not check.area(row, building, AreaLevel.building, "; import buildings first"):
        return None
    if replace_community and resident.community != replace_community:
        check.add(row, f"lives in committee {resident.community}, but the file replaces {replace_community}")
        return None
    if resident.elderly_alone and not resident.elderly:
        resident = resident.model_copy(update={"elderly": True})
    return resident


def _id_digest(external_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(external_id.encode(), digest_size=8).digest(), "big")


class _ExternalIds:
    """The file's external ids as 8-byte digests with their lines: repeats found by sorting, a
    person looked up by bisection, 12 bytes a row whatever the ids' length."""

    def __init__(self) -> None:
        self.digests = array("Q")
        self.lines = array("I")

    def add(self, external_id: str, line: int) -> None:
        self.digests.append(_id_digest(external_id))
        self.lines.append(line)

    def seal(self) -> list[tuple[int, int]]:
        """Sort; the (line, earlier line) of every row whose id's digest an earlier row has."""
        ordered = array("Q", sorted(self.digests))
        repeated = {a for a, b in itertools.pairwise(ordered) if a == b}
        first: dict[int, int] = {}
        repeats: list[tuple[int, int]] = []
        for digest, line in zip(self.digests, self.lines, strict=True):
            if digest in repeated:
                if digest in first:
                    repeats.append((line, first[digest]))
                else:
                    first[digest] = line
        self.digests, self.lines = ordered, array("I")
        return repeats

    def __contains__(self, external_id: str) -> bool:
        digest = _id_digest(external_id)
        at = bisect.bisect_left(self.digests, digest)
        return at < len(self.digests) and self.digests[at] == digest


def _check_residents(
    check: FileCheck, found: CsvFile, registry: Registry, replace_community: str | None
) -> tuple[_ExternalIds, int, int]:
    """Pass one: every row checked, nothing kept but the ids; (ids, rows, rows already registered)."""
    ids = _ExternalIds()
    rows = updated = 0
    chunk: list[str] = []
    for item in found.rows():
        if isinstance(item, str):
            check.problems.append(item)
            continue
        rows += 1
        ids.add(item.get("external_id"), item.line)
        resident = parse_resident(check, item, replace_community)
        if resident is not None:
            chunk.append(resident.external_id)
        if len(chunk) >= WRITE_CHUNK:
            updated += sum(1 for rid in registry.rids_of(chunk).values() if rid is not None)
            chunk = []
    updated += sum(1 for rid in registry.rids_of(chunk).values() if rid is not None)
    repeats = ids.seal()
    if repeats:
        wanted = {line for pair in repeats for line in pair}
        value = {r.line: r.get("external_id") for r in found.rows() if isinstance(r, Row) and r.line in wanted}
        for line, first in repeats:
            check.problems.append(f"line {line}: external id {value.get(line, '')} already on line {first}")
    return ids, rows, updated


def import_residents(
    client: redis.Redis,
    keys: Keys,
    tree: AreaTree,
    raw: bytes | Path,
    *,
    source: str = "residents.csv",
    replace_community: str | None = None,
    dry_run: bool = False,
    encoding: str | None = None,
) -> ImportReport:
    """Import residents; with ``replace_community``, residents of that committee not in the file leave.

    The file is read as a stream, twice: every row is checked first, nothing is written unless all
    are good; then the records are written a chunk at a time, and the committees' members indexes
    (what targeting reads) switch to the new registry in one transaction at the end. An import
    that dies before that switch changes nothing targeting sees, and ``areas show`` says so.
    """
    if replace_community is not None:
        area = tree.areas.get(replace_community)
        if area is None or area.level is not AreaLevel.community:
            raise ImportRejected(source, [f"--replace-community {replace_community} is not a known committee"])
    found = CsvFile(CsvSource.of(raw, source), RESIDENT_COLUMNS, encoding)
    check = FileCheck(source, Table([], [], found.encoding_name), tree)
    registry = Registry(client, keys)
    ids, rows, updated = _check_residents(check, found, registry, replace_community)
    check.finish()
    report = ImportReport("residents", rows, created=rows - updated, updated=updated, dry_run=dry_run)
    report.encoding = found.encoding_name
    leaving: dict[str, int] = {}
    if replace_community is not None:
        current = registry.residents_of(replace_community)
        gone = sorted(ext for ext in current if ext not in ids)
        leaving = {ext: rid for ext, rid in registry.rids_of(gone).items() if rid is not None}
    report.removed = len(leaving)
    if dry_run:
        return report
    with import_journal(client, keys, "residents", source, rows) as journal:
        touched: set[str] = set()
        joining: dict[str, array[int]] = {}
        batch: list[Resident] = []
        written = 0
        for item in found.rows():
            resident = parse_resident(check, item, replace_community) if isinstance(item, Row) else None
            if resident is not None:
                batch.append(resident)
            if len(batch) >= WRITE_CHUNK:
                written += _write(registry, batch, touched, joining)
                journal.progress(written)
                batch = []
        written += _write(registry, batch, touched, joining)
        journal.progress(written)
        if replace_community is not None:
            touched.add(replace_community)
        registry.rebuild_members(touched, joining, leaving=leaving.values())
        registry.remove(list(leaving))
    return report


def _write(registry: Registry, batch: list[Resident], touched: set[str], joining: dict[str, array[int]]) -> int:
    """Write a chunk's records; note its committees and who joins them (4 bytes a person)."""
    if not batch:
        return 0
    written = registry.write_entries(batch)
    touched |= written.touched
    for community, rids in written.joining.items():
        joining.setdefault(community, array("I")).extend(rids)
    return len(batch)


# Buildings (and the grids they sit in)
_PLAIN_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,100}")
BUILDING_COLUMNS = Columns(
    required=("code", "name"),
    optional=("grid_name",),
    aliases={"楼栋编码": "code", "编码": "code", "名称": "name", "楼栋": "name", "网格名称": "grid_name"},
)


def import_buildings(
    client: redis.Redis,
    keys: Keys,
    tree: AreaTree,
    raw: bytes | Path,
    *,
    source: str = "buildings.csv",
    dry_run: bool = False,
    encoding: str | None = None,
) -> ImportReport:
    """Import buildings by code (committee 12 digits + grid 2 + building 3); unknown grids are created."""
    table = read_rows(raw, BUILDING_COLUMNS, source, encoding)
    check = FileCheck(source, table, tree)
    check.unique("code", "building")
    areas: dict[str, Area] = {}
    grid_names: dict[str, tuple[str, int]] = {}
    for row in table.rows:
        code, name, grid_name = row.get("code"), row.get("name"), row.get("grid_name")
        if not re.fullmatch(r"\d{17}", code) or code[12:14] == "00" or code[14:] == "000":
            check.add(row, f"code {code!r} is not a building code (committee + grid 01-99 + 001-999)")
            continue
        unfit = [
            column
            for column, text in (("name", name), ("grid_name", grid_name or "-"))
            if not _PLAIN_NAME.fullmatch(text)
        ]
        if unfit:  # grid_name may be left empty: the grid is then named after its committee
            check.add(row, f"{unfit[0]}: a name is 1 to 100 characters, without control characters")
            continue
        if not check.community(row, code[:12]):
            continue
        grid = code[:14]
        if grid_name:
            if grid in grid_names and grid_names[grid][0] != grid_name:
                check.add(row, f"grid {grid} is named {grid_names[grid][0]!r} on line {grid_names[grid][1]}")
                continue
            grid_names[grid] = (grid_name, row.line)
        if grid_name or grid not in tree.areas:
            community = tree.areas[code[:12]]
            areas[grid] = Area(
                grid, grid_name or f"{community.name}第{int(code[12:14])}网格", AreaLevel.grid, community.code
            )
        areas[code] = Area(code, name, AreaLevel.building, grid)
    check.finish()
    buildings = [a for a in areas.values() if a.level is AreaLevel.building]
    report = check.report("buildings", [tree.areas.get(b.code) for b in buildings], dry_run)
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
    raw: bytes | Path,
    *,
    source: str = "volunteers.csv",
    dry_run: bool = False,
    encoding: str | None = None,
) -> ImportReport:
    """Import volunteers by id, with the grids and buildings (';'-separated) each covers."""
    table = read_rows(raw, VOLUNTEER_COLUMNS, source, encoding)
    check = FileCheck(source, table, tree)
    check.unique("id", "volunteer")
    volunteers: list[Volunteer] = []
    for row in table.rows:
        values = {
            "id": row.get("id"),
            "name": row.get("name"),
            "phone": row.get("phone"),
            "role": word(row.get("role")),
            "community": row.get("community"),
            "grids": listed(row.get("grids"), str.strip),
            "buildings": listed(row.get("buildings"), str.strip),
        }
        volunteer = check.model(Volunteer, row, values)
        if volunteer is None or not check.community(row, volunteer.community):
            continue
        ok = all([check.area(row, g, AreaLevel.grid) for g in volunteer.grids])
        ok &= all([check.area(row, b, AreaLevel.building) for b in volunteer.buildings])
        if ok:
            volunteers.append(volunteer)
    check.finish()
    stored = client.hmget(keys.volunteers, [v.id for v in volunteers]) if volunteers else []
    report = check.report("volunteers", stored, dry_run)
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
    client: redis.Redis,
    keys: Keys,
    tree: AreaTree,
    raw: bytes | Path,
    *,
    source: str = "screens.csv",
    dry_run: bool = False,
    encoding: str | None = None,
) -> ImportReport:
    """Import screens by id: building, transport (mqtt or http), address (topic or URL), size."""
    table = read_rows(raw, SCREEN_COLUMNS, source, encoding)
    check = FileCheck(source, table, tree)
    check.unique("id", "screen")
    check.unique("address", "address")
    screens: list[Screen] = []
    for row in table.rows:
        values = {**row.values, "transport": row.get("transport").lower()}
        screen = check.model(Screen, row, values)
        if screen is not None and check.area(row, screen.building, AreaLevel.building):
            screens.append(screen)
    check.finish()
    stored = client.hmget(keys.screens, [s.id for s in screens]) if screens else []
    report = check.report("screens", stored, dry_run)
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
    client: redis.Redis,
    keys: Keys,
    tree: AreaTree,
    raw: bytes | Path,
    *,
    source: str = "key_units.csv",
    dry_run: bool = False,
    encoding: str | None = None,
) -> ImportReport:
    """Import key units by id; each unit's contacts are exactly the rows that name it."""
    kinds = {zh: kind.value for kind, zh in KIND_NAMES_ZH.items()}
    table = read_rows(raw, KEY_UNIT_COLUMNS, source, encoding)
    check = FileCheck(source, table, tree)
    first_row: dict[str, Row] = {}
    contacts: dict[str, list[Contact | None]] = {}
    for row in table.rows:
        unit_id = row.get("unit_id")
        first = first_row.setdefault(unit_id, row)
        differing = [f for f in _UNIT_FIELDS if row.get(f) != first.get(f)]
        if differing:
            check.add(row, f"{', '.join(differing)} differ from line {first.line} for unit {unit_id}")
            continue
        contact = {
            "name": row.get("contact_name"),
            "phone": row.get("contact_phone"),
            "title": row.get("contact_title"),
        }
        contacts.setdefault(unit_id, []).append(check.model(Contact, row, contact))
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
        unit = check.model(KeyUnit, row, values)
        if unit is None or not check.community(row, unit.community):
            continue
        if check.area(row, unit.grid, AreaLevel.grid) and (
            unit.building is None or check.area(row, unit.building, AreaLevel.building)
        ):
            units.append(unit)
    check.finish()
    known = load_key_units(client, keys, [u.id for u in units])
    report = check.report("key_units", [known.get(u.id) for u in units], dry_run)
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
    raw: bytes | Path,
    *,
    source: str = "group.csv",
    dry_run: bool = False,
    encoding: str | None = None,
) -> ImportReport:
    """Create or replace a custom group from a list of external ids (all must be in the registry)."""
    if name in DERIVED_GROUPS:
        raise ImportRejected(source, [f"{name!r} is a derived group; choose another name"])
    existing = custom_groups(client, keys).get(name)
    group = CustomGroup(name=name, title=title or (existing.title if existing else name))
    table = read_rows(raw, GROUP_COLUMNS, source, encoding)
    check = FileCheck(source, table)
    check.unique("external_id", "external id")
    rids = Registry(client, keys).rids_of([row.get("external_id") for row in table.rows])
    for row in table.rows:
        if rids.get(row.get("external_id")) is None:
            check.add(row, f"no one with external id {row.get('external_id')!r} in the registry")
    check.finish()
    report = ImportReport("group", len(table.rows), dry_run=dry_run)
    report.created, report.updated = (0, 1) if existing else (1, 0)
    if not dry_run:
        store_custom_group(client, keys, group, [rid for rid in rids.values() if rid is not None])
    return report
