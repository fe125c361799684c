"""The one way the service writes CSV: files people open in a spreadsheet (the audit log, a
committee's roll-up), so every cell is written as text a spreadsheet will not run.

OWASP's rule for CSV injection: a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is a formula to Excel, LibreOffice and WPS, and ``=HYPERLINK(…)`` in a sign-in
name would become a link in the admin's spreadsheet. Such a cell gets a leading apostrophe,
which spreadsheets show as text and do not display. The full-width forms (＝ ＋ － ＠) are treated
the same, since Chinese input methods type them. Numbers stay numbers. The file starts with a
UTF-8 byte-order mark, without which Excel reads UTF-8 Chinese as mojibake.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

BOM = "\ufeff"
FORMULA_STARTS = frozenset("=+-@\t\r＝＋－＠")


def spreadsheet_cell(value: object) -> object:
    """A cell as written: text that a spreadsheet would run gets a leading apostrophe; None is empty."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def csv_document(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A whole CSV file: byte-order mark, header, then every row with each cell made safe."""
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer)
    writer.writerow([spreadsheet_cell(name) for name in header])
    writer.writerows([spreadsheet_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()
