"""The running service's handles: settings, Redis connections, key names, clock and queues."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from functools import cached_property

from pydantic import SecretStr
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from rq import Queue

from broadcast.core.clock import Clock, SystemClock
from broadcast.core.embedded_redis import EmbeddedRedis, ensure_embedded_redis
from broadcast.core.keys import Keys, as_bytes
from broadcast.core.models import Level
from broadcast.core.settings import Settings

# Workers take queues in this order: planning first, then red before orange …, and within a
# level the batches of vulnerable residents before everyone else's.
CONTROL_QUEUE = "control"
FOLLOWUP_QUEUE = "followup"


def level_queue(level: Level, vulnerable: bool) -> str:
    """The queue for a level's batches."""
    return f"{level.value}-first" if vulnerable else level.value


QUEUE_ORDER = (
    [CONTROL_QUEUE]
    + [
        level_queue(level, vulnerable)
        for level in (Level.red, Level.orange, Level.yellow, Level.blue)
        for vulnerable in (True, False)
    ]
    + [FOLLOWUP_QUEUE]
)


@dataclass
class Context:
    """Everything a command, job or request handler needs to reach the system of record."""

    settings: Settings
    redis_url: str
    clock: Clock = field(default_factory=SystemClock)
    embedded: EmbeddedRedis | None = None

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.settings.namespace)

    @cached_property
    def redis(self) -> Redis:
        """The synchronous client (RQ needs bytes, so responses are not decoded)."""
        return Redis.from_url(self.redis_url, health_check_interval=30)

    def async_redis(self) -> AsyncRedis:
        """A new asyncio client; bind one to each event loop."""
        return AsyncRedis.from_url(self.redis_url, health_check_interval=30)

    def queue(self, name: str) -> Queue:
        return Queue(self.keys.queue(name), connection=self.redis)

    def queues(self) -> list[Queue]:
        """Every queue of this namespace, in the order workers take them."""
        return [self.queue(name) for name in QUEUE_ORDER]

    @cached_property
    def secret(self) -> bytes:
        """The key that signs links and tokens: configured, or made once and shared through Redis."""
        if self.settings.secret_key is not None:
            return self.settings.secret_key.get_secret_value().encode()
        self.redis.set(self.keys.secret, secrets.token_hex(32), nx=True)
        value = self.redis.get(self.keys.secret)
        assert value is not None
        return as_bytes(value)

    def close(self) -> None:
        if "redis" in self.__dict__:
            self.redis.close()


def open_context(settings: Settings | None = None, clock: Clock | None = None, *, make_secret: bool = True) -> Context:
    """Connect to ``REDIS_URL``, or to the embedded Redis (started if needed).

    Without ``BROADCAST_SECRET_KEY``, the deployment's secret kept in Redis goes into the settings;
    ``make_secret`` makes it first when there is none yet (commands that only read or import need not).
    """
    settings = settings or Settings()
    embedded = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        embedded = ensure_embedded_redis(settings.data_dir)
        url = embedded.url
    ctx = Context(settings=settings, redis_url=url, clock=clock or SystemClock(), embedded=embedded)
    if settings.secret_key is None:
        # Every process of the deployment signs with the one secret kept in Redis (and derives the
        # simulated providers' tokens from it), without anyone configuring it.
        secret = ctx.secret if make_secret else ctx.redis.get(ctx.keys.secret)
        if secret:
            ctx.settings = settings.model_copy(update={"secret_key": SecretStr(as_bytes(secret).decode())})
    return ctx


_current: Context | None = None


def set_current(context: Context | None) -> None:
    """Make ``context`` the one jobs in this process use."""
    global _current
    _current = context


def current() -> Context:
    """The context jobs run with: the one set by the worker, else one from the environment."""
    global _current
    if _current is None:
        _current = open_context()
    return _current
