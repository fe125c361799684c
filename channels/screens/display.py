"""Screens in buildings and lifts: the warning stays on a screen until it is cancelled or expires.

MQTT screens get a retained QoS 1 message on their own topic, so a screen that reconnects shows the
current warning at once; clearing publishes an empty retained message. HTTP screens get the same
JSON by POST (and DELETE to clear). Screens acknowledge "shown" on their ack topic
``{prefix}/{screen id}/ack``; their last will on ``{prefix}/{screen id}/status`` says "offline".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import aiohttp
import aiomqtt

from broadcast.core.embedded_mqtt import broker_url
from broadcast.core.models import ChannelKind
from broadcast.core.settings import Settings
from channels.base import Channel, Gate, OutboundMessage, Outcome, SendResult, classify_http, send_concurrently

MAX_PAYLOAD = 16 * 1024


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> Broker:
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"MQTT_URL must look like mqtt://host:port, not {url!r}")
        return cls(parsed.hostname or "127.0.0.1", parsed.port or 1883, parsed.username, parsed.password)

    def client(self, identifier: str | None = None, **options: Any) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host, self.port, username=self.username, password=self.password, identifier=identifier, **options
        )


def ack_topic(prefix: str, screen_id: str) -> str:
    return f"{prefix}/{screen_id}/ack"


def status_topic(prefix: str, screen_id: str) -> str:
    return f"{prefix}/{screen_id}/status"


class Screens(Channel):
    """Publishes each message's ``extra["payload"]`` to the screen at ``address``.

    ``extra["transport"]`` says how: "mqtt" (address is a topic) or "http" (address is a URL).
    """

    name = "screens"
    kind = ChannelKind.screen

    def __init__(self, settings: Settings, broker: str | None = None) -> None:
        super().__init__(settings)
        self.broker_url = broker
        self._mqtt: aiomqtt.Client | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Screens:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.send_timeout_seconds))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._mqtt is not None:
            await self._mqtt.__aexit__(None, None, None)
            self._mqtt = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _broker(self) -> aiomqtt.Client:
        if self._mqtt is None:
            if self.broker_url is None:
                self.broker_url = await asyncio.to_thread(broker_url, self.settings)
            client = Broker.from_url(self.broker_url).client(timeout=self.settings.send_timeout_seconds)
            await client.__aenter__()
            self._mqtt = client
        return self._mqtt

    async def _publish(self, message: OutboundMessage) -> SendResult:
        payload = json.dumps(message.extra.get("payload"), ensure_ascii=False).encode() if message.text else b""
        if len(payload) > MAX_PAYLOAD:
            return SendResult(
                message.ordinal, Outcome.permanent, detail=f"payload of {len(payload)} bytes is too large"
            )
        if message.extra.get("transport") == "http":
            return await self._post(message, payload)
        try:
            client = await self._broker()
            await client.publish(message.address, payload, qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            self._mqtt = None
            return SendResult(message.ordinal, Outcome.retryable, detail=f"MQTT: {exc}")
        return SendResult(message.ordinal, Outcome.accepted, provider_ref=message.address)

    async def _post(self, message: OutboundMessage, payload: bytes) -> SendResult:
        assert self._http is not None, "use the channel as an async context manager"
        method = "POST" if payload else "DELETE"
        try:
            async with self._http.request(
                method, message.address, data=payload or None, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                if response.status < 300:
                    return SendResult(message.ordinal, Outcome.accepted, provider_ref=message.address)
                return SendResult(message.ordinal, classify_http(response.status), error_code=response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return SendResult(message.ordinal, Outcome.retryable, detail=f"{type(exc).__name__}: {exc}")

    def send(self, messages: Sequence[OutboundMessage], gate: Gate) -> AsyncIterator[SendResult]:
        """Show (or, for a message with empty text, clear) each screen's warning."""
        return send_concurrently(messages, self._publish, gate, min(20, self.settings.send_concurrency))
