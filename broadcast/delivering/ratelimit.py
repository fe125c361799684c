"""A rate limit per provider account, shared by every worker through Redis (GCRA in Lua), that
learns the provider's pace from its refusals.

The generic cell rate algorithm keeps one number per account: the theoretical arrival time
(TAT) of the next unit. A request of cost n is allowed when ``TAT + n·T - burst·T <= now``, with
T = 1/rate. Tokens are taken from Redis in small chunks and spent locally, so a worker makes one
round trip per chunk, not per message.

The rate is the configured one (``BROADCAST_SMS_RATE_PER_SECOND``), or none. A provider that
refuses (429) makes every worker learn a rate below it, in Redis, additive-increase /
multiplicative-decrease: the first refusal starts it at half the configured rate (or at
``START_RATE``) and doubles it every ``STEP_SECONDS`` until the next refusal, which halves it (the
last rate that went through); from then on each refusal cuts it to ``CUT`` of itself (at most once
per ``CUT_EVERY_SECONDS``: the refusals of one overshoot are one signal) and every quiet step
raises it by ``RISE``; ``PROBE_AFTER_SECONDS`` without a refusal starts the doubling again (a storm of
refusals that passed must not leave the account crawling). While a learnt rate is in force, bursts
are 20 ms of it, not 50 ms. The account is then paced a little under the provider's capacity, and
refused about once per overshoot rather than for everything sent beyond it. A minute without
refusals forgets the learnt rate.
"""

from __future__ import annotations

import asyncio

import redis.asyncio

from broadcast.core.clock import Clock, SystemClock

START_RATE = 10.0  # units a second after a first refusal when no rate is configured
STEP_SECONDS = 0.25  # how often the learnt rate rises
CUT = 0.9  # a refusal cuts the learnt rate to this share
CUT_EVERY_SECONDS = 0.5  # at most one cut this often
RISE = 1.015  # a quiet step raises it by this factor (about 6 % a second)
FORGET_SECONDS = 60  # a learnt rate lasts this long after the last refusal
# Refused about every two seconds while paced near the provider's capacity; this long without a
# refusal means it can take more (a storm of refusals passed): probe by doubling again.
PROBE_AFTER_SECONDS = 5.0
MIN_RATE = 1.0

# KEYS: tat key, learnt key (hash: rate, mode, changed, cut).
# ARGV: now (s), configured rate (0: none), burst (units; 0: 50 ms worth), cost, refused (0/1)
# Returns {allowed (0/1), wait seconds (string), rate in force (string; "0": no limit)}
_GCRA = """
local now, configured, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local learnt = redis.call('HMGET', KEYS[2], 'rate', 'mode', 'changed', 'cut')
local rate, mode, changed, cut = tonumber(learnt[1]), learnt[2], tonumber(learnt[3]), tonumber(learnt[4])
if ARGV[5] == "1" then
  if not rate then
    rate, mode, changed, cut = (configured > 0 and configured / 2 or START_RATE), 'start', now, now
  elseif mode == 'start' then
    -- Doubling overshot: the last rate that went through was half this one. (Refusals of what was
    -- in flight when the learning began, before any doubling, say nothing new.)
    if now - cut >= STEP then rate, mode, changed, cut = math.max(MIN_RATE, rate / 2), 'steady', now, now end
  elseif now - cut >= CUT_EVERY then
    rate, mode, changed, cut = math.max(MIN_RATE, rate * CUT), 'steady', now, now
  end
  redis.call('HSET', KEYS[2], 'rate', tostring(rate), 'mode', mode, 'changed', tostring(changed), 'cut', tostring(cut))
  redis.call('EXPIRE', KEYS[2], FORGET)
elseif rate and now - changed >= STEP then
  local steps = math.min(8, math.floor((now - changed) / STEP))
  local factor = (mode == 'start') and 2 or RISE
  rate, changed = rate * factor ^ steps, changed + steps * STEP
  if configured > 0 then rate = math.min(rate, configured * 4) end
  if mode == 'steady' and now - cut >= PROBE_AFTER then
    -- Long quiet: the refusals were a passing storm, or the provider can take more now. Probe by
    -- doubling again from here (the next refusal halves it back to the last rate that went through).
    mode, cut, changed = 'start', now, now
  end
  redis.call('HSET', KEYS[2], 'rate', tostring(rate), 'mode', mode, 'changed', tostring(changed), 'cut', tostring(cut))
end
if configured > 0 and (not rate or configured < rate) then rate = configured end
if not rate then return {1, "0", "0"} end
if burst <= 0 then burst = math.max(1, rate / (learnt[1] and 50 or 20)) end
local interval = 1 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or "0")
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, tostring(allow_at - now), tostring(rate)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, "0", tostring(rate)}
"""
for _name, _value in {
    "START_RATE": START_RATE,
    "CUT_EVERY": CUT_EVERY_SECONDS,
    "MIN_RATE": MIN_RATE,
    "CUT": CUT,
    "FORGET": FORGET_SECONDS,
    "STEP": STEP_SECONDS,
    "RISE": RISE,
    "PROBE_AFTER": PROBE_AFTER_SECONDS,
}.items():
    _GCRA = _GCRA.replace(_name, repr(_value))


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

UNLIMITED_RECHECK_SECONDS = 0.1  # with no rate in force, ask Redis again this often (another worker may learn one)


class SharedRateLimit:
    """``rate`` units per second for one account (0: none configured), across all processes using the
    same keys, and below whatever rate the provider's refusals taught any of them."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        key: str,
        learnt_key: str,
        rate: float = 0.0,
        burst: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must not be negative")
        self.client = client
        self.key = key
        self.learnt_key = learnt_key
        self.rate = rate
        self.burst = burst  # 0: 50 ms worth of the rate in force, so that no second sees more than 5 % extra
        self.in_force = rate  # the rate of the last answer (0: no limit)
        self.clock = clock or SystemClock()
        self._reserve = 0.0
        self._slow = False
        self._free_until = 0.0
        self._lock = asyncio.Lock()

    @property
    def chunk(self) -> float:
        """Units taken from Redis at a time: 20 ms worth (at most 50): few round trips, little left over."""
        burst = self.burst or max(1.0, self.in_force / 20)
        return max(1.0, min(burst, self.in_force / 50, 50.0))

    def slow_down(self) -> None:
        """The provider refused (throttled) us: the next request to Redis teaches every worker."""
        self._slow = True
        self._free_until = 0.0

    async def take(self, cost: float) -> None:
        """Wait until ``cost`` units may be spent."""
        async with self._lock:
            while self._reserve < cost:
                if not self._slow and self.clock.time() < self._free_until:
                    return  # no rate in force a moment ago: nothing to wait for
                want = max(self.chunk, cost - self._reserve)
                allowed, wait = await self._ask(want)
                if not self.in_force:
                    self._free_until = self.clock.time() + UNLIMITED_RECHECK_SECONDS
                    return
                if allowed:
                    self._reserve += want
                else:
                    await asyncio.sleep(min(float(wait), 1.0))
            self._reserve -= cost

    async def release(self) -> None:
        """Give back what was taken and not spent (a batch ends): another worker may spend it now."""
        async with self._lock:
            unspent, self._reserve = self._reserve, 0.0
            if unspent > 0 and self.in_force > 0:
                back = unspent / self.in_force
                await self.client.eval(_GIVE_BACK, 1, self.key, repr(self.clock.time()), repr(back))

    async def _ask(self, cost: float) -> tuple[bool, str]:
        slow, self._slow = self._slow, False
        result = await self.client.eval(
            _GCRA,
            2,
            self.key,
            self.learnt_key,
            repr(self.clock.time()),
            repr(self.rate),
            repr(self.burst),
            repr(cost),
            "1" if slow else "0",
        )
        allowed, wait, in_force = (v.decode() if isinstance(v, bytes) else str(v) for v in result)
        self.in_force = float(in_force)
        return bool(int(allowed)), wait
