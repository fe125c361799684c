"""Browser sessions: a random token in an HttpOnly, SameSite=Strict cookie, and a CSRF token.

Redis holds only the token's SHA-256 digest, so a copy of the database opens no session. Each
session carries its own CSRF token, which every form and every script request sends back.
A session ends when its user signs out, ``session_hours`` after it was last used, or when the
user's password changes or the account is disabled (the session keeps the account's generation).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import redis.asyncio
from aiohttp import web

from broadcast.core.keys import Keys, as_text
from broadcast.core.settings import Settings
from broadcast.web.console.users import User

COOKIE = "bc_session"
LOGIN_CSRF_COOKIE = "bc_login_csrf"  # before a session exists, the sign-in form double-submits this


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    """A signed-in browser."""

    digest: str
    user: str
    csrf: str
    generation: int = 0


def _ttl(settings: Settings) -> int:
    return int(settings.session_hours * 3600)


async def open_session(
    client: redis.asyncio.Redis, keys: Keys, settings: Settings, user: User, origin: str, now: str
) -> tuple[str, Session]:
    """A new session for ``user``: the cookie's token, and the session."""
    token = secrets.token_urlsafe(32)
    session = Session(digest(token), user.name, secrets.token_urlsafe(24), user.generation)
    key = keys.session(session.digest)
    mapping = {"user": user.name, "csrf": session.csrf, "generation": user.generation, "created": now, "origin": origin}
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(key, _ttl(settings))
        await pipe.execute()
    return token, session


async def find_session(client: redis.asyncio.Redis, keys: Keys, settings: Settings, token: str) -> Session | None:
    """The session a cookie names, kept alive for another ``session_hours``; None if it ended."""
    if not token or len(token) > 100:
        return None
    key = keys.session(digest(token))
    async with client.pipeline(transaction=False) as pipe:
        pipe.hmget(key, ["user", "csrf", "generation"])
        pipe.expire(key, _ttl(settings))  # a no-op on an ended session
        (user, csrf, generation), _ = await pipe.execute()
    if user is None or csrf is None:
        return None
    return Session(digest(token), as_text(user), as_text(csrf), int(generation or 0))


async def close_session(client: redis.asyncio.Redis, keys: Keys, session: Session) -> None:
    await client.delete(keys.session(session.digest))


def secure_cookies(settings: Settings) -> bool:
    """Cookies are Secure whenever the service is reached over HTTPS."""
    return settings.public_url.startswith("https://")


def set_cookie(response: web.StreamResponse, settings: Settings, name: str, value: str, max_age: int) -> None:
    """A cookie scripts cannot read and other sites cannot make the browser send."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(settings),
    )


def set_session_cookie(response: web.StreamResponse, settings: Settings, token: str) -> None:
    set_cookie(response, settings, COOKIE, token, _ttl(settings))


def clear_session_cookie(response: web.StreamResponse, settings: Settings) -> None:
    set_cookie(response, settings, COOKIE, "", 0)


def same_token(a: str, b: str) -> bool:
    return bool(a) and bool(b) and secrets.compare_digest(a.encode(), b.encode())
