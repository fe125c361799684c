"""Shanghai's real divisions load exactly, and every area answers with its parents, children and people."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from audiences.areas import AreaFileError, AreaTree, read_divisions
from audiences.population import Population
from broadcast.core.context import Context
from broadcast.running.cli import main
from tests.conftest import STREET, Stack
from tests.helpers import request_json

COMMUNITY = "310115005001"


def test_the_real_division_counts_load_exactly(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", ctx.redis_url)
    monkeypatch.setenv("BROADCAST_NAMESPACE", ctx.settings.namespace)
    assert main(["areas", "load"]) == 0
    assert "loaded 6760 areas" in capsys.readouterr().out
    assert main(["areas", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats == {
        "city": 1,
        "district": 16,
        "street": 234,
        "community": 6509,
        "grid": 0,
        "building": 0,
        "street_kinds": {"街道": 107, "镇": 106, "开发区等": 19, "乡": 2},
        "community_kinds": {"居委会": 4917, "村委会": 1555, "类似居委会": 37},
        "placeholders": 13,
    }


def test_placeholders_are_kept_out_of_residents_choices(tree: AreaTree, population: Population) -> None:
    placeholders = [a for a in tree.areas.values() if a.placeholder]
    assert len(placeholders) == 13 and all("虚拟" in a.name for a in placeholders)
    assert not {r.community for r in population.residents} & {a.code for a in placeholders}
    from audiences.population import generate

    zone = "310115503000"  # 张江高科技园区: its only committee is a placeholder
    with pytest.raises(ValueError, match="no residential or village committees"):
        generate(tree, zone, 10)


def test_an_area_answers_with_its_chain_children_and_people(
    ctx: Context, population: Population, stack: Stack, officer_token: str
) -> None:
    status, street = request_json(f"{stack.url}/api/v1/areas/{STREET}", token=officer_token)
    assert status == 200
    assert street["area"] == {"code": STREET, "name": "陆家嘴街道", "level": "street", "kind": "街道"}
    assert [p["name"] for p in street["parents"]] == ["上海市", "浦东新区"]
    per_committee = Counter(r.community for r in population.residents)
    assert street["residents"] == 600
    assert street["volunteers"] == len(population.volunteers)
    assert {c["code"]: c["residents"] for c in street["children"]} == {
        c["code"]: per_committee.get(c["code"], 0) for c in street["children"]
    }

    status, committee = request_json(f"{stack.url}/api/v1/areas/{COMMUNITY}", token=officer_token)
    per_grid = Counter(r.grid for r in population.residents if r.community == COMMUNITY)
    assert status == 200 and committee["area"]["kind"] == "居委会"
    assert {g["code"]: g["residents"] for g in committee["children"]} == per_grid
    grid = next(iter(per_grid))
    assert grid is not None

    status, grid_report = request_json(f"{stack.url}/api/v1/areas/{grid}", token=officer_token)
    per_building = Counter(r.building for r in population.residents if r.grid == grid)
    assert grid_report["residents"] == per_grid[grid]
    assert {b["code"]: b["residents"] for b in grid_report["children"]} == per_building
    assert grid_report["volunteers"] >= 1, "each grid has its grid worker"

    status, answer = request_json(f"{stack.url}/api/v1/areas/310115999000", token=officer_token)
    assert status == 404 and answer["error"]["field"] == "code"
    status, stats = request_json(f"{stack.url}/api/v1/areas", token=officer_token)
    assert (
        status == 200
        and stats["community"] == 6509
        and stats["grid"] == len(per_grid) + len({r.grid for r in population.residents if r.community != COMMUNITY})
    )


def test_a_bad_division_file_names_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "code,name,level,parent_code\n310000000000,上海市,city,\n310101000000,,district,310000000000\n"
        "31010100000,黄浦区,district,310000000000\n310101002000,南京东路街道,street,310199000000\n",
        encoding="utf-8",
    )
    with pytest.raises(AreaFileError) as caught:
        read_divisions(path)
    assert caught.value.problems == [
        "line 3: empty name",
        "line 4: code '31010100000' is not 12 digits",
        "line 5: parent 310199000000 of 310101002000 is not in the file",
    ]
