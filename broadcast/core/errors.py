"""The error every layer raises for a request it cannot carry out: the web app answers it as JSON,
the command line prints it."""

from __future__ import annotations


class AlertError(Exception):
    """A request about an alert that cannot be carried out; nothing was changed.

    ``status`` is the HTTP status to answer with; ``field`` names the input at fault.
    """

    def __init__(self, message: str, *, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
