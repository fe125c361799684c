"""App push through JPush (极光推送) REST API v3: one request per batch of up to 1,000 registration ids.

JPush does not call back; a while after sending, the report API (``/v3/status/message``) says per
registration id whether the notification arrived (0), not yet (1), or the id is not ours (2): those
tokens are dropped from the resident and the next channel takes over.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from broadcast.models import ChannelKind, EventKind, RecipientEvent
from broadcast.settings import Settings
from channels.base import (
    UNREGISTERED,
    Channel,
    Gate,
    OutboundMessage,
    Outcome,
    SendResult,
    Sent,
    classify_http,
)

MAX_AUDIENCE = 1000
SIMULATOR_APP_KEY = "5e5e5e5e5e5e5e5e5e5e5e5e"
SIMULATOR_MASTER_SECRET = "simulator-master-secret"

# JPush error codes → outcome; otherwise 5xx retryable, 429 throttled, 401/403 bad_config, other 4xx permanent.
ERROR_OUTCOMES: dict[int, Outcome] = {
    1000: Outcome.retryable,  # internal error
    1004: Outcome.bad_config,  # authentication failed
    1008: Outcome.bad_config,  # appKey not valid
    1011: Outcome.permanent,  # none of the audience is known
    2002: Outcome.throttled,  # API call frequency exceeded
    2003: Outcome.throttled,  # too many pushes to this audience
}
REPORT_STATUS = {0: EventKind.delivered, 2: EventKind.failed}  # 1: not yet; 3, 4: nothing to record


def classify(status: int, code: int | None) -> Outcome:
    """The outcome of a JPush error response."""
    known = ERROR_OUTCOMES.get(code) if code is not None else None
    return known or classify_http(status)


def push_body(messages: Sequence[OutboundMessage], apns_production: bool) -> dict[str, Any]:
    """The v3 push object for messages that share one text."""
    first = messages[0]
    title = str(first.extra.get("title", ""))
    extras = first.extra.get("data", {})
    return {
        "platform": "all",
        "audience": {"registration_id": [m.address for m in messages]},
        "notification": {
            "android": {"alert": first.text, "title": title, "priority": 2, "extras": extras},
            "ios": {"alert": {"title": title, "body": first.text}, "sound": "default", "extras": extras},
        },
        "options": {"time_to_live": first.validity_seconds or 86400, "apns_production": apns_production},
    }


class JPush(Channel):
    name = "jpush"
    kind = ChannelKind.push
    asks_for_reports = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.jpush_app_key and settings.jpush_master_secret:
            self.app_key = settings.jpush_app_key
            self.master_secret = settings.jpush_master_secret.get_secret_value()
            self.api_base, self.report_base = settings.jpush_api_base, settings.jpush_report_base
        else:
            self.app_key, self.master_secret = SIMULATOR_APP_KEY, SIMULATOR_MASTER_SECRET
            self.api_base = self.report_base = settings.simulator_url
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def configuration_problems(cls, settings: Settings) -> list[str]:
        if bool(settings.jpush_app_key) != bool(settings.jpush_master_secret):
            return ["set both BROADCAST_JPUSH_APP_KEY and BROADCAST_JPUSH_MASTER_SECRET"]
        return []

    def rate_limit(self) -> tuple[str, float, float] | None:
        rate = self.settings.push_rate_per_second
        return (f"jpush:{self.app_key}", rate, 1.0 if rate > 0 else 0.0)

    async def __aenter__(self) -> JPush:
        credentials = base64.b64encode(f"{self.app_key}:{self.master_secret}".encode()).decode()
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Basic {credentials}"},
            timeout=aiohttp.ClientTimeout(total=self.settings.send_timeout_seconds),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        assert self._session is not None, "use the channel as an async context manager"
        async with self._session.post(url, json=body) as response:
            try:
                payload = await response.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                payload = {}
            return response.status, payload if isinstance(payload, dict) else {}

    async def _push(self, messages: Sequence[OutboundMessage], gate: Gate) -> list[SendResult]:
        await gate.admit(messages, 1)
        try:
            status, payload = await self._post(
                f"{self.api_base}/v3/push", push_body(messages, self.settings.jpush_apns_production)
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return [SendResult(m.ordinal, Outcome.retryable, detail=f"{type(exc).__name__}: {exc}") for m in messages]
        if status == 200 and "msg_id" in payload:
            return [SendResult(m.ordinal, Outcome.accepted, provider_ref=str(payload["msg_id"])) for m in messages]
        error = payload.get("error", {}) if isinstance(payload.get("error"), dict) else {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        outcome = classify(status, code)
        recorded = UNREGISTERED if code == 1011 else code
        return [
            SendResult(m.ordinal, outcome, error_code=recorded, detail=str(error.get("message", status)))
            for m in messages
        ]

    async def send(self, messages: Sequence[OutboundMessage], gate: Gate) -> AsyncIterator[SendResult]:
        groups: dict[str, list[OutboundMessage]] = {}
        for m in messages:
            groups.setdefault(json.dumps([m.text, dict(m.extra)], sort_keys=True, ensure_ascii=False), []).append(m)
        chunks = [g[i : i + MAX_AUDIENCE] for g in groups.values() for i in range(0, len(g), MAX_AUDIENCE)]
        for finished in asyncio.as_completed([self._push(chunk, gate) for chunk in chunks]):
            for result in await finished:
                yield result

    async def delivery_reports(self, alert_id: str, sent: Sequence[Sent]) -> list[RecipientEvent]:
        by_message: dict[str, list[Sent]] = {}
        for s in sent:
            by_message.setdefault(s.provider_ref, []).append(s)
        events: list[RecipientEvent] = []
        for msg_id, items in by_message.items():
            for i in range(0, len(items), MAX_AUDIENCE):
                chunk = items[i : i + MAX_AUDIENCE]
                body = {"msg_id": int(msg_id), "registration_ids": [s.address for s in chunk]}
                status, payload = await self._post(f"{self.report_base}/v3/status/message", body)
                if status != 200:
                    continue  # a later report, or the resident's confirmation, will tell
                for s in chunk:
                    entry = payload.get(s.address)
                    code = entry.get("status") if isinstance(entry, dict) else None
                    kind = REPORT_STATUS.get(code) if isinstance(code, int) else None
                    if kind is not None:
                        events.append(
                            RecipientEvent(
                                alert_id=alert_id,
                                ordinal=s.ordinal,
                                kind=kind,
                                channel=ChannelKind.push,
                                error_code=UNREGISTERED if kind is EventKind.failed else None,
                                provider_ref=msg_id,
                            )
                        )
        return events
