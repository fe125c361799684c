"""Failed sign-ins, counted per account and per address; too many lock sign-in for the window.

An account locks after ``login_attempts`` failures within ``login_window_minutes``, an address
after four times as many (one address may be a whole office behind NAT). While locked, even the
right password is refused, which is what makes guessing slow. A success clears the account's count.
"""

from __future__ import annotations

import redis.asyncio

from broadcast.keys import Keys
from broadcast.settings import Settings

ADDRESS_FACTOR = 4


def _subjects(name: str, address: str, settings: Settings) -> list[tuple[str, int]]:
    return [(f"user:{name}", settings.login_attempts), (f"ip:{address}", settings.login_attempts * ADDRESS_FACTOR)]


async def locked_for(client: redis.asyncio.Redis, keys: Keys, settings: Settings, name: str, address: str) -> int:
    """Seconds until sign-in is allowed again for this account or address (0: allowed now)."""
    wait = 0
    for who, limit in _subjects(name, address, settings):
        key = keys.login_failures(who)
        count = await client.get(key)
        if count is not None and int(count) >= limit:
            wait = max(wait, max(1, int(await client.ttl(key))))
    return wait


async def record_failure(client: redis.asyncio.Redis, keys: Keys, settings: Settings, name: str, address: str) -> None:
    """Count one failed sign-in against the account and the address."""
    window = settings.login_window_minutes * 60
    for who, _ in _subjects(name, address, settings):
        key = keys.login_failures(who)
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.ttl(key)
            _, ttl = await pipe.execute()
        if ttl < 0:  # the window starts with the first failure (EXPIRE NX needs Redis 7)
            await client.expire(key, window)


async def clear(client: redis.asyncio.Redis, keys: Keys, name: str) -> None:
    await client.delete(keys.login_failures(f"user:{name}"))
