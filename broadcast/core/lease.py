"""Leases: a short claim by one run of a job on the work it does, so that two runs never do it at once.

A batch, a ladder step or a help case can be run twice at the same time when its first run was
thought dead but was not (a worker stalled past its heartbeat, or cut off from Redis for a while):
RQ then retries a job whose horse still runs. Each run takes the lease of its work before it
sends anything and renews it every few seconds; a second run waits for the lease to lapse (its
holder died) or gives up and is retried later, and a run that finds its lease taken over stops
sending. A killed run's lease lapses by itself within ``LEASE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from types import TracebackType

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

LEASE_SECONDS = 10.0
RENEW_SECONDS = 2.0

# KEYS: lease key. ARGV: token, ttl ms. Renews our lease, or takes it again if it lapsed and nobody
# took it meanwhile; 0 when another run holds it.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseBusy(RuntimeError):
    """Another run holds the lease of this work (it is running now); the job is retried later."""


class LeaseLost(RuntimeError):
    """Another run took this work over while this one was stalled; this one stops sending."""


class Lease:
    """An async context manager: holds ``key`` while the block runs, renewing it in the background."""

    def __init__(self, client: redis.asyncio.Redis, key: str, seconds: float = LEASE_SECONDS) -> None:
        self.client = client
        self.key = key
        self.seconds = seconds
        self.token = secrets.token_hex(8)
        self.lost = False
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, wait: float | None = None) -> None:
        """Take the lease, waiting up to ``wait`` seconds (default: one lease) for a dead holder's to lapse."""
        deadline = time.monotonic() + (self.seconds + 1 if wait is None else wait)
        while not await self.client.set(self.key, self.token, nx=True, px=int(self.seconds * 1000)):
            if time.monotonic() >= deadline:
                raise LeaseBusy(f"{self.key} is held by another run")
            await asyncio.sleep(0.25)

    def check(self) -> None:
        """Raise LeaseLost when another run holds the work now."""
        if self.lost:
            raise LeaseLost(f"{self.key} was taken over by another run")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(min(RENEW_SECONDS, self.seconds / 3))
            try:
                held = await self.client.eval(_RENEW, 1, self.key, self.token, int(self.seconds * 1000))
            except (RedisConnectionError, RedisTimeoutError):
                continue  # the work itself fails on Redis soon enough; the lease lapses meanwhile
            if not int(held):
                self.lost = True
                return

    async def __aenter__(self) -> Lease:
        await self.acquire()
        self._renewer = asyncio.ensure_future(self._renew())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
            await self.client.eval(_RELEASE, 1, self.key, self.token)
