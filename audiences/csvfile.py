"""Reading the CSV files people bring: whatever encoding a spreadsheet saved, and every line accounted for.

Spreadsheets in China save UTF-8 (with or without a byte-order mark) or GB18030; Excel's
"Unicode text" saves UTF-16. Headers may be English or Chinese. Every row keeps the line it
started on, so a problem is reported where the person can find it.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from audiences.volunteers import VolunteerRole

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


class ImportRejected(ValueError):
    """A file with bad rows: ``problems`` names each line and why; nothing was imported."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s), nothing imported")
        self.source = source
        self.problems = problems


@dataclass(frozen=True)
class Row:
    """One data row: the line it starts on and its values by column name (stripped; blank is '')."""

    line: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        return self.values.get(column, "")


@dataclass(frozen=True)
class Columns:
    """The columns a file may have: required, optional, and other names (Chinese headers) for them."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    aliases: Mapping[str, str] | None = None

    def canonical(self, header: str) -> str:
        name = header.strip().lower().replace(" ", "_")
        return (self.aliases or {}).get(name, name)


def decode(raw: bytes) -> str:
    """The file's text: UTF-8 with or without BOM, UTF-16 with BOM, else GB18030."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the file is neither UTF-8 nor GB18030 (byte {exc.start})") from None


@dataclass
class Table:
    """A file's rows, and the lines that could not even be split into the expected columns."""

    rows: list[Row]
    problems: list[str]


def read_rows(raw: bytes, columns: Columns, source: str = "file") -> Table:
    """Every non-blank data row; ImportRejected if the file or its header cannot be read at all."""
    try:
        text = decode(raw)
    except ValueError as exc:
        raise ImportRejected(source, [str(exc)]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRejected(source, ["the file is empty"]) from None
    names = [columns.canonical(h) for h in header]
    known = set(columns.required) | set(columns.optional)
    problems = [f"line 1: unknown column {h.strip()!r}" for h, n in zip(header, names, strict=True) if n not in known]
    problems += [f"line 1: column {n!r} appears twice" for n in sorted({n for n in names if names.count(n) > 1})]
    problems += [f"line 1: missing column {c!r}" for c in columns.required if c not in names]
    if problems:
        expected = ", ".join([*columns.required, *columns.optional])
        raise ImportRejected(source, [*problems, f"line 1: the columns are: {expected}"])
    table = Table([], [])
    line = reader.line_num + 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                if len(cells) != len(names):
                    table.problems.append(f"line {line}: expected {len(names)} values, found {len(cells)}")
                else:
                    table.rows.append(Row(line, {n: c.strip() for n, c in zip(names, cells, strict=True)}))
            line = reader.line_num + 1
    except csv.Error as exc:
        table.problems.append(f"line {line}: {exc}")
    return table


# Cell values
def word(value: str) -> str:
    """A word people put in a cell (中文, 短信, 网格员 …) as our value; anything else as it is."""
    return _WORDS.get(value.strip().lower(), value.strip())


def flag(value: str) -> str:
    """Yes/no cells (是/否, 1/0, y/n …) as "true"/"false"; anything else as it is, for the model to refuse."""
    text = value.strip().lower()
    return "true" if text in _YES else "false" if text in _NO else value


def listed(value: str, each: Callable[[str], str] = word) -> list[str]:
    """A cell holding several values (a;b, a，b, a、b …)."""
    return [each(part) for part in _LIST_SPLIT.split(value) if part.strip()]
