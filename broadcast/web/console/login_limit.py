"""Sign-in attempts, counted per account and per address; too many lock sign-in for the window.

An account locks after ``login_attempts`` attempts within ``login_window_minutes``, an address
after four times as many (one address may be a whole office behind NAT). Every attempt is counted
in one Redis script *before* its password is checked, so parallel guesses cannot all slip in
while the first ones are still being verified: the sixth of forty simultaneous guesses is already
refused, whatever the password. A success clears the account's count and gives the address its
attempt back. While locked, even the right password is refused, which is what makes guessing slow.
"""

from __future__ import annotations

import redis.asyncio

from broadcast.core.keys import Keys
from broadcast.core.settings import Settings

ADDRESS_FACTOR = 4

# KEYS: the account's and the address's counters. ARGV: their limits, then the window in seconds.
# Returns the seconds to wait (0: this attempt may be verified).
_ATTEMPT = """
local wait = 0
for i = 1, 2 do
  local count = redis.call('INCR', KEYS[i])
  local ttl = redis.call('TTL', KEYS[i])
  if ttl < 0 then
    redis.call('EXPIRE', KEYS[i], ARGV[3])
    ttl = tonumber(ARGV[3])
  end
  if count > tonumber(ARGV[i]) and ttl > wait then wait = ttl end
end
return wait
"""
# KEYS: the account's and the address's counters.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 0
"""


def _keys(keys: Keys, name: str, address: str) -> list[str]:
    return [keys.login_failures(f"user:{name}"), keys.login_failures(f"ip:{address}")]


async def attempt(client: redis.asyncio.Redis, keys: Keys, settings: Settings, name: str, address: str) -> int:
    """Count one sign-in attempt; the seconds until sign-in is allowed again (0: check this one now)."""
    limits = [settings.login_attempts, settings.login_attempts * ADDRESS_FACTOR]
    window = settings.login_window_minutes * 60
    return int(await client.eval(_ATTEMPT, 2, *_keys(keys, name, address), *limits, window))


async def succeeded(client: redis.asyncio.Redis, keys: Keys, name: str, address: str) -> None:
    """The attempt was the right password: the account starts afresh, the address gets it back."""
    await client.eval(_SUCCEEDED, 2, *_keys(keys, name, address))
