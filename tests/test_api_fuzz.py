"""The JSON API against its own /openapi.json: schemathesis generates requests from the document
(valid and invalid ones, every check it has) and sends them to the running service, as a duty
officer and as an admin. Any answer the document does not allow, or any 500, fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiences.population import Population
from broadcast.core.context import Context
from broadcast.core.models import Level
from broadcast.web.console.users import Role
from tests.conftest import STREET, Stack
from tests.helpers import issue, token_for

MAX_EXAMPLES = 25  # per operation and phase: bounded, so both runs take about a minute
SEED = 20250715


@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", [Role.duty_officer, Role.admin])
def test_every_answer_matches_the_openapi_document(
    ctx: Context, population: Population, stack: Stack, tmp_path: Path, role: Role
) -> None:
    token = token_for(ctx, f"fuzz.{role.value}", role, ["310115000000"] if role is not Role.admin else None)
    # An alert waiting for approval and a street with people, so the requests reach real data.
    waiting = issue(ctx, [STREET], Level.orange)
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.id" = "{waiting.id}"\n"path.code" = "{STREET}"\n', encoding="utf-8")
    schemathesis = Path(sys.executable).parent / "schemathesis"
    command = [
        str(schemathesis),
        "--config-file",
        str(config),
        "run",
        f"{stack.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--no-shrink",
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Bearer {token}",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=840, env=env, cwd=tmp_path)
    report = tmp_path / "schemathesis.txt"
    report.write_text(run.stdout + run.stderr, encoding="utf-8")
    failures = run.stdout[run.stdout.find("FAILURES") :] if "FAILURES" in run.stdout else run.stdout
    assert run.returncode == 0, f"(whole output: {report})\n" + _shortened(failures)[:20000] + run.stderr[-3000:]


def _shortened(text: str) -> str:
    """Schemathesis output with very long lines (a generated body of thousands of areas) cut short."""
    return "\n".join(line if len(line) < 400 else line[:400] + " …" for line in text.splitlines())
