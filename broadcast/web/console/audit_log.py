"""Reading the audit log (a Redis stream that is only ever appended to), newest first.

An admin reads all of it. Officers and approvers read what concerns alerts they may see, and
their own sign-ins; a user's view never shows other areas' alerts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import redis

from broadcast.core.csv_export import csv_document
from broadcast.core.keys import Keys, as_text
from broadcast.issuing.alerts import load_alert
from broadcast.web.console.access import can_see, city_wide
from broadcast.web.console.schemas import AuditEntry
from broadcast.web.console.users import User

CHUNK = 500
ENTRY_ID = re.compile(r"[0-9]{1,19}(-[0-9]{1,19})?")
CSV_FIELDS = ("id", "at", "actor", "action", "alert", "origin", "detail")


def _entry(entry_id: object, fields: Any) -> AuditEntry:
    data = {as_text(k): as_text(v) for k, v in fields.items()}
    return AuditEntry(
        id=as_text(entry_id),
        at=data.get("at", ""),
        actor=data.get("actor", ""),
        action=data.get("action", ""),
        alert=data.get("alert", ""),
        origin=data.get("origin", ""),
        detail=json.loads(data.get("detail") or "{}"),
    )


def is_entry_id(text: str) -> bool:
    """True for an audit entry id ("ms-seq" or "ms", 1 to 19 digits each: what Redis takes and more)."""
    return ENTRY_ID.fullmatch(text) is not None


class AuditReader:
    """The audit log as one user may read it."""

    def __init__(self, client: redis.Redis, keys: Keys, user: User) -> None:
        self.client = client
        self.keys = keys
        self.user = user
        self._visible: dict[str, bool] = {}

    def visible(self, entry: AuditEntry) -> bool:
        if city_wide(self.user):
            return True
        if not entry.alert:
            return entry.actor == self.user.name
        if entry.alert not in self._visible:
            alert = load_alert(self.client, self.keys, entry.alert)
            self._visible[entry.alert] = alert is not None and can_see(self.user, alert)
        return self._visible[entry.alert]

    def entries(self, before: str | None = None, alert_id: str | None = None) -> Iterator[AuditEntry]:
        """Visible entries, newest first, older than ``before`` (a stream id) when given."""
        upper = f"({before}" if before else "+"
        while True:
            chunk = self.client.xrevrange(self.keys.audit, max=upper, min="-", count=CHUNK)
            if not chunk:
                return
            for entry_id, fields in chunk:
                entry = _entry(entry_id, fields)
                if (alert_id is None or entry.alert == alert_id) and self.visible(entry):
                    yield entry
            upper = f"({as_text(chunk[-1][0])}"

    def page(self, limit: int, before: str | None = None, alert_id: str | None = None) -> list[AuditEntry]:
        out: list[AuditEntry] = []
        for entry in self.entries(before, alert_id):
            out.append(entry)
            if len(out) >= limit:
                break
        return out


def as_csv(entries: Iterator[AuditEntry]) -> str:
    """The entries as CSV, every cell written as text a spreadsheet will not run (see csv_export)."""
    rows = (
        [
            entry.id,
            entry.at,
            entry.actor,
            entry.action,
            entry.alert,
            entry.origin,
            json.dumps(entry.detail, ensure_ascii=False),
        ]
        for entry in entries
    )
    return csv_document(CSV_FIELDS, rows)
