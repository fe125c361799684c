"""Bearer tokens for machine clients: ``Authorization: Bearer bct_…`` acts as the user it was made for.

A token is shown once, when it is made; Redis keeps only its SHA-256 digest, under a label the
user chose, so it can be listed and revoked. Disabling the user stops all their tokens at once.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

import redis
import redis.asyncio

from broadcast.core.keys import Keys, as_text
from broadcast.web.console.sessions import digest

PREFIX = "bct_"
LABEL = r"^[A-Za-z0-9_.:-]{1,40}$"


def create_token(client: redis.Redis, keys: Keys, user: str, label: str, now: datetime) -> str:
    """A new token for ``user`` under ``label`` (replacing any token of that label)."""
    token = PREFIX + secrets.token_urlsafe(32)
    token_digest = digest(token)
    old = client.hget(keys.user_api_tokens(user), label)
    with client.pipeline(transaction=True) as pipe:
        if old:
            pipe.delete(keys.api_token(as_text(old)))
        pipe.set(keys.api_token(token_digest), json.dumps({"user": user, "label": label, "created": now.isoformat()}))
        pipe.hset(keys.user_api_tokens(user), label, token_digest)
        pipe.execute()
    return token


def revoke_token(client: redis.Redis, keys: Keys, user: str, label: str) -> bool:
    """Forget the user's token of ``label``; False if there was none."""
    old = client.hget(keys.user_api_tokens(user), label)
    if not old:
        return False
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.api_token(as_text(old)))
        pipe.hdel(keys.user_api_tokens(user), label)
        pipe.execute()
    return True


def token_labels(client: redis.Redis, keys: Keys, user: str) -> list[str]:
    return sorted(as_text(label) for label in client.hkeys(keys.user_api_tokens(user)))


async def token_owner(client: redis.asyncio.Redis, keys: Keys, token: str) -> tuple[str, str] | None:
    """(user, label) of a presented token, or None if it is not one of ours."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    raw = await client.get(keys.api_token(digest(token)))
    if raw is None:
        return None
    entry = json.loads(raw)
    return str(entry["user"]), str(entry["label"])
