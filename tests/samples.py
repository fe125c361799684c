"""Drafts and template directories for the catalogue's tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from broadcast.composing.catalogue import load_catalogue
from broadcast.composing.compose import TEMPLATES_DIR
from broadcast.core.models import AlertDraft, ChannelKind, EventType, Language, Level, MessageType, Target
from tests.conftest import STREET


def sample_draft(event: EventType, level: Level, *, optional: bool = True, **fields: Any) -> AlertDraft:
    """A draft for ``event`` at ``level`` with the catalogue's example parameters in both languages."""
    msg_type = fields.get("msg_type", MessageType.alert)
    values: dict[str, Any] = {
        "event": event,
        "level": level,
        "target": Target(areas=[STREET]),
        "channels": [ChannelKind.sms],
        "languages": [Language.zh, Language.en],
        "params": load_catalogue(TEMPLATES_DIR).sample_params(event, list(Language), optional=optional),
        "composed_by": "officer-a",
        "references": None if msg_type is MessageType.alert else "1",
    }
    values.update(fields)
    return AlertDraft(**values)


def templates_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled templates, for tests that break one."""
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must be there) with ``new`` in a template file."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
