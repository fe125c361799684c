"""App push through JPush (极光推送) REST API v3: up to 1,000 notifications, each its own, per request.

Every notification carries its recipient's own confirmation key, so no two are alike. They go out
through the batch single push (批量单推, ``POST /v3/push/batch/regid/single``): its ``pushlist``
holds up to 1,000 notifications, each with its own target and content, keyed by a cid taken from
JPush's pool (``GET /v3/push/cid``, up to 1,000 a request). The answer says per cid whether that
notification has a msg_id or an error. A cid also makes sending again safe: JPush answers a cid it
has already pushed with the first push's result instead of pushing twice, so a recipient keeps
their cid for every retry.

The batch API is for JPush's VIP apps; an app without it (errors 2006, 2007) gets one ``POST
/v3/push`` per device instead, as FCM does. An id JPush does not know is refused at once (1011):
it is dropped from the resident and the next channel takes over.

JPush does not call back; a while after sending, the report API (``/v3/received/detail``, up to
100 msg_ids a request) says which notifications arrived.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from broadcast.core.models import ChannelKind, EventKind, RecipientEvent
from broadcast.core.settings import Settings
from channels.base import (
    UNREGISTERED,
    Channel,
    Gate,
    OutboundMessage,
    Outcome,
    SendResult,
    Sent,
    classify_http,
    send_concurrently,
)

MAX_BATCH = 1000  # notifications in one batch request, and cids in one answer of the pool
MAX_REPORT_IDS = 100  # msg_ids in one delivery-report request
BATCH_PATH = "/v3/push/batch/regid/single"
CID_PATH = "/v3/push/cid"
SIMULATOR_APP_KEY = "5e5e5e5e5e5e5e5e5e5e5e5e"
SIMULATOR_MASTER_SECRET = "simulator-master-secret"
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)

# JPush error codes → outcome; otherwise 5xx retryable, 429 throttled, 401/403 bad_config, other 4xx permanent.
ERROR_OUTCOMES: dict[int, Outcome] = {
    1000: Outcome.retryable,  # internal error
    1004: Outcome.bad_config,  # authentication failed
    1008: Outcome.bad_config,  # appKey not valid
    1011: Outcome.permanent,  # no device matches the target: the id is not (or no longer) registered
    1030: Outcome.retryable,  # internal timeout
    2002: Outcome.throttled,  # API call frequency exceeded
    2003: Outcome.bad_config,  # this app key may no longer call the API
    2004: Outcome.bad_config,  # this server's address is not on the app's IP whitelist
    2005: Outcome.permanent,  # the device has had more messages than JPush allows: another channel must reach it
    2006: Outcome.bad_config,  # the API is for VIP apps only
    2007: Outcome.bad_config,  # no permission for this API
}
NO_BATCH_RIGHTS = frozenset({2006, 2007})


def classify(status: int, code: int | None) -> Outcome:
    """The outcome of a JPush error response."""
    known = ERROR_OUTCOMES.get(code) if code is not None else None
    return known or classify_http(status)


@dataclass(frozen=True)
class Refusal:
    """Why JPush refused a request, or one notification of a batch."""

    outcome: Outcome
    code: int | None
    detail: str

    @classmethod
    def of(cls, status: int, error: Any) -> Refusal:
        """The refusal an error object (``{"code", "message"}``) names, answered with HTTP ``status``."""
        error = error if isinstance(error, dict) else {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        return cls(classify(status, code), code, str(error.get("message", status)))

    def result(self, message: OutboundMessage) -> SendResult:
        """What became of ``message``: an unknown id is recorded as unregistered, so its token is dropped."""
        recorded = UNREGISTERED if self.code == 1011 else self.code
        return SendResult(message.ordinal, self.outcome, error_code=recorded, detail=self.detail)


def _error_of(payload: Any) -> Any:
    return payload.get("error") if isinstance(payload, dict) else None


def _unreachable(exc: BaseException) -> Refusal:
    return Refusal(Outcome.retryable, None, f"{type(exc).__name__}: {exc}")


def content(message: OutboundMessage, apns_production: bool) -> dict[str, Any]:
    """One message as a v3 push object without its audience: platforms, notification, options."""
    title = str(message.extra.get("title", ""))
    extras = message.extra.get("data", {})
    return {
        "platform": "all",
        "notification": {
            "android": {"alert": message.text, "title": title, "priority": 2, "extras": extras},
            "ios": {"alert": {"title": title, "body": message.text}, "sound": "default", "extras": extras},
        },
        "options": {"time_to_live": message.validity_seconds or 86400, "apns_production": apns_production},
    }


def batch_body(notifications: Sequence[tuple[str, OutboundMessage]], apns_production: bool) -> dict[str, Any]:
    """The batch single push request: each (cid, message) becomes its own notification to its own device."""
    return {"pushlist": {cid: {**content(m, apns_production), "target": m.address} for cid, m in notifications}}


def entry_result(message: OutboundMessage, entry: Any) -> SendResult:
    """What one cid's part of a batch answer says of its message; an entry with an error failed, msg_id or not."""
    if isinstance(entry, dict) and isinstance(entry.get("error"), dict):
        return Refusal.of(400, entry["error"]).result(message)
    if isinstance(entry, dict) and isinstance(entry.get("msg_id"), int | str) and str(entry["msg_id"]):
        return SendResult(message.ordinal, Outcome.accepted, provider_ref=str(entry["msg_id"]))
    # No answer for this cid: sending it again is safe, the cid makes JPush push it at most once.
    return SendResult(message.ordinal, Outcome.retryable, detail="no answer for this notification")


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
        self._cids: dict[tuple[str, int], str] = {}  # (alert, ordinal) → its cid, for every retry
        self.one_by_one = False  # the app may not use the batch API: one request per device

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

    async def _request(
        self, method: str, url: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        assert self._session is not None, "use the channel as an async context manager"
        # UTF-8 rather than \u escapes: a batch of 1,000 Chinese notifications is half the size.
        data = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else None
        async with self._session.request(method, url, data=data, params=params, headers=headers) as response:
            try:
                payload = await response.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                payload = None
            return response.status, payload

    async def send(self, messages: Sequence[OutboundMessage], gate: Gate) -> AsyncIterator[SendResult]:
        if self.one_by_one:
            async for result in self._each(messages, gate):
                yield result
            return
        chunks = [messages[i : i + MAX_BATCH] for i in range(0, len(messages), MAX_BATCH)]
        for finished in asyncio.as_completed([self._batch(chunk, gate) for chunk in chunks]):
            for result in await finished:
                yield result

    async def _batch(self, chunk: Sequence[OutboundMessage], gate: Gate) -> list[SendResult]:
        """Send up to 1,000 messages in batch requests; what JPush throttles goes again while the gate allows."""
        results: list[SendResult] = []
        pending = list(chunk)
        tries = 0
        while pending:
            with_cids = await self._with_cids(pending, gate)
            if isinstance(with_cids, Refusal):
                went, answered = pending, [with_cids.result(m) for m in pending]
            else:
                batch_answer = await self._push_batch(with_cids, gate)
                if batch_answer is None:
                    self.one_by_one = True
                    results += [r async for r in self._each(pending, gate)]
                    return results
                went, answered = [m for _, m in with_cids], batch_answer
            sent_now = {m.ordinal for m in went}
            rest = [m for m in pending if m.ordinal not in sent_now]
            throttled = {r.ordinal for r in answered if r.outcome is Outcome.throttled}
            again = [m for m in went if m.ordinal in throttled]
            if again and await gate.retry_throttled(again[0], tries):
                tries += 1
                results += [r for r in answered if r.ordinal not in throttled]
                rest = again + rest
            else:
                results += answered
            pending = rest
        return results

    async def _with_cids(
        self, messages: Sequence[OutboundMessage], gate: Gate
    ) -> list[tuple[str, OutboundMessage]] | Refusal:
        """Messages with their cids, as many as the pool gave (at least one), or why the pool refused."""
        missing = [m for m in messages if (m.alert_id, m.ordinal) not in self._cids][:MAX_BATCH]
        if missing:
            await gate.admit(missing, 1)
            params = {"count": str(len(missing)), "type": "push"}
            try:
                status, payload = await self._request("GET", f"{self.api_base}{CID_PATH}", params=params)
            except NETWORK_ERRORS as exc:
                return _unreachable(exc)
            cids = payload.get("cidlist") if status == 200 and isinstance(payload, dict) else None
            if not (isinstance(cids, list) and cids and all(isinstance(c, str) and c for c in cids)):
                if status == 200:
                    return Refusal(Outcome.retryable, None, "the cid pool answered no cids")
                return Refusal.of(status, _error_of(payload))
            # An app without VIP rights gets at most 10 a request: those go first, the rest next round.
            self._cids.update(((m.alert_id, m.ordinal), cid) for m, cid in zip(missing, cids, strict=False))
        return [(self._cids[key], m) for m in messages if (key := (m.alert_id, m.ordinal)) in self._cids]

    async def _push_batch(
        self, notifications: list[tuple[str, OutboundMessage]], gate: Gate
    ) -> list[SendResult] | None:
        """One batch request; None if the app may not use the batch API."""
        messages = [m for _, m in notifications]
        await gate.admit(messages, 1)
        body = batch_body(notifications, self.settings.jpush_apns_production)
        try:
            status, payload = await self._request("POST", f"{self.api_base}{BATCH_PATH}", body)
        except NETWORK_ERRORS as exc:
            return [_unreachable(exc).result(m) for m in messages]
        if status == 200 and isinstance(payload, dict) and "error" not in payload:
            return [entry_result(m, payload.get(cid)) for cid, m in notifications]
        refusal = Refusal.of(status, _error_of(payload))
        if refusal.code in NO_BATCH_RIGHTS:
            return None
        return [refusal.result(m) for m in messages]

    def _each(self, messages: Sequence[OutboundMessage], gate: Gate) -> AsyncIterator[SendResult]:
        """One request per device, for an app without the batch API."""
        return send_concurrently(messages, self._push_one, gate, self.settings.send_concurrency)

    async def _push_one(self, message: OutboundMessage) -> SendResult:
        audience = {"registration_id": [message.address]}
        body = {**content(message, self.settings.jpush_apns_production), "audience": audience}
        try:
            status, payload = await self._request("POST", f"{self.api_base}/v3/push", body)
        except NETWORK_ERRORS as exc:
            return _unreachable(exc).result(message)
        if status == 200 and isinstance(payload, dict) and "msg_id" in payload:
            return SendResult(message.ordinal, Outcome.accepted, provider_ref=str(payload["msg_id"]))
        return Refusal.of(status, _error_of(payload)).result(message)

    async def delivery_reports(self, alert_id: str, sent: Sequence[Sent]) -> list[RecipientEvent]:
        """Which notifications arrived, by the report API's count per msg_id (each is one device's now)."""
        by_message: dict[str, list[Sent]] = {}
        for s in sent:
            if s.provider_ref.isascii() and s.provider_ref.isdigit():
                by_message.setdefault(s.provider_ref, []).append(s)
        ids = list(by_message)
        events: list[RecipientEvent] = []
        for i in range(0, len(ids), MAX_REPORT_IDS):
            params = {"msg_ids": ",".join(ids[i : i + MAX_REPORT_IDS])}
            status, payload = await self._request("GET", f"{self.report_base}/v3/received/detail", params=params)
            if status != 200 or not isinstance(payload, list):
                continue  # a later report, or the resident's confirmation, will tell
            for entry in payload:
                items = by_message.get(str(entry.get("msg_id"))) if isinstance(entry, dict) else None
                # A msg_id counts the devices that got it, by whichever way; a count short of its
                # devices cannot say which ones, so only a full count is recorded.
                if not items or _received(entry) < len(items):
                    continue
                events += [
                    RecipientEvent(
                        alert_id=alert_id,
                        ordinal=s.ordinal,
                        kind=EventKind.delivered,
                        channel=ChannelKind.push,
                        provider_ref=s.provider_ref,
                    )
                    for s in items
                ]
        return events


def _received(entry: dict[str, Any]) -> int:
    """Devices a report entry says got the notification: JPush's own channel, vendors' channels, APNs."""
    return sum(v for k, v in entry.items() if k.endswith("_received") and isinstance(v, int) and v > 0)
