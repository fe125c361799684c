"""JPush REST v3 and FCM HTTP v1, simulated, with the residents' app on the other end.

JPush: ``POST /v3/push`` (Basic appKey:masterSecret, registration ids in batches of up to 1,000)
answering ``{"sendno", "msg_id"}``, and the report API ``POST /v3/status/message``.
FCM: ``POST /token`` (the OAuth2 JWT-bearer grant; the assertion is verified against the service
account's public key) and ``POST /v1/projects/{project}/messages:send`` (Bearer token, one token
per request) answering ``{"name"}`` or Google's error shape with an FCM errorCode.

The app: for a share of devices that receive a notification, the resident taps "I'm safe" (or "I
need help") and the app POSTs to our confirmation endpoint with the notification's alert id and key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web

from channels.push.fcm import JWT_BEARER, ServiceAccount
from channels.simulators import HANG_SECONDS, SimulatedProvider


@dataclass
class PushBehaviour:
    """How the simulated push service and the residents' phones behave."""

    ack_share: float = 0.7  # share of devices whose owner taps a button
    help_share: float = 0.03  # of those, the share tapping "I need help"
    ack_delay: tuple[float, float] = (0.2, 2.0)
    unregistered: set[str] = field(default_factory=set)  # tokens the service no longer knows
    offline: set[str] = field(default_factory=set)  # devices that never receive (JPush report: 1)
    latency: float = 0.0
    inject: list[int | str] = field(default_factory=list)  # next answers: 429, 500, 503, "timeout", 401
    seed: int = 11

    def taps(self, token: str) -> str | None:
        draw = int.from_bytes(hashlib.sha1(f"{self.seed}:tap:{token}".encode()).digest()[:8], "big") / 2**64
        if draw >= self.ack_share:
            return None
        return "help" if draw < self.ack_share * self.help_share else "confirm"


@dataclass
class Notification:
    token: str
    title: str
    body: str
    data: dict[str, Any]


class SimulatedApp(SimulatedProvider):
    """What the push services share: delivery to devices, and the resident's tap going back to us."""

    def __init__(self, ack_url: str, behaviour: PushBehaviour | None = None) -> None:
        super().__init__()
        self.ack_url = ack_url
        self.behaviour = behaviour or PushBehaviour()
        self.delivered: list[Notification] = []
        self.acks: dict[str, str] = {}  # token → response our endpoint accepted
        self.ack_refusals = Counter[int]()

    async def _injected(self) -> web.Response | None:
        b = self.behaviour
        if b.latency:
            await asyncio.sleep(b.latency)
        if not b.inject:
            return None
        injected = b.inject.pop(0)
        if injected == "timeout":
            await asyncio.sleep(HANG_SECONDS)
        return self.failure(int(injected))

    def failure(self, status: int) -> web.Response:
        raise NotImplementedError

    def deliver(self, notification: Notification) -> None:
        if notification.token in self.behaviour.offline:
            return
        self.delivered.append(notification)
        response = self.behaviour.taps(notification.token)
        if response is not None and "alert_id" in notification.data:
            self.spawn(self._tap(notification, response))

    async def _tap(self, notification: Notification, response: str) -> None:
        assert self.session is not None
        low, high = self.behaviour.ack_delay
        if high > 0:
            await asyncio.sleep(low + (high - low) * (hash(notification.token) % 1000) / 1000)
        body = {
            "alert_id": str(notification.data["alert_id"]),
            "ack": str(notification.data.get("ack", "")),
            "registration_id": notification.token,
            "response": response,
        }
        for attempt in range(3):
            try:
                async with self.session.post(self.ack_url, json=body) as answer:
                    await answer.read()
                    if answer.status == 200:
                        self.acks[notification.token] = response
                    else:
                        self.ack_refusals[answer.status] += 1
                    return
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.2 * (attempt + 1))


class JPushSimulator(SimulatedApp):
    def __init__(self, app_key: str, master_secret: str, ack_url: str, behaviour: PushBehaviour | None = None) -> None:
        super().__init__(ack_url, behaviour)
        self.credentials = "Basic " + base64.b64encode(f"{app_key}:{master_secret}".encode()).decode()
        self.requests: list[dict[str, Any]] = []
        self._messages: dict[int, set[str]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/push", self._push)
        app.router.add_post("/v3/status/message", self._status)

    def failure(self, status: int) -> web.Response:
        code = {429: 2002, 401: 1004}.get(status, 1000)
        return web.json_response({"error": {"code": code, "message": "simulated failure"}}, status=status)

    def _authorised(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.headers.get("Authorization", ""), self.credentials)

    async def _push(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"code": 1004, "message": "Authen failed"}}, status=401)
        injected = await self._injected()
        if injected is not None:
            return injected
        try:
            body = await request.json()
            ids = body["audience"]["registration_id"]
            android = body["notification"]["android"]
            assert body["platform"] in ("all", ["android", "ios"]) and isinstance(ids, list) and 0 < len(ids) <= 1000
            assert isinstance(android["alert"], str) and android["alert"]
        except (ValueError, KeyError, TypeError, AssertionError):
            return web.json_response({"error": {"code": 1003, "message": "Parameter value is invalid"}}, status=400)
        self.requests.append(body)
        known = [i for i in ids if i not in self.behaviour.unregistered]
        if not known:
            return web.json_response(
                {"error": {"code": 1011, "message": "cannot find user by this audience"}}, status=400
            )
        msg_id = secrets.randbelow(10**12) + 10**11
        self._messages[msg_id] = set(ids)
        for token in known:
            self.deliver(Notification(token, android.get("title", ""), android["alert"], android.get("extras", {})))
        return web.json_response({"sendno": "0", "msg_id": str(msg_id)})

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"code": 1004, "message": "Authen failed"}}, status=401)
        body = await request.json()
        targets = self._messages.get(int(body.get("msg_id", 0)), set())
        report = {}
        for token in body.get("registration_ids", []):
            if token in self.behaviour.unregistered:
                report[token] = {"status": 2}
            elif token not in targets:
                report[token] = {"status": 3}
            else:
                report[token] = {"status": 1 if token in self.behaviour.offline else 0}
        return web.json_response(report)


def _google_error(status: int, reason: str, fcm_code: str | None = None) -> web.Response:
    details = (
        [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}] if fcm_code else []
    )
    return web.json_response(
        {"error": {"code": status, "message": reason, "status": reason, "details": details}}, status=status
    )


class FCMSimulator(SimulatedApp):
    def __init__(self, key_file: Path, ack_url: str, behaviour: PushBehaviour | None = None) -> None:
        super().__init__(ack_url, behaviour)
        self.account = ServiceAccount.load(key_file)
        private = json.loads(key_file.read_text())["private_key"]
        from cryptography.hazmat.primitives import serialization

        key: Any = serialization.load_pem_private_key(private.encode(), password=None)
        self._public_key = key.public_key()
        self.tokens_issued = 0
        self._access_tokens: set[str] = set()
        self.requests: list[dict[str, Any]] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)

    def failure(self, status: int) -> web.Response:
        reason = {429: "QUOTA_EXCEEDED", 401: "UNAUTHENTICATED", 503: "UNAVAILABLE"}.get(status, "INTERNAL")
        return _google_error(status, reason, reason if status in (429, 503, 500) else None)

    def revoke_tokens(self) -> None:
        """Forget issued access tokens (as when they expire)."""
        self._access_tokens.clear()

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")), self._public_key, algorithms=["RS256"], audience=self.account.token_uri
            )
        except jwt.PyJWTError as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        if claims.get("iss") != self.account.client_email or "firebase.messaging" not in claims.get("scope", ""):
            return web.json_response({"error": "invalid_grant"}, status=400)
        token = "ya29." + secrets.token_urlsafe(32)
        self._access_tokens.add(token)
        self.tokens_issued += 1
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    async def _send(self, request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self._access_tokens:
            return _google_error(401, "UNAUTHENTICATED")
        if request.match_info["project"] != self.account.project_id:
            return _google_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")
        injected = await self._injected()
        if injected is not None:
            return injected
        try:
            message = (await request.json())["message"]
            token = message["token"]
            notification = message["notification"]
            data = message.get("data", {})
            assert isinstance(token, str) and token and isinstance(notification["body"], str)
            assert all(isinstance(v, str) for v in data.values()), "data values must be strings"
        except (ValueError, KeyError, TypeError, AssertionError):
            return _google_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
        self.requests.append(message)
        if token in self.behaviour.unregistered:
            return _google_error(404, "NOT_FOUND", "UNREGISTERED")
        self.deliver(Notification(token, notification.get("title", ""), notification["body"], data))
        return web.json_response({"name": f"projects/{self.account.project_id}/messages/{secrets.randbelow(10**16)}"})
