"""An alert on building and lift screens: which screens, what each shows, and what they report back.

Screens are not residents: an alert's screens are listed per alert (screen id → state) and counted
apart from its roster. States only move forward (queued → published → shown; failed until a
retry publishes). A screen's warning stays until the alert is cancelled or expires; then its
retained message is cleared.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import aiomqtt
import redis.asyncio
from rq import Retry

from audiences.screens import Screen, load_screens
from broadcast.composing.compose import AreaFacts, render
from broadcast.composing.facts import area_facts
from broadcast.composing.screen import screen_pages
from broadcast.core.context import CONTROL_QUEUE, FOLLOWUP_QUEUE, Context, current
from broadcast.core.embedded_mqtt import broker_url
from broadcast.core.jobs import CLEAR_SCREENS_JOB, SHOW_SCREENS_JOB
from broadcast.core.keys import ALERT_RETENTION_SECONDS, Keys, as_text
from broadcast.core.models import Alert, AlertStatus, ChannelKind, Language
from broadcast.core.tokens import mac, same
from broadcast.issuing.alerts import load_alert_async
from channels.base import OpenGate, OutboundMessage, Outcome
from channels.screens.display import Broker, Screens, ack_topic, status_topic

log = logging.getLogger("broadcast.displays")
BATCH = 200
STATES = ("queued", "failed", "published", "shown")

# KEYS: alert screens hash, counts hash. ARGV: new state, then screen ids. Moves each screen forward
# only, keeping "screens:published" / "screens:shown" as milestones reached and "screens:failed" current.
_ADVANCE = """
local rank = {queued = 0, failed = 1, published = 2, shown = 3}
local new = ARGV[1]
local moved = 0
for i = 2, #ARGV do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old and rank[new] > rank[old] then
    redis.call('HSET', KEYS[1], ARGV[i], new)
    moved = moved + 1
    if old == 'failed' then redis.call('HINCRBY', KEYS[2], 'screens:failed', -1) end
    if new == 'failed' then redis.call('HINCRBY', KEYS[2], 'screens:failed', 1) end
    if rank[new] >= 2 and rank[old] < 2 then redis.call('HINCRBY', KEYS[2], 'screens:published', 1) end
    if new == 'shown' then redis.call('HINCRBY', KEYS[2], 'screens:shown', 1) end
  end
end
return moved
"""


def screen_key(secret: bytes, screen_id: str) -> str:
    """The key a screen is provisioned with to sign its acknowledgements."""
    return mac(secret, "screen-key", screen_id, length=32)


def ack_signature(key: str, alert_id: str, status: str) -> str:
    """What a screen puts in its ack: proof that it, and not another device, shows this alert."""
    return mac(key.encode(), "screen-ack", alert_id, status)


def plan_screens(ctx: Context, alert: Alert, screens: Sequence[Screen]) -> int:
    """List the alert's screens and queue the jobs that show the warning; returns how many screens."""
    k = ctx.keys
    if not screens:
        return 0
    with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.hset(k.alert_screens(alert.id), mapping={s.id: "queued" for s in screens})
        pipe.expire(k.alert_screens(alert.id), ALERT_RETENTION_SECONDS)
        pipe.hset(k.plan(alert.id), "screens", len(screens))
        pipe.execute()
    queue = ctx.queue(CONTROL_QUEUE)
    ids = sorted(s.id for s in screens)
    for i in range(0, len(ids), BATCH):
        queue.enqueue(
            SHOW_SCREENS_JOB,
            alert.id,
            ids[i : i + BATCH],
            job_id=f"{k.ns}-{alert.id}-s{i // BATCH}",
            retry=Retry(max=5, interval=[5, 15, 30, 60, 120]),
            result_ttl=3600,
        )
    return len(screens)


def schedule_clear_at_expiry(ctx: Context, alert: Alert) -> None:
    """Clear the alert's screens when it expires (RQ's scheduler keeps the time, across restarts)."""
    ctx.queue(FOLLOWUP_QUEUE).enqueue_at(
        alert.expires_at, CLEAR_SCREENS_JOB, alert.id, job_id=f"{ctx.keys.ns}-{alert.id}-clear", result_ttl=3600
    )


def payload(alert: Alert, screen: Screen, pages: list[list[str]]) -> dict[str, Any]:
    """What a screen receives: enough to show, colour and expire the warning on its own."""
    return {
        "alert_id": alert.id,
        "screen": screen.id,
        "msg_type": alert.msg_type.value,
        "event": alert.event.value,
        "level": alert.level.value,
        "colour": alert.level.value,
        "exercise": alert.exercise,
        "pages": pages,
        "issued_at": (alert.issued_at or alert.created_at).isoformat(),
        "expires_at": alert.expires_at.isoformat(),
    }


async def advance(client: redis.asyncio.Redis, keys: Keys, alert_id: str, state: str, screen_ids: Iterable[str]) -> int:
    ids = list(screen_ids)
    if not ids:
        return 0
    moved = await client.eval(_ADVANCE, 2, keys.alert_screens(alert_id), keys.counts(alert_id), state, *ids)
    return int(moved)


def show_job(alert_id: str, screen_ids: list[str]) -> dict[str, int]:
    """RQ entry point: put the warning on these screens."""
    return asyncio.run(show(current(), alert_id, screen_ids))


async def show(ctx: Context, alert_id: str, screen_ids: list[str]) -> dict[str, int]:
    client = ctx.async_redis()
    try:
        alert = await load_alert_async(client, ctx.keys, alert_id)
        if alert is None or alert.status is AlertStatus.cancelled or ctx.clock.now() >= alert.expires_at:
            return {"skipped": len(screen_ids)}
        screens = await asyncio.to_thread(load_screens, ctx.redis, ctx.keys, screen_ids)
        facts = await area_facts(client, ctx.keys, {s.community for s in screens}, ctx.settings.hotline)
        texts: dict[str, str] = {}
        messages = []
        for i, screen in enumerate(screens):
            if screen.community not in texts:
                texts[screen.community] = render(
                    alert, Language.zh, ChannelKind.screen, facts.get(screen.community, AreaFacts()), ctx.settings
                ).text
            pages = screen_pages(texts[screen.community], screen.columns, screen.lines)
            messages.append(_message(alert, screen, i, payload(alert, screen, pages)))
        outcomes = await _send(ctx, messages)
        by_state: dict[str, list[str]] = {"published": [], "failed": []}
        for screen, outcome in zip(screens, outcomes, strict=True):
            by_state["published" if outcome is Outcome.accepted else "failed"].append(screen.id)
        for state, ids in by_state.items():
            await advance(client, ctx.keys, alert_id, state, ids)
        if by_state["failed"]:
            raise RuntimeError(f"{len(by_state['failed'])} screens could not be reached; RQ retries the batch")
        return {state: len(ids) for state, ids in by_state.items()}
    finally:
        await client.aclose()


def _message(alert: Alert, screen: Screen, index: int, body: dict[str, Any] | None) -> OutboundMessage:
    return OutboundMessage(
        alert.id,
        index,
        screen.address,
        "" if body is None else "show",
        extra={"payload": body, "transport": screen.transport.value},
    )


async def _send(ctx: Context, messages: list[OutboundMessage]) -> list[Outcome]:
    results: dict[int, Outcome] = {}
    async with Screens(ctx.settings, broker_url(ctx.settings)) as channel:
        async for result in channel.send(messages, OpenGate()):
            results[result.ordinal] = result.outcome
    return [results[m.ordinal] for m in messages]


def clear_job(alert_id: str) -> dict[str, int]:
    """RQ entry point: take a cancelled or expired alert off its screens."""
    return asyncio.run(clear(current(), alert_id))


async def clear(ctx: Context, alert_id: str) -> dict[str, int]:
    client = ctx.async_redis()
    try:
        ids = [as_text(i) for i in await client.hkeys(ctx.keys.alert_screens(alert_id))]
        alert = await load_alert_async(client, ctx.keys, alert_id)
        if alert is None or not ids:
            return {"cleared": 0}
        screens = await asyncio.to_thread(load_screens, ctx.redis, ctx.keys, ids)
        outcomes = await _send(ctx, [_message(alert, s, i, None) for i, s in enumerate(screens)])
        return {"cleared": sum(1 for o in outcomes if o is Outcome.accepted)}
    finally:
        await client.aclose()


def schedule_clear_now(ctx: Context, alert_id: str) -> None:
    """Clear an alert's screens at once (a cancel)."""
    ctx.queue(CONTROL_QUEUE).enqueue(CLEAR_SCREENS_JOB, alert_id, result_ttl=3600)


async def screen_progress(
    client: redis.asyncio.Redis, keys: Keys, alert_id: str, counts: dict[str, int]
) -> dict[str, Any]:
    """Screens of an alert: how many were targeted, published, shown, failed, and which are offline."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.hget(keys.plan(alert_id), "screens")
        pipe.hkeys(keys.alert_screens(alert_id))
        pipe.smembers(keys.screens_offline)
        targeted, ids, offline = await pipe.execute()
    offline_here = sorted({as_text(i) for i in ids} & {as_text(o) for o in offline})
    return {
        "targeted": int(targeted or 0),
        "published": counts.get("screens:published", 0),
        "shown": counts.get("screens:shown", 0),
        "failed": counts.get("screens:failed", 0),
        "offline": len(offline_here),
        "offline_screens": offline_here[:100],
    }


class ScreenWatch:
    """Listens on the broker for screens' acks and last wills, and records them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.prefix = ctx.settings.screen_topic_prefix
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.refused = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        client = self.ctx.async_redis()
        try:
            while True:
                try:
                    broker = Broker.from_url(broker_url(self.ctx.settings))
                    async with broker.client(identifier=None) as mqtt:
                        await mqtt.subscribe(ack_topic(self.prefix, "+"), qos=1)
                        await mqtt.subscribe(status_topic(self.prefix, "+"), qos=1)
                        self.ready.set()
                        async for message in mqtt.messages:
                            await self.handle(client, str(message.topic), bytes(message.payload or b""))
                except aiomqtt.MqttError as exc:
                    self.ready.clear()
                    log.warning("screen watch lost the broker (%s); reconnecting", exc)
                    await asyncio.sleep(1)
        finally:
            await client.aclose()

    async def handle(self, client: redis.asyncio.Redis, topic: str, body: bytes) -> str:
        """Record one message from a screen; returns what it came to."""
        keys = self.ctx.keys
        parts = topic.split("/")
        if len(parts) < 3 or "/".join(parts[:-2]) != self.prefix or parts[-1] not in ("ack", "status"):
            return self._refuse()
        screen_id = parts[-2]
        if not await client.hexists(keys.screens, screen_id):
            return self._refuse()  # only registered screens own a topic here
        if parts[-1] == "status":
            state = body.decode("utf-8", "replace").strip().lower()
            if state == "offline":
                await client.sadd(keys.screens_offline, screen_id)
            elif state == "online":
                await client.srem(keys.screens_offline, screen_id)
            else:
                return self._refuse()
            return state
        if len(body) > 4096:
            return self._refuse()
        try:
            ack = json.loads(body)
            alert_id, status, signature = str(ack["alert_id"]), str(ack["status"]), str(ack["sig"])
        except (ValueError, KeyError, TypeError):
            return self._refuse()
        key = screen_key(self.ctx.secret, screen_id)
        if status != "shown" or not same(ack_signature(key, alert_id, status), signature):
            return self._refuse()
        if not await client.hexists(keys.alert_screens(alert_id), screen_id):
            return self._refuse()
        await client.srem(keys.screens_offline, screen_id)
        await advance(client, keys, alert_id, "shown", [screen_id])
        return "shown"

    def _refuse(self) -> str:
        self.refused += 1
        return "refused"
