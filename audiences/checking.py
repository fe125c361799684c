"""Checking an imported file before anything is written: each row's values, its references to
areas, and rows that repeat one another. Problems are collected by line, for the whole file."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from audiences.areas import AreaLevel, AreaTree
from audiences.csvfile import ImportRejected, Row, Table

M = TypeVar("M", bound=BaseModel)


@dataclass
class ImportReport:
    """What an import did (or, with dry_run, would do)."""

    kind: str
    rows: int
    created: int = 0
    updated: int = 0
    removed: int = 0
    dry_run: bool = False
    encoding: str = "utf-8"  # how the file was read

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FileCheck:
    """The problems found in one file so far; ``finish`` refuses the file if there are any."""

    def __init__(self, source: str, table: Table, tree: AreaTree | None = None) -> None:
        self.source = source
        self.table = table
        self.tree = tree
        self.problems = list(table.problems)

    def add(self, row: Row, message: str) -> None:
        self.problems.append(f"line {row.line}: {message}")

    def model(self, model: type[M], row: Row, values: dict[str, Any]) -> M | None:
        """The row as a model, or None with each of its problems recorded against its line."""
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            for error in exc.errors():
                where = str(error["loc"][0]) if error["loc"] else ""
                message = str(error["msg"]).removeprefix("Value error, ")
                self.add(row, f"{where + ': ' if where else ''}{message}")
            return None

    def area(self, row: Row, code: str, level: AreaLevel, hint: str = "") -> bool:
        """Whether ``code`` is a known area of ``level`` (a problem if not)."""
        assert self.tree is not None
        area = self.tree.areas.get(code)
        if area is None or area.level is not level:
            self.add(row, f"{level.value} {code} is not in the registry{hint}")
            return False
        return True

    def community(self, row: Row, code: str) -> bool:
        """Whether ``code`` is a committee people can live in (a problem if not)."""
        assert self.tree is not None
        area = self.tree.areas.get(code)
        if area is None or area.level is not AreaLevel.community:
            self.add(row, f"committee {code} is not a known residential or village committee")
            return False
        if area.placeholder:
            self.add(row, f"committee {code} ({area.name}) is a placeholder nobody lives in")
            return False
        return True

    def unique(self, column: str, what: str) -> None:
        """A problem for every row repeating an earlier row's value in ``column``."""
        first: dict[str, int] = {}
        for row in self.table.rows:
            key = row.get(column)
            if key in first:
                self.add(row, f"{what} {key} already on line {first[key]}")
            else:
                first[key] = row.line

    def finish(self) -> None:
        """Refuse the file, naming every problem in line order, if any was found."""
        if self.problems:
            self.problems.sort(key=lambda p: int(m.group(1)) if (m := re.match(r"line (\d+)", p)) else 0)
            raise ImportRejected(self.source, self.problems)

    def report(self, kind: str, stored: Sequence[object], dry_run: bool) -> ImportReport:
        """A report counting as updated the items already stored (non-None in ``stored``), the rest as new."""
        report = ImportReport(kind, len(self.table.rows), dry_run=dry_run, encoding=self.table.encoding)
        report.updated = sum(1 for item in stored if item is not None)
        report.created = len(stored) - report.updated
        return report
