"""The channel contract: every provider sends batches and parses its own inbound traffic.

A channel never touches Redis. Sending yields one :class:`SendResult` per message, whose
``outcome`` comes from one small taxonomy::

    Outcome
    ├── accepted     the provider took the message
    ├── retryable    timeout, connection error, 5xx: the same request may succeed soon
    ├── throttled    429, Twilio 20429 / 21611 (queue full): slow the account down, then retry
    ├── permanent    invalid number (21211), unregistered push token: this channel will not reach them
    ├── opted_out    the resident unsubscribed from this channel (Twilio 21610)
    └── bad_config   credentials or sender are wrong: no message of this batch can succeed

Inbound, a channel *declares* its routes (method, path, parser). The web app mounts them, turns
the HTTP request into an :class:`InboundRequest`, calls the parser, stores the events it returns,
and only then answers the provider. A parser that cannot authenticate or understand a request
raises :class:`InboundRejected` (403 / 400) before anything is stored.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Protocol

from broadcast.core.models import ChannelKind, RecipientEvent, ReplyEvent
from broadcast.core.settings import Settings


class Outcome(str, Enum):
    accepted = "accepted"
    retryable = "retryable"
    throttled = "throttled"
    permanent = "permanent"
    opted_out = "opted_out"
    bad_config = "bad_config"


@dataclass(frozen=True)
class OutboundMessage:
    """One message to one recipient, already rendered."""

    alert_id: str
    ordinal: int
    address: str  # phone number, push token, screen topic …
    text: str
    language: str = "zh"
    parts: int = 1  # SMS segments: what the rate limit counts
    validity_seconds: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    round: int = 0  # 0: the alert itself; 1, 2 …: an escalation round (its reports are told apart)


@dataclass(frozen=True)
class SendResult:
    """What became of one message."""

    ordinal: int
    outcome: Outcome
    provider_ref: str | None = None
    error_code: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class InboundRequest:
    """A provider's request as the channel sees it: the public URL it called, headers, body."""

    method: str
    url: str  # the full public URL the provider requested, query included
    headers: Mapping[str, str]
    body: bytes
    form: Mapping[str, str]
    query: Mapping[str, str]


@dataclass(frozen=True)
class InboundResult:
    """Events parsed from one request, and what to answer the provider once they are stored."""

    events: Sequence[RecipientEvent | ReplyEvent]
    status: int = 200
    body: str = ""
    content_type: str = "text/plain"


class InboundRejected(Exception):
    """The request is refused before anything is stored: 403 unauthenticated, 400 malformed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Parser = Callable[[InboundRequest], InboundResult]


@dataclass(frozen=True)
class InboundRoute:
    method: str
    path: str
    parse: Parser


class Gate(Protocol):
    """What every provider request passes first: the account's shared rate limit, and the sender's
    record that these messages are going out (so that a crash leaves a trace of what was in flight)."""

    async def admit(self, messages: Sequence[OutboundMessage], cost: float) -> None: ...

    def slow_down(self) -> None: ...

    async def retry_throttled(self, message: OutboundMessage, tries: int) -> bool:
        """The provider throttled ``message`` (``tries`` times already sent again): wait and say
        True to send it again now, or say False to report it throttled."""
        ...


class OpenGate:
    """No rate limit, nothing recorded, a throttled message reported as such."""

    async def admit(self, messages: Sequence[OutboundMessage], cost: float) -> None:
        return None

    def slow_down(self) -> None:
        return None

    async def retry_throttled(self, message: OutboundMessage, tries: int) -> bool:
        return False


def classify_http(status: int) -> Outcome:
    """The outcome of an HTTP error answer no provider-specific code explains."""
    if status == 429:
        return Outcome.throttled
    if status >= 500:
        return Outcome.retryable
    if status in (401, 403):
        return Outcome.bad_config
    return Outcome.permanent


@dataclass(frozen=True)
class Sent:
    """A message the provider accepted, as a later delivery report refers to it."""

    ordinal: int
    address: str
    provider_ref: str


# Error code recorded when a push token is no longer registered: the token is removed from the resident.
UNREGISTERED = 410


class Channel(ABC):
    """One provider's way of reaching people, in both directions."""

    name: ClassVar[str]
    kind: ClassVar[ChannelKind]
    # Providers that report delivery only when asked (see delivery_reports), instead of calling back.
    asks_for_reports: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def configuration_problems(cls, settings: Settings) -> list[str]:
        """What is missing or wrong in the settings for this channel; checked at issue time."""
        return []

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def rate_limit(self) -> tuple[str, float, float] | None:
        """(account name, units per second, burst) shared by all workers, or None for no limit at all.
        A rate of 0 means none is configured: the pace is then learnt from the provider's refusals."""
        return None

    @abstractmethod
    def send(self, messages: Sequence[OutboundMessage], gate: Gate) -> AsyncIterator[SendResult]:
        """Send messages; yield each one's result as soon as it is known."""

    def routes(self) -> list[InboundRoute]:
        """The inbound endpoints this channel answers."""
        return []

    async def delivery_reports(self, alert_id: str, sent: Sequence[Sent]) -> list[RecipientEvent]:
        """Ask the provider what became of messages it accepted (for providers that do not call back)."""
        return []


async def send_concurrently(
    messages: Sequence[OutboundMessage],
    send_one: Callable[[OutboundMessage], Awaitable[SendResult]],
    gate: Gate,
    concurrency: int,
) -> AsyncIterator[SendResult]:
    """Run ``send_one`` over messages with at most ``concurrency`` in flight, each through the gate."""
    # ``concurrency`` lanes take the messages in order and hand their results over as they come:
    # one task per lane rather than one per message, and the caller takes whatever has arrived at
    # once (a batch's bookkeeping is then a fraction of its sending). A lane that fails hands over
    # its exception, which the caller gets in turn.
    ready: list[SendResult | Exception] = []
    arrived = asyncio.Event()
    waiting = iter(messages)

    async def lane() -> None:
        try:
            for message in waiting:
                await gate.admit((message,), message.parts)
                result = await send_one(message)
                tries = 0
                # A provider at its capacity refuses what it cannot carry now; a gate may have the
                # lane wait and send the same message again (the other lanes go on meanwhile).
                while result.outcome is Outcome.throttled and await gate.retry_throttled(message, tries):
                    tries += 1
                    await gate.admit((message,), message.parts)
                    result = await send_one(message)
                ready.append(result)
                arrived.set()
        except Exception as exc:
            ready.append(exc)
            arrived.set()

    lanes = [asyncio.ensure_future(lane()) for _ in range(min(concurrency, len(messages)))]
    try:
        handed = 0
        while handed < len(messages):
            if not ready:
                arrived.clear()
                await arrived.wait()
                continue
            arrivals = ready.copy()
            ready.clear()
            for result in arrivals:
                if isinstance(result, Exception):
                    raise result
                handed += 1
                yield result
    finally:
        for task in lanes:
            task.cancel()
