"""Files that must not slip into the registry wrong: text in an encoding we would misread, Excel's
"Unicode text", and an import that dies half-way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from audiences.census import area_report
from audiences.population import Population
from audiences.registry import Registry
from broadcast.core.context import Context
from tests.conftest import STREET
from tests.test_importers import thousand_rows, write_csv

NAMES_BIG5 = ["陳大文", "黃小明", "張偉", "劉德華", "趙麗穎", "鄭秀文", "謝霆鋒", "蘇永康", "韓寒", "鍾漢良"]
NAMES_SJIS = [
    "山田太郎",
    "鈴木花子",
    "佐藤健",
    "高橋一生",
    "渡辺謙",
    "伊藤淳史",
    "中村倫也",
    "小林薫",
    "加藤浩次",
    "吉田羊",
]
HEADER = ["external_id", "name", "building", "room"]


def _rows(population: Population, names: list[str]) -> list[list[str]]:
    building = next(r.building for r in population.residents if r.building)
    return [[f"enc-{i}", name, building or "", f"{i + 1}01"] for i, name in enumerate(names)]


@pytest.mark.parametrize(
    ("encoding", "names", "declared"), [("big5", NAMES_BIG5, "big5"), ("shift_jis", NAMES_SJIS, "shift_jis")]
)
def test_text_that_only_looks_like_gb18030_is_refused_until_its_encoding_is_named(
    ctx: Context, population: Population, cli: Any, tmp_path: Path, encoding: str, names: list[str], declared: str
) -> None:
    path = write_csv(tmp_path / "r.csv", _rows(population, names), encoding, HEADER)
    code, _, err = cli("residents", "import", str(path))
    assert code == 2 and "--encoding" in err and "GB18030" in err, err
    assert Registry(ctx.redis, ctx.keys).by_external_id(["enc-0"]) == {}, "nothing garbled was stored"
    code, out, err = cli("residents", "import", str(path), "--encoding", declared, "--json")
    assert code == 0, err
    assert json.loads(out)["encoding"] == declared
    stored = Registry(ctx.redis, ctx.keys).by_external_id([f"enc-{i}" for i in range(len(names))])
    assert [stored[f"enc-{i}"].name for i in range(len(names))] == names
    code, _, err = cli("residents", "import", str(path), "--encoding", "no-such-encoding")
    assert code == 2 and "no-such-encoding" in err


def test_plain_gb18030_and_utf8_say_how_they_were_read(
    ctx: Context, population: Population, cli: Any, tmp_path: Path
) -> None:
    names = ["王小明", "李娜", "张喆", "刘堃", "陈静", "杨洋", "赵敏", "黄磊", "周迅", "吴京"]
    for encoding, said in (("gb18030", "gb18030"), ("utf-8", "utf-8")):
        code, out, err = cli(
            "residents",
            "import",
            str(write_csv(tmp_path / "r.csv", _rows(population, names), encoding, HEADER)),
            "--json",
        )
        assert code == 0, err
        assert json.loads(out)["encoding"] == said


def test_excels_unicode_text_is_read_as_tab_separated_utf16(
    ctx: Context, population: Population, cli: Any, tmp_path: Path
) -> None:
    building = next(r.building for r in population.residents if r.building)
    lines = [
        "居民编号\t姓名\t楼栋\t房号\t手机",
        f"ut-1\t欧阳娜娜\t{building}\t3-502\t13700001111",
        f"ut-2\t李, 四\t{building}\t3-503\t",
    ]
    path = tmp_path / "Unicode text.txt"
    path.write_bytes("\r\n".join(lines).encode("utf-16"))  # what Excel's 另存为 "Unicode 文本" writes
    code, out, err = cli("residents", "import", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["encoding"] == "utf-16"
    found = Registry(ctx.redis, ctx.keys).by_external_id(["ut-1", "ut-2"])
    assert (found["ut-1"].name, found["ut-1"].room, found["ut-1"].phone) == ("欧阳娜娜", "3-502", "+8613700001111")
    assert found["ut-2"].name == "李, 四"


def test_an_import_that_dies_half_way_changes_nothing_targeting_sees_and_says_so(
    ctx: Context, population: Population, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree_counts = area_report(ctx.redis, ctx.keys, _tree(ctx), STREET)
    path = write_csv(tmp_path / "r.csv", thousand_rows(population))
    monkeypatch.setattr("audiences.importers.WRITE_CHUNK", 100)
    written = Registry.write_entries
    calls = {"n": 0}

    def dies_on_the_third_chunk(self: Registry, entries: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the process was killed")  # as SIGKILL would leave it: two chunks written
        return written(self, entries)

    monkeypatch.setattr(Registry, "write_entries", dies_on_the_third_chunk)
    with pytest.raises(RuntimeError):
        cli("residents", "import", str(path))
    assert area_report(ctx.redis, ctx.keys, _tree(ctx), STREET)["residents"] == tree_counts["residents"], (
        "targeting sees the registry as it was before the import"
    )
    code, out, _ = cli("areas", "show", STREET)
    assert code == 0 and "did not finish" in out and "r.csv" in out and "import it again" in out
    code, out, _ = cli("areas", "show", STREET, "--json")
    interrupted = json.loads(out)["interrupted_imports"]
    assert [(i["source"], i["rows"], i["written"]) for i in interrupted] == [("r.csv", 1000, 200)]

    monkeypatch.setattr(Registry, "write_entries", written)
    code, _, err = cli("residents", "import", str(path))
    assert code == 0, err
    assert area_report(ctx.redis, ctx.keys, _tree(ctx), STREET)["residents"] == tree_counts["residents"] + 1000
    code, out, _ = cli("areas", "show", STREET)
    assert "did not finish" not in out


def _tree(ctx: Context) -> Any:
    from audiences.areas import AreaTree

    return AreaTree.load(ctx.redis, ctx.keys)


def test_a_repeated_external_id_is_named_with_both_lines(
    ctx: Context, population: Population, cli: Any, tmp_path: Path
) -> None:
    rows = thousand_rows(population)
    rows[700][0] = rows[3][0]
    rows[900][0] = rows[3][0]
    code, _, err = cli("residents", "import", str(write_csv(tmp_path / "r.csv", rows)))
    assert code == 2
    assert f"line 702: external id {rows[3][0]} already on line 5" in err
    assert f"line 902: external id {rows[3][0]} already on line 5" in err
    assert Registry(ctx.redis, ctx.keys).by_external_id([rows[0][0]]) == {}
