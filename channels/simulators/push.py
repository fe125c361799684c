"""JPush REST v3 and FCM HTTP v1, simulated, with the residents' app on the other end.

JPush (Basic appKey:masterSecret): the cid pool ``GET /v3/push/cid``; the batch single push ``POST
/v3/push/batch/regid/single`` (a ``pushlist`` of up to 1,000 notifications keyed by cids from the
pool, each with its own target), answering per cid a msg_id or an error, and once only per cid; the
single push ``POST /v3/push`` answering ``{"sendno", "msg_id"}``; and the report API ``GET
/v3/received/detail`` (delivery counts of up to 100 msg_ids).
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
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web

from channels.push.fcm import JWT_BEARER, ServiceAccount
from channels.push.jpush import BATCH_PATH, CID_PATH
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
    inject: list[int | str] = field(default_factory=list)  # next push answers: 429, 500, 503, "timeout", 401
    refuse: dict[str, int] = field(default_factory=dict)  # token → JPush error code its batch entry gets
    vip: bool = True  # the JPush app may use the batch API (and take up to 1,000 cids at once)
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
        self.app_key = app_key
        self.credentials = "Basic " + base64.b64encode(f"{app_key}:{master_secret}".encode()).decode()
        self.requests: list[dict[str, Any]] = []  # bodies of single pushes (/v3/push)
        self.batches: list[dict[str, Any]] = []  # bodies of batch single pushes the API accepted
        self.cid_requests = 0
        self._messages: dict[int, set[str]] = {}  # msg_id → its devices
        self._cid_pool: set[str] = set()  # issued and not yet pushed
        self._pushed: dict[str, int] = {}  # cid → the msg_id its first push got

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/push", self._push)
        app.router.add_get(CID_PATH, self._cid)
        app.router.add_post(BATCH_PATH, self._batch)
        app.router.add_get("/v3/received/detail", self._received)

    def failure(self, status: int) -> web.Response:
        code = {429: 2002, 401: 1004}.get(status, 1000)
        return _jpush_error(status, code, "simulated failure")

    def _authorised(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.headers.get("Authorization", ""), self.credentials)

    async def _refused(self, request: web.Request) -> web.Response | None:
        """A push request's answer before its body is read: wrong credentials, or an injected failure."""
        if not self._authorised(request):
            return _jpush_error(401, 1004, "Authen failed")
        return await self._injected()

    def _new_message(self, devices: set[str]) -> int:
        msg_id = secrets.randbelow(10**12) + 10**11
        self._messages[msg_id] = devices
        return msg_id

    async def _push(self, request: web.Request) -> web.Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
            ids = body["audience"]["registration_id"]
            android = body["notification"]["android"]
            assert body["platform"] in ("all", ["android", "ios"]) and isinstance(ids, list) and 0 < len(ids) <= 1000
            assert isinstance(android["alert"], str) and android["alert"]
        except (ValueError, KeyError, TypeError, AssertionError):
            return _jpush_error(400, 1003, "Parameter value is invalid")
        self.requests.append(body)
        known = [i for i in ids if i not in self.behaviour.unregistered]
        if not known:
            return _jpush_error(400, 1011, "cannot find user by this audience")
        msg_id = self._new_message(set(ids))
        for token in known:
            self.deliver(Notification(token, android.get("title", ""), android["alert"], android.get("extras", {})))
        return web.json_response({"sendno": "0", "msg_id": str(msg_id)})

    async def _cid(self, request: web.Request) -> web.Response:
        """The cid pool: ``count`` (1 to 1,000, at most 10 for an app without VIP rights) of ``{appkey}-{uuid}``."""
        if not self._authorised(request):
            return _jpush_error(401, 1004, "Authen failed")
        count, kind = request.query.get("count", "1"), request.query.get("type", "push")
        if not (count.isascii() and count.isdigit() and 1 <= int(count) <= 1000 and kind in ("push", "schedule")):
            return _jpush_error(400, 1003, "Parameter value is invalid")
        self.cid_requests += 1
        cids = [f"{self.app_key}-{uuid.uuid4()}" for _ in range(min(int(count), 1000 if self.behaviour.vip else 10))]
        self._cid_pool.update(cids)
        return web.json_response({"cidlist": cids})

    async def _batch(self, request: web.Request) -> web.Response:
        """Batch single push: per cid of the pushlist, its own notification to its own device."""
        refused = await self._refused(request)
        if refused is not None:
            return refused
        if not self.behaviour.vip:
            return _jpush_error(403, 2006, "non-VIP user")
        try:
            body = await request.json()
            pushlist = body["pushlist"]
            entries = [(cid, _batch_entry(entry)) for cid, entry in pushlist.items()]
            assert set(body) == {"pushlist"} and 0 < len(entries) <= 1000
            assert all(cid in self._cid_pool or cid in self._pushed for cid, _ in entries), "cid not from the pool"
        except KeyError:
            return _jpush_error(400, 1002, "Missing parameter")
        except _UnsupportedKey as exc:
            return _jpush_error(400, 1009, f"unsupported key {exc}")
        except (ValueError, TypeError, AttributeError, AssertionError):
            return _jpush_error(400, 1003, "Parameter value is invalid")
        self.batches.append(body)
        answer: dict[str, Any] = {}
        for cid, notification in entries:
            if cid in self._pushed:  # pushed before: the first push's answer, and no second notification
                answer[cid] = {"msg_id": self._pushed[cid]}
                continue
            token = notification.token
            code = self.behaviour.refuse.get(token) or (1011 if token in self.behaviour.unregistered else None)
            if code is not None:
                # As JPush's own example shows, an unknown target may come back with a msg_id and an error.
                error: dict[str, Any] = {"error": {"code": code, "message": "simulated refusal"}}
                answer[cid] = {"msg_id": self._new_message(set()), **error} if code == 1011 else error
                continue
            self._cid_pool.discard(cid)
            self._pushed[cid] = self._new_message({token})
            answer[cid] = {"msg_id": self._pushed[cid]}
            self.deliver(notification)
        # A JSON object has no order: the answer's is not the request's, only its cids tell.
        return web.json_response(dict(sorted(answer.items())))

    async def _received(self, request: web.Request) -> web.Response:
        """Delivery counts of up to 100 msg_ids: how many of each message's devices got it."""
        if not self._authorised(request):
            return _jpush_error(401, 1004, "Authen failed")
        ids = request.query.get("msg_ids", "").split(",")
        if not (0 < len(ids) <= 100 and all(i.isascii() and i.isdigit() for i in ids)):
            return _jpush_error(400, 1003, "Parameter value is invalid")
        gone = self.behaviour.offline | self.behaviour.unregistered
        report = []
        for msg_id in ids:
            got = len(self._messages.get(int(msg_id), set()) - gone)
            report.append({"msg_id": msg_id, "jpush_received": got, **dict.fromkeys(OTHER_COUNTS, 0)})
        return web.json_response(report)


class _UnsupportedKey(ValueError):
    """A push object carries a key the API does not know (JPush error 1009)."""


BATCH_ENTRY_KEYS = {"platform", "target", "notification", "message", "sms_message", "options", "callback"}
PLATFORMS = {"android", "ios", "quickapp", "hmos"}
OTHER_COUNTS = ("android_pns_sent", "android_pns_received", "ios_apns_sent", "ios_apns_received", "ios_msg_received")


def _batch_entry(entry: Any) -> Notification:
    """Check one pushlist entry as JPush does (required keys, known keys, value types); what it would show."""
    if not isinstance(entry, dict):
        raise TypeError("a pushlist entry is an object")
    unknown = set(entry) - BATCH_ENTRY_KEYS
    if unknown:
        raise _UnsupportedKey(sorted(unknown)[0])
    platform, target = entry["platform"], entry["target"]
    assert platform == "all" or (isinstance(platform, list) and platform and set(platform) <= PLATFORMS)
    assert isinstance(target, str) and target, "target is one registration id"
    notification = entry["notification"]
    android, ios = notification.get("android"), notification.get("ios")
    assert android or ios
    options = entry.get("options", {})
    assert isinstance(options.get("time_to_live", 0), int) and options.get("time_to_live", 0) >= 0
    assert isinstance(options.get("apns_production", True), bool)
    if android:
        assert isinstance(android["alert"], str) and android["alert"]
        assert isinstance(android.get("extras", {}), dict)
        return Notification(target, str(android.get("title", "")), android["alert"], android.get("extras", {}))
    alert = ios["alert"]
    title, text = (alert.get("title", ""), alert["body"]) if isinstance(alert, dict) else ("", alert)
    assert isinstance(text, str) and text and isinstance(ios.get("extras", {}), dict)
    return Notification(target, str(title), text, ios.get("extras", {}))


def _jpush_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


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
