"""Who a guarded request acts for: set by the guard, read by the pages, the API and the page layout."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from broadcast.web.console.sessions import Session
from broadcast.web.console.users import User


@dataclass(frozen=True)
class Principal:
    """The signed-in user a request acts for, and how it signed in."""

    user: User
    session: Session | None
    token_label: str | None
    address: str

    @property
    def origin(self) -> str:
        """Where an action came from, as the audit log records it."""
        how = f"token {self.token_label}" if self.token_label else "console"
        return f"{self.address} ({how})"


PRINCIPAL = web.RequestKey("principal", Principal)


def principal(request: web.Request) -> Principal:
    """The signed-in user of a guarded request."""
    return request[PRINCIPAL]
