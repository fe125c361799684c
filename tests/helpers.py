"""Small helpers the tests share."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from broadcast import lifecycle
from broadcast.core.context import Context
from broadcast.core.models import Alert, AlertDraft, AlertStatus, ChannelKind, EventType, Level, Target
from broadcast.following.progress import alert_progress
from broadcast.issuing import alerts
from broadcast.web.console.api_tokens import create_token
from broadcast.web.console.users import Role, User, hasher, store_user

TYPHOON_PARAMS = {
    "typhoon_number": "6",
    "typhoon_name": "烟花",
    "typhoon_name_en": "In-fa",
    "eta": "今夜",
    "eta_en": "tonight",
    "wind_force": "10",
}


def draft(areas: list[str], level: Level = Level.orange, **fields: Any) -> AlertDraft:
    values: dict[str, Any] = {
        "event": EventType.typhoon,
        "level": level,
        "target": Target(areas=areas),
        "channels": [ChannelKind.sms],
        "params": TYPHOON_PARAMS,
        "exercise": True,
        "composed_by": "officer-a",
    }
    values.update(fields)
    return AlertDraft(**values)


def issue(ctx: Context, areas: list[str], level: Level = Level.orange, **fields: Any) -> Alert:
    """Compose and, where the level needs it, approve as a second officer."""
    alert = lifecycle.compose(ctx, draft(areas, level, **fields))
    if alert.status is AlertStatus.pending_approval:
        alert = lifecycle.approve(ctx, alert.id, "officer-b")
    return alert


def texts_to(sim: Any, population: Any) -> dict[str, int]:
    """How many SMS each resident of the population got (messages to volunteers left out)."""
    phones = {r.phone for r in population.residents}
    return {phone: n for phone, n in sim.received.items() if phone in phones}


CITY = "310000000000"
PASSWORD = "correct horse battery"


def add_user(ctx: Context, name: str, role: Role, areas: list[str] | None = None, password: str = PASSWORD) -> User:
    """Store a console account directly (the command and its checks have tests of their own)."""
    user = User(
        name=name,
        display_name=name,
        role=role,
        areas=[CITY] if areas is None and role is not Role.admin else areas or [],
        volunteer_id="v1" if role is Role.volunteer else None,
        password_hash=hasher().hash(password),
        created_at=ctx.clock.now(),
    )
    store_user(ctx.redis, ctx.keys, user, replace=True)
    return user


def token_for(ctx: Context, name: str, role: Role = Role.duty_officer, areas: list[str] | None = None) -> str:
    """A bearer token for a new account of ``role``."""
    add_user(ctx, name, role, areas)
    return create_token(ctx.redis, ctx.keys, name, "tests", ctx.clock.now())


def progress(ctx: Context, alert_id: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        client = ctx.async_redis()
        try:
            return await alert_progress(client, ctx.keys, alerts.get_alert(ctx, alert_id))
        finally:
            await client.aclose()

    return asyncio.run(fetch())


def post_form(url: str, params: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, str]:
    """POST a form with the standard library; returns (status, body) whatever the status."""
    data = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def request_json(url: str, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """Call the JSON API, as the holder of ``token`` when one is given."""
    import json

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
