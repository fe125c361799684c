"""CSV imports: every row validated first, bad lines named, nothing half-imported, any encoding."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from audiences.population import Population
from audiences.registry import Registry
from audiences.residents import Role
from broadcast.core.context import Context
from broadcast.running.cli import main
from tests.conftest import STREET

COMMUNITY = "310115005001"
HEADER = ["external_id", "name", "phone", "building", "room", "elderly", "channels"]


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8", header: list[str] = HEADER) -> Path:
    text = io.StringIO()
    csv.writer(text).writerows([header, *rows])
    path.write_bytes(text.getvalue().encode(encoding))
    return path


def registry_snapshot(ctx: Context) -> dict[str, Any]:
    return {k: ctx.redis.dump(k) for k in sorted(ctx.redis.scan_iter(match=f"{ctx.keys.ns}:*"))}


def thousand_rows(population: Population) -> list[list[str]]:
    buildings = sorted({r.building for r in population.residents if r.building})
    return [
        [
            f"imp-{i:04d}",
            f"居民{i}",
            f"1380000{i:04d}",
            buildings[i % len(buildings)],
            f"{i % 6 + 1}0{i % 4 + 1}",
            "",
            "",
        ]
        for i in range(1000)
    ]


def test_a_thousand_rows_with_three_bad_ones_import_nothing_and_name_the_lines(
    ctx: Context, population: Population, cli: Any, tmp_path: Path
) -> None:
    rows = thousand_rows(population)
    rows[99][2] = "12345"  # line 101
    rows[500][3] = "31011500500199999"  # line 502
    rows[997][5] = "maybe"  # line 999
    before = registry_snapshot(ctx)

    code, _, err = cli("residents", "import", str(write_csv(tmp_path / "r.csv", rows)))

    assert code != 0
    assert "3 problem(s); nothing was imported" in err
    named = [line.strip() for line in err.splitlines() if line.strip().startswith("line ")]
    assert [n.split(":")[0] for n in named] == ["line 101", "line 502", "line 999"]
    assert "'12345' is not a valid phone number" in named[0]
    assert "31011500500199999 is not in the registry" in named[1]
    assert "elderly" in named[2]
    assert registry_snapshot(ctx) == before


def test_reimport_updates_by_external_id_and_never_duplicates(
    ctx: Context, population: Population, cli: Any, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "r.csv", thousand_rows(population))
    code, out, _ = cli("residents", "import", str(path), "--json")
    assert code == 0 and json.loads(out)["created"] == 1000
    members = sum(len(Registry(ctx.redis, ctx.keys).members(c)) for c in {r.community for r in population.residents})

    rows = thousand_rows(population)
    rows[0][1] = "改名了"
    code, out, _ = cli("residents", "import", str(write_csv(path, rows)), "--json")
    assert code == 0 and (json.loads(out)["created"], json.loads(out)["updated"]) == (0, 1000)
    registry = Registry(ctx.redis, ctx.keys)
    assert sum(len(registry.members(c)) for c in {r.community for r in population.residents}) == members
    assert registry.by_external_id(["imp-0000"])["imp-0000"].name == "改名了"


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig", "utf-8", "utf-16"])
def test_spreadsheet_encodings_and_chinese_headers_import(
    ctx: Context, population: Population, cli: Any, tmp_path: Path, encoding: str
) -> None:
    building = next(r.building for r in population.residents if r.building)
    header = ["居民编号", "姓名", "手机", "楼栋", "房号", "独居老人", "残障", "渠道", "语言"]
    rows = [
        ["zh-1", "欧阳娜娜", "13700001111", building, "3-502", "是", "听力；肢体", "语音、短信", "中文"],
        ["zh-2", "Émile Zoë", "+86 137 0000 2222", building, "3-503", "否", "", "", "英文"],
    ]
    code, _, err = cli("residents", "import", str(write_csv(tmp_path / "r.csv", rows, encoding, header)))
    assert code == 0, err
    found = Registry(ctx.redis, ctx.keys).by_external_id(["zh-1", "zh-2"])
    first, second = found["zh-1"], found["zh-2"]
    assert (first.name, first.phone, first.room) == ("欧阳娜娜", "+8613700001111", "3-502")
    assert first.elderly_alone and first.elderly and first.disability == ["hearing", "mobility"]
    assert [c.value for c in first.channels] == ["voice", "sms"]
    assert (second.name, second.language.value, [c.value for c in second.channels]) == (
        "Émile Zoë",
        "en",
        ["sms", "voice"],
    )


def test_replace_community_removes_residents_who_moved_away(
    ctx: Context, population: Population, cli: Any, tmp_path: Path
) -> None:
    staying = [r for r in population.residents if r.community == COMMUNITY]
    gone = staying[-2:]
    rows = [[r.external_id, r.name, r.phone or "", r.building or "", r.room, "", ""] for r in staying[:-2]]
    path = write_csv(tmp_path / "r.csv", rows)

    code, out, _ = cli("residents", "import", str(path), "--replace-community", COMMUNITY, "--dry-run", "--json")
    assert code == 0 and json.loads(out)["removed"] == 2
    assert len(Registry(ctx.redis, ctx.keys).by_external_id([r.external_id for r in gone])) == 2, "dry run"

    code, out, _ = cli("residents", "import", str(path), "--replace-community", COMMUNITY, "--json")
    assert code == 0 and json.loads(out)["removed"] == 2
    registry = Registry(ctx.redis, ctx.keys)
    assert registry.by_external_id([r.external_id for r in gone]) == {}
    assert set(registry.residents_of(COMMUNITY)) == {r.external_id for r in staying[:-2]}
    volunteers = [v for v in population.volunteers if v.community == COMMUNITY]
    kept = registry.by_external_id([f"v:{v.id}" for v in volunteers])
    assert len(kept) == len(volunteers) and all(e.role is Role.volunteer for e in kept.values())
    others = [r.external_id for r in population.residents if r.community != COMMUNITY]
    assert len(registry.by_external_id(others)) == len(others)

    elsewhere = next(r for r in population.residents if r.community != COMMUNITY)
    rows.append([elsewhere.external_id, elsewhere.name, elsewhere.phone or "", elsewhere.building or "", "", "", ""])
    code, _, err = cli("residents", "import", str(write_csv(path, rows)), "--replace-community", COMMUNITY)
    assert code != 0 and f"line {len(rows) + 1}: lives in committee {elsewhere.community}" in err


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        (["external_id", "name", "building", "shoe_size"], "unknown column 'shoe_size'"),
        (["external_id", "name"], "missing column 'building'"),
        (["external_id", "name", "building", "name"], "column 'name' appears twice"),
    ],
)
def test_a_bad_header_is_named(
    population: Population, cli: Any, tmp_path: Path, header: list[str], complaint: str
) -> None:
    code, _, err = cli("residents", "import", str(write_csv(tmp_path / "r.csv", [], header=header)))
    assert code != 0 and f"line 1: {complaint}" in err


def test_buildings_volunteers_screens_and_key_units_import(
    ctx: Context, population: Population, cli: Any, tmp_path: Path
) -> None:
    grid, placeholder = f"{COMMUNITY}77", "310115503498001001"[:12]
    buildings = [["code", "name", "grid_name"], [f"{grid}001", "新楼1号", "新网格"], [f"{grid}002", "新楼2号", ""]]
    bad = [*buildings, [f"{placeholder}01001", "虚拟楼", ""], ["3101150050017", "短码", ""]]
    bad.append([f"{grid}003", "楼" * 101, ""])
    code, _, err = cli("buildings", "import", str(write_csv(tmp_path / "b.csv", bad[1:], header=bad[0])))
    assert code != 0 and "line 4: committee 310115503498" in err and "placeholder" in err and "line 5: code" in err
    assert "line 6: name: a name is 1 to 100 characters" in err
    code, _, err = cli("buildings", "import", str(write_csv(tmp_path / "b.csv", buildings[1:], header=buildings[0])))
    assert code == 0, err

    code, out, _ = cli("volunteers", "gaps", "--area", STREET, "--json")
    assert [g["code"] for g in json.loads(out)["grids_without_volunteers"]] == [grid], "the new grid has nobody"

    header = ["id", "name", "phone", "role", "community", "grids", "buildings"]
    volunteers = [["vx", "李娜", "13600009999", "网格员", COMMUNITY, grid, f"{grid}001;{grid}002"]]
    bad_volunteers = [*volunteers, ["vy", "张伟", "13600008888", "队长", COMMUNITY, "", ""]]
    bad_volunteers.append(["vz", "刘洋", "13600007777", "楼组长", COMMUNITY, f"{COMMUNITY}88", ""])
    code, _, err = cli("volunteers", "import", str(write_csv(tmp_path / "v.csv", bad_volunteers, header=header)))
    assert code != 0 and "line 3: role" in err and f"line 4: grid {COMMUNITY}88 is not in the registry" in err
    code, _, err = cli("volunteers", "import", str(write_csv(tmp_path / "v.csv", volunteers, header=header)))
    assert code == 0, err
    code, out, _ = cli("volunteers", "gaps", "--area", STREET, "--json")
    assert json.loads(out)["grids_without_volunteers"] == []
    assert Registry(ctx.redis, ctx.keys).by_external_id(["v:vx"])["v:vx"].place == grid

    header = ["id", "building", "transport", "address", "columns", "lines"]
    screens = [["s1", f"{grid}001", "mqtt", f"screens/{grid}001/lift-1", "16", "4"]]
    screens.append(["s2", f"{grid}002", "http", "https://screens.example.org/display/2", "32", "8"])
    bad_screens = [
        *screens,
        ["s3", f"{grid}001", "mqtt", "screens/#", "16", "4"],
        ["s4", f"{grid}003", "mqtt", "a/b", "16", "4"],
    ]
    code, _, err = cli("screens", "import", str(write_csv(tmp_path / "s.csv", bad_screens, header=header)))
    assert code != 0 and "line 4: address" not in err and "line 4:" in err and "no wildcards" in err
    assert f"line 5: building {grid}003 is not in the registry" in err
    code, _, err = cli("screens", "import", str(write_csv(tmp_path / "s.csv", screens, header=header)))
    assert code == 0, err
    code, out, _ = cli("areas", "show", grid, "--json")
    assert json.loads(out)["screens"] == 2 and json.loads(out)["volunteers"] == 1

    header = ["unit_id", "unit_name", "kind", "grid", "contact_name", "contact_phone", "contact_title"]
    units = [
        ["site-1", "陆家嘴某工地", "建筑工地", grid, "赵强", "13500001111", "负责人"],
        ["site-1", "陆家嘴某工地", "建筑工地", grid, "钱明", "13500002222", "安全员"],
        ["school-1", "某小学", "school", grid, "孙丽", "13500003333", "校长"],
    ]
    mismatched = [*units, ["school-1", "某中学", "school", grid, "周杰", "13500004444", ""]]
    code, _, err = cli("key-units", "import", str(write_csv(tmp_path / "k.csv", mismatched, header=header)))
    assert code != 0 and "line 5: unit_name differ from line 4 for unit school-1" in err
    code, _, err = cli("key-units", "import", str(write_csv(tmp_path / "k.csv", units, header=header)))
    assert code == 0, err
    code, out, _ = cli("target", "preview", "--area", grid, "--group", "key_units", "--json")
    assert json.loads(out)["targeted"] == 3

    code, _, err = cli("key-units", "import", str(write_csv(tmp_path / "k.csv", units[:1] + units[2:], header=header)))
    assert code == 0, err
    code, out, _ = cli("target", "preview", "--area", grid, "--group", "key_units", "--json")
    assert json.loads(out)["targeted"] == 2, "a contact no longer listed leaves the registry"


def test_custom_groups_import_by_external_id(ctx: Context, population: Population, cli: Any, tmp_path: Path) -> None:
    members = [[r.external_id] for r in population.residents[:7]]
    path = write_csv(tmp_path / "g.csv", [*members, ["nobody-here"]], header=["external_id"])
    code, _, err = cli("groups", "import", "flood-team", str(path), "--title", "防汛抢险队")
    assert code != 0 and "line 9: no one with external id 'nobody-here'" in err
    assert main(["target", "preview", "--area", STREET, "--group", "flood-team"]) == 2, "nothing was created"

    write_csv(path, members, header=["external_id"])
    code, _, err = cli("groups", "import", "flood-team", str(path), "--title", "防汛抢险队")
    assert code == 0, err
    code, _, err = cli("groups", "import", "flood-team", str(path))
    assert code == 0, err
    code, out, _ = cli("target", "preview", "--area", STREET, "--group", "flood-team", "--json")
    assert json.loads(out)["targeted"] == 7
    code, out, _ = cli("groups", "list", "--json")
    assert {"name": "flood-team", "title": "防汛抢险队", "size": 7, "derived": False} in json.loads(out)


def test_a_missing_file_is_named(population: Population, cli: Any, tmp_path: Path) -> None:
    code, _, err = cli("screens", "import", str(tmp_path / "nowhere.csv"))
    assert code == 2 and f"cannot read {tmp_path / 'nowhere.csv'}: No such file or directory" in err
