"""Reading the CSV files people bring: whatever encoding a spreadsheet saved, and every line accounted for.

Spreadsheets in China save UTF-8 (with or without a byte-order mark) or GB18030; Excel's
"Unicode text" saves UTF-16 with tabs between the cells. Text in another encoding (Big5 from Taiwan
or Hong Kong, Shift-JIS) often decodes as GB18030 too, into nonsense; such a file is refused
unless its encoding is named. Headers may be English or Chinese. Every row keeps the line it
started on, so a problem is reported where the person can find it. Files are read as streams, so
a file of hundreds of thousands of rows is never held in memory whole.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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


PROBLEMS_KEPT = 1000  # problem lines reported; a file that bad is the wrong file
_CHUNK = 1 << 20
# Text read as GB18030 is refused as implausible when it holds private-use characters (GB18030's
# user-defined areas: what Big5 and Shift-JIS bytes land on) or, once there are enough characters
# to judge, when fewer than this share of them are common Chinese (GB2312). Real registers of
# names and addresses are nearly all common characters; Big5 read as GB18030 is about half,
# Shift-JIS almost none.
_COMMON_SHARE = 0.8
_ENOUGH_TO_JUDGE = 20
_BEYOND_ASCII = re.compile(r"[^\x00-\x7f]")


@dataclass(frozen=True)
class CsvSource:
    """Where a file's bytes are: a path (read as a stream, as often as needed) or bytes in memory."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def of(cls, raw: bytes | Path, name: str) -> CsvSource:
        return cls(name, path=raw) if isinstance(raw, Path) else cls(name, data=raw)

    def open(self) -> BinaryIO:
        if self.path is not None:
            return self.path.open("rb")
        return io.BytesIO(self.data or b"")


def _plain(codec: str) -> str:
    return codecs.lookup(codec).name


def _scan(source: CsvSource, codec: str, judge: bool = False) -> tuple[int, int, int] | int:
    """Decode the whole file with ``codec``: (characters beyond ASCII, common Chinese among them,
    private-use ones) when asked to ``judge`` the text, or the byte offset where it stops being ``codec``."""
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    seen: Counter[str] = Counter()
    offset = 0
    with source.open() as stream:
        while True:
            chunk = stream.read(_CHUNK)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                return offset + max(exc.start, 0)
            if judge:
                seen.update(_BEYOND_ASCII.findall(text))
            if not chunk:
                break
            offset += len(chunk)
    beyond = sum(seen.values())
    usual = sum(n for ch, n in seen.items() if _is_common(ch))
    private = sum(n for ch, n in seen.items() if "\ue000" <= ch <= "\uf8ff")
    return beyond, usual, private


def _is_common(ch: str) -> bool:
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def detect_encoding(source: CsvSource, declared: str | None = None) -> str:
    """The file's encoding: the one declared, else UTF-16 (with its BOM), UTF-8, or GB18030 when the
    text reads as Chinese; anything else is refused, asking for ``--encoding``."""
    if declared:
        try:
            codec = _plain(declared)
        except LookupError:
            raise ImportRejected(source.name, [f"unknown encoding {declared!r}"]) from None
        scanned = _scan(source, codec)
        if isinstance(scanned, int):
            raise ImportRejected(source.name, [f"the file is not {declared} (byte {scanned})"])
        return declared
    with source.open() as stream:
        head = stream.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if not isinstance(_scan(source, "utf-8"), int):
        return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    scanned = _scan(source, "gb18030", judge=True)
    if isinstance(scanned, int):
        raise ImportRejected(
            source.name, [f"the file is neither UTF-8 nor GB18030 (byte {scanned}); name its encoding with --encoding"]
        )
    beyond, usual, private = scanned
    if private or (beyond >= _ENOUGH_TO_JUDGE and usual < _COMMON_SHARE * beyond):
        others = [name for name in ("big5", "shift_jis") if not isinstance(_scan(source, name), int)]
        maybe = f"; it reads cleanly as {' or '.join(others)}" if others else ""
        raise ImportRejected(
            source.name,
            [
                "the file is not UTF-8, and read as GB18030 it is not Chinese text "
                f"(only {usual} of {beyond} characters are common Chinese{', some are private-use' if private else ''})"
                f"{maybe}: save it as UTF-8, or name its encoding with --encoding (for example --encoding big5)"
            ],
        )
    return "gb18030"


class CsvFile:
    """One file's header and rows, read as a stream: any number of passes, never all of it in memory.

    Comma-separated, or tab-separated when the header has tabs (Excel's "Unicode text")."""

    def __init__(self, source: CsvSource, columns: Columns, encoding: str | None = None) -> None:
        self.source = source
        self.encoding = detect_encoding(source, encoding)
        with self._lines() as lines:
            first = next(iter(lines), None)
        if first is None or not first.strip("\r\n\ufeff"):
            raise ImportRejected(source.name, ["the file is empty"])
        self.delimiter = "\t" if "\t" in first else ","
        header = next(csv.reader([first], delimiter=self.delimiter))
        self.names = [columns.canonical(h.lstrip("\ufeff")) for h in header]
        known = set(columns.required) | set(columns.optional)
        problems = [
            f"line 1: unknown column {h.strip()!r}" for h, n in zip(header, self.names, strict=True) if n not in known
        ]
        problems += [
            f"line 1: column {n!r} appears twice" for n in sorted({n for n in self.names if self.names.count(n) > 1})
        ]
        problems += [f"line 1: missing column {c!r}" for c in columns.required if c not in self.names]
        if problems:
            expected = ", ".join([*columns.required, *columns.optional])
            raise ImportRejected(source.name, [*problems, f"line 1: the columns are: {expected}"])

    @property
    def encoding_name(self) -> str:
        """The encoding as reports say it (utf-8 with or without its BOM is utf-8)."""
        return "utf-8" if self.encoding == "utf-8-sig" else self.encoding

    def _lines(self) -> io.TextIOWrapper:
        return io.TextIOWrapper(self.source.open(), encoding=self.encoding, newline="")

    def rows(self) -> Iterator[Row | str]:
        """Every non-blank data row in order, or, for a line that cannot be split into the columns,
        the problem with it."""
        width = len(self.names)
        with self._lines() as lines:
            reader = csv.reader(lines, delimiter=self.delimiter)
            next(reader, None)
            line = reader.line_num + 1
            try:
                for cells in reader:
                    if any(cell.strip() for cell in cells):
                        if len(cells) != width:
                            yield f"line {line}: expected {width} values, found {len(cells)}"
                        else:
                            yield Row(line, {n: c.strip() for n, c in zip(self.names, cells, strict=True)})
                    line = reader.line_num + 1
            except csv.Error as exc:
                yield f"line {line}: {exc}"


@dataclass
class Table:
    """A file's rows, the lines that could not even be split into the expected columns, and how it was read."""

    rows: list[Row]
    problems: list[str]
    encoding: str = "utf-8"


def read_rows(raw: bytes | Path, columns: Columns, source: str = "file", encoding: str | None = None) -> Table:
    """Every non-blank data row of a (small) file; ImportRejected if the file or its header cannot be read."""
    found = CsvFile(CsvSource.of(raw, source), columns, encoding)
    table = Table([], [], found.encoding_name)
    for item in found.rows():
        if isinstance(item, Row):
            table.rows.append(item)
        else:
            table.problems.append(item)
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
