"""The JSON API's request and response bodies that are not domain models themselves.

The acting officer is the signed-in user: a body may name them (as older clients do), but never
anyone else.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from broadcast.core.models import Alert, AlertDraft


class AlertRequest(AlertDraft):
    """A draft to compose; ``composed_by`` is the signed-in user and may be left out."""

    composed_by: str | None = Field(  # type: ignore[assignment]
        default=None, max_length=64, description="optional; when given, must be the signed-in user"
    )


class Approval(BaseModel):
    """The second person's approval of an orange or red alert."""

    model_config = ConfigDict(extra="forbid")
    approved_by: str | None = Field(default=None, max_length=64, description="optional; the signed-in user")


class Cancellation(BaseModel):
    """Stop an alert; with ``notify``, its recipients are first told it is lifted (解除)."""

    model_config = ConfigDict(extra="forbid")
    cancelled_by: str | None = Field(default=None, max_length=64, description="optional; the signed-in user")
    notify: bool = False


class CancelResult(BaseModel):
    """The stopped alert, and the cancel message sent for it (when ``notify``)."""

    alert: Alert
    lift: Alert | None = None


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """What every error answers: a message and the field at fault."""

    message: str
    field: str | None = None
    fields: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class AlertList(BaseModel):
    """The newest alerts the caller may see."""

    alerts: list[Alert]


class AuditEntry(BaseModel):
    """One line of the audit log: who did what, when, from where."""

    id: str
    at: str
    actor: str
    action: str
    alert: str
    origin: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before: str | None = Field(default=None, description="pass as ?before= for older entries")
