"""Imports that are writing, so that one which dies half-way is known.

An import writes its records first and switches the committees' members indexes (what targeting
reads) at the end, in one transaction. Before writing it notes itself here; when the switch is
done it strikes itself out. An entry left behind is an import that was killed or failed on the way
(or one still running): ``broadcast areas show`` reports it, and importing the file again, which
updates by external id, finishes the job and strikes out the note of the run that died.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from broadcast.core.keys import Keys


@dataclass
class Journal:
    """One import's entry."""

    client: redis.Redis
    keys: Keys
    entry_id: str
    entry: dict[str, Any]

    def progress(self, written: int) -> None:
        """Note how many rows are written so far."""
        self.entry["written"] = written
        self.client.hset(self.keys.imports_running, self.entry_id, json.dumps(self.entry, ensure_ascii=False))


@contextmanager
def import_journal(client: redis.Redis, keys: Keys, kind: str, source: str, rows: int) -> Iterator[Journal]:
    """Note an import for the time it writes; the note stays if it does not finish."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    journal = Journal(
        client, keys, secrets.token_hex(8), {"kind": kind, "source": source, "rows": rows, "started": started}
    )
    journal.progress(0)
    yield journal
    # Done; and an earlier run of the same file that died is finished by this one (by external id).
    done = [journal.entry_id]
    for entry_id, raw in client.hgetall(keys.imports_running).items():
        entry = json.loads(raw)
        if (entry.get("kind"), entry.get("source")) == (kind, source):
            done.append(entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id))
    client.hdel(keys.imports_running, *done)


def unfinished_imports(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Imports that began writing and have not finished, oldest first."""
    entries = [json.loads(raw) for raw in client.hvals(keys.imports_running)]
    return sorted(entries, key=lambda entry: str(entry.get("started", "")))


def describe_unfinished(entry: dict[str, Any]) -> str:
    """What ``areas show`` says of an import that did not finish."""
    return (
        f"the {entry['kind']} import of {entry['source']} started {entry['started']} did not finish "
        f"({entry['written']:,} of {entry['rows']:,} rows written): unless it is still running, import it again; "
        "until then targeting does not reach the people it adds or moves"
    )
