"""A rate limit per provider account, shared by every worker through Redis (GCRA in Lua).

The generic cell rate algorithm keeps one number per account: the theoretical arrival time
(TAT) of the next unit. A request of cost n is allowed when ``TAT + n·T - burst·T <= now``, with
T = 1/rate. Tokens are taken from Redis in small chunks and spent locally, so a worker makes one
round trip per chunk, not per message. A throttling answer from the provider halves the rate
for every worker for ``PENALTY_SECONDS``.
"""

from __future__ import annotations

import asyncio

import redis.asyncio

from broadcast.clock import Clock, SystemClock

PENALTY_SECONDS = 10

# KEYS: tat key, penalty key. ARGV: now (s), rate (/s), burst (units), cost, slow (0/1)
# Returns {allowed (0/1), wait seconds (string)}
_GCRA = """
local now, rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[5] == "1" then redis.call('SET', KEYS[2], '1', 'EX', PENALTY_SECONDS) end
if redis.call('EXISTS', KEYS[2]) == 1 then rate = rate / 2 end
local interval = 1 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or "0")
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, tostring(allow_at - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, "0"}
""".replace("PENALTY_SECONDS", str(PENALTY_SECONDS))


# KEYS: tat key. ARGV: now (s), seconds to give back. The arrival time moves back, never before now.
_GIVE_BACK = """
local now, back = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or "0")
if tat - back > now then
  redis.call('SET', KEYS[1], tostring(tat - back), 'PX', math.ceil((tat - back - now) * 1000) + 1000)
elseif tat > now then
  redis.call('DEL', KEYS[1])
end
return 1
"""


class SharedRateLimit:
    """``rate`` units per second for one account, across all processes using the same key."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        key: str,
        penalty_key: str,
        rate: float,
        burst: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.client = client
        self.key = key
        self.penalty_key = penalty_key
        self.rate = rate
        self.burst = burst or max(1.0, rate / 20)  # 50 ms worth: no second sees more than 5 % extra
        # Taken 20 ms worth at a time (at most 50 units): few round trips, little left over at the end.
        self.chunk = max(1.0, min(self.burst, rate / 50, 50.0))
        self.clock = clock or SystemClock()
        self._reserve = 0.0
        self._slow = False
        self._lock = asyncio.Lock()

    def slow_down(self) -> None:
        """The provider throttled us: halve the shared rate for a while."""
        self._slow = True

    async def take(self, cost: float) -> None:
        """Wait until ``cost`` units may be spent."""
        async with self._lock:
            while self._reserve < cost:
                want = max(self.chunk, cost - self._reserve)
                allowed, wait = await self._ask(want)
                if allowed:
                    self._reserve += want
                else:
                    await asyncio.sleep(min(float(wait), 1.0))
            self._reserve -= cost

    async def release(self) -> None:
        """Give back what was taken and not spent (a batch ends): another worker may spend it now."""
        async with self._lock:
            unspent, self._reserve = self._reserve, 0.0
            if unspent > 0:
                await self.client.eval(_GIVE_BACK, 1, self.key, repr(self.clock.time()), repr(unspent / self.rate))

    async def _ask(self, cost: float) -> tuple[bool, str]:
        slow, self._slow = self._slow, False
        result = await self.client.eval(
            _GCRA,
            2,
            self.key,
            self.penalty_key,
            repr(self.clock.time()),
            repr(self.rate),
            repr(self.burst),
            repr(cost),
            "1" if slow else "0",
        )
        allowed, wait = result
        return bool(int(allowed)), wait.decode() if isinstance(wait, bytes) else str(wait)
