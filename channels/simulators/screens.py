"""Simulated building and lift screens on a real MQTT broker.

Each screen connects as its own MQTT client, with its last will ("offline", retained) on its
status topic, says "online", subscribes to its own topic, shows what arrives and acknowledges
"shown", signed with its provisioned key. Screens told to be offline connect and then drop off the
network, so the broker publishes their will.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from channels.screens.display import Broker, ack_topic, status_topic


@dataclass
class ScreenBehaviour:
    offline: set[str] = field(default_factory=set)  # screen ids that drop off the network
    silent: set[str] = field(default_factory=set)  # screen ids that show but never acknowledge


@dataclass
class SimulatedScreen:
    id: str
    topic: str
    key: str
    shown: list[dict[str, Any]] = field(default_factory=list)  # every non-empty payload received
    cleared: int = 0  # empty (clearing) messages received

    @property
    def current(self) -> dict[str, Any] | None:
        """What the screen shows now."""
        return self.shown[-1] if self.shown and not self._cleared_last else None

    _cleared_last: bool = False


def _field(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class ScreenSimulator:
    """A set of screens, each a client of the broker."""

    def __init__(
        self,
        broker_url: str,
        prefix: str,
        screens: Sequence[tuple[str, str, str]],  # (id, topic, key)
        sign: Callable[[str, str, str], str],  # (key, alert id, status) → signature
        behaviour: ScreenBehaviour | None = None,
    ) -> None:
        self.broker = Broker.from_url(broker_url)
        self.prefix = prefix
        self.screens = {sid: SimulatedScreen(sid, topic, key) for sid, topic, key in screens}
        self.sign = sign
        self.behaviour = behaviour or ScreenBehaviour()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready: list[asyncio.Event] = []

    async def start(self) -> None:
        """Connect every screen; returns once each is subscribed (or has dropped off)."""
        for screen in self.screens.values():
            ready = asyncio.Event()
            self._ready.append(ready)
            self._tasks.append(asyncio.ensure_future(self._run(screen, ready)))
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in self._ready)), 20)

    async def _vanish(self, screen_id: str, status: str) -> None:
        """Connect with a last will, then drop off the network without DISCONNECT: the broker sends the will."""
        reader, writer = await asyncio.open_connection(self.broker.host, self.broker.port)
        # MQTT 3.1.1 CONNECT: clean session, will QoS 1 retained, keep-alive 5 s.
        flags = 0x02 | 0x04 | 0x08 | 0x20
        body = _field("MQTT") + bytes([4, flags]) + (5).to_bytes(2, "big")
        body += _field(f"screen-{screen_id}") + _field(status) + _field("offline")
        writer.write(bytes([0x10]) + _remaining_length(len(body)) + body)
        await writer.drain()
        await reader.readexactly(4)  # CONNACK
        writer.transport.abort()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, screen: SimulatedScreen, ready: asyncio.Event) -> None:
        status = status_topic(self.prefix, screen.id)
        if screen.id in self.behaviour.offline:
            await self._vanish(screen.id, status)
            ready.set()
            return
        will = aiomqtt.Will(status, b"offline", qos=1, retain=True)
        client = self.broker.client(identifier=f"screen-{screen.id}", will=will, keepalive=5)
        await client.__aenter__()
        await client.publish(status, b"online", qos=1, retain=True)
        try:
            await client.subscribe(screen.topic, qos=1)
            ready.set()
            async for message in client.messages:
                body = bytes(message.payload or b"")
                if not body:
                    screen.cleared += 1
                    screen._cleared_last = True
                    continue
                shown = json.loads(body)
                screen.shown.append(shown)
                screen._cleared_last = False
                if screen.id not in self.behaviour.silent:
                    ack = {"alert_id": shown["alert_id"], "status": "shown",
                           "sig": self.sign(screen.key, shown["alert_id"], "shown")}  # fmt: skip
                    await client.publish(ack_topic(self.prefix, screen.id), json.dumps(ack).encode(), qos=1)
        finally:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
