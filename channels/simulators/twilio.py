"""A local server that speaks Twilio's Messages API (2010-04-01), for the demo, tests and benchmarks.

It accepts ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` as Twilio does (form fields,
Basic auth, 201 JSON shaped as in Twilio's OpenAPI description), then plays the network's part:
it POSTs status callbacks to each message's StatusCallback (queued → sent → delivered, or
undelivered with an error code), and for a configurable share of recipients an inbound reply to
the configured SMS webhook. Every callback is signed with X-Twilio-Signature as Twilio signs it.

It records what it received (``messages``, ``requests``) so tests assert on real wire traffic,
and it can be told to misbehave: latency, 429 / 5xx answers, timeouts, invalid numbers,
numbers that never receive.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import aiohttp
from aiohttp import web

from broadcast.segments import sms_cost
from channels.twilio.account import SIGNATURE_HEADER, sign

API_VERSION = "2010-04-01"
MAX_BODY = 1600


@dataclass
class TwilioBehaviour:
    """How the simulated network and residents behave."""

    reply_share: float = 0.7  # share of recipients who answer
    help_share: float = 0.03  # of those who answer, the share asking for help ("9")
    reply_delay: tuple[float, float] = (0.3, 3.0)  # seconds after delivery
    status_delay: tuple[float, float] = (0.05, 0.4)  # seconds between status callbacks
    latency: float = 0.0  # seconds before answering a create request
    invalid_numbers: set[str] = field(default_factory=set)  # create → 400, error 21211
    opted_out_numbers: set[str] = field(default_factory=set)  # create → 400, error 21610
    undeliverable_numbers: set[str] = field(default_factory=set)  # status 'undelivered', error 30003
    undeliverable_share: float = 0.0  # and this share of all numbers, chosen by hash
    inject: list[int | str] = field(default_factory=list)  # next create answers: 429, 500, 503, "timeout"
    reply_body: str = "1"
    help_body: str = "9"
    seed: int = 7
    send_status_callbacks: bool = True

    def _draw(self, purpose: str, phone: str) -> float:
        digest = hashlib.sha1(f"{self.seed}:{purpose}:{phone}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def undeliverable(self, phone: str) -> bool:
        return phone in self.undeliverable_numbers or self._draw("lost", phone) < self.undeliverable_share

    def replies(self, phone: str) -> str | None:
        """What this phone's owner answers, decided by a hash so runs repeat exactly."""
        draw = self._draw("reply", phone)
        if draw >= self.reply_share:
            return None
        return self.help_body if draw < self.reply_share * self.help_share else self.reply_body


@dataclass
class SimulatedMessage:
    sid: str
    to: str
    sender: str | None
    body: str
    status_callback: str | None
    form: dict[str, str]


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
        status=status,
    )


def _bound_port(site: web.TCPSite) -> int:
    """The port a site listens on (it asked for port 0: any free one)."""
    server: Any = site._server
    return int(server.sockets[0].getsockname()[1])


class TwilioSimulator:
    """The simulated Twilio account: one SID, one auth token, one inbound SMS webhook."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sms_webhook_url: str | None,
        behaviour: TwilioBehaviour | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.sms_webhook_url = sms_webhook_url
        self.behaviour = behaviour or TwilioBehaviour()
        self.messages: list[SimulatedMessage] = []
        self.received = Counter[str]()  # phone → messages accepted for it
        self.replies: dict[str, list[str]] = {}  # phone → replies our webhook accepted
        self.callback_failures = 0
        self.callbacks_delivered = 0
        self.rejected = Counter[int]()  # error code → count
        self._rng = random.Random(self.behaviour.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.on_message: Callable[[SimulatedMessage], None] | None = None

    # Server

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self._create_message)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: any free port); returns the base URL."""
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = _bound_port(site)
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def pending(self) -> int:
        """Callbacks and replies still to be sent."""
        return len(self._tasks)

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until every scheduled callback and reply has been sent."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{len(self._tasks)} simulated callbacks still pending")
            await asyncio.sleep(0.02)

    # Messages API

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.auth_token)

    async def _create_message(self, request: web.Request) -> web.Response:
        b = self.behaviour
        if b.latency:
            await asyncio.sleep(b.latency)
        if not self._authorised(request):
            return _error(401, 20003, "Authentication Error - invalid username")
        if request.match_info["sid"] != self.account_sid:
            return _error(404, 20404, "The requested resource was not found")
        if b.inject:
            injected = b.inject.pop(0)
            if injected == "timeout":
                await asyncio.sleep(3600)
            elif injected == 429:
                return _error(429, 20429, "Too Many Requests")
            else:
                return _error(int(injected), 20500, "Internal Server Error")
        form = {k: str(v) for k, v in (await request.post()).items()}
        to, body = form.get("To", ""), form.get("Body", "")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        if not to:
            return self._reject(400, 21604, "A 'To' phone number is required.")
        if not body:
            return self._reject(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return self._reject(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if not (sender or service):
            return self._reject(400, 21603, "A 'From' phone number is required.")
        if not to.startswith("+") or not to[1:].isdigit() or to in b.invalid_numbers:
            return self._reject(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in b.opted_out_numbers:
            return self._reject(400, 21610, "Attempt to send to unsubscribed recipient")
        validity = form.get("ValidityPeriod")
        if validity is not None and not (validity.isdigit() and 1 <= int(validity) <= 36000):
            return self._reject(400, 21609, "Invalid ValidityPeriod")
        sid = "SM" + secrets.token_hex(16)
        message = SimulatedMessage(sid, to, sender, body, form.get("StatusCallback"), form)
        self.messages.append(message)
        self.received[to] += 1
        if self.on_message is not None:
            self.on_message(message)
        self._spawn(self._network(message))
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        return web.json_response(
            {
                "account_sid": self.account_sid,
                "api_version": API_VERSION,
                "body": body,
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": sender,
                "messaging_service_sid": service,
                "num_media": "0",
                "num_segments": str(sms_cost(body).parts),
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
                "to": to,
                "uri": uri,
            },
            status=201,
        )

    def _reject(self, status: int, code: int, message: str) -> web.Response:
        self.rejected[code] += 1
        return _error(status, code, message)

    # The network's side

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pause(self, span: tuple[float, float]) -> None:
        low, high = span
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high))

    async def _network(self, message: SimulatedMessage) -> None:
        b = self.behaviour
        base = {
            "AccountSid": self.account_sid,
            "MessageSid": message.sid,
            "SmsSid": message.sid,
            "From": message.sender or "",
            "To": message.to,
            "ApiVersion": API_VERSION,
        }
        undeliverable = b.undeliverable(message.to)
        steps = ["sent", "undelivered"] if undeliverable else ["sent", "delivered"]
        if message.status_callback and b.send_status_callbacks:
            for status in steps:
                await self._pause(b.status_delay)
                params = {**base, "MessageStatus": status, "SmsStatus": status}
                if status == "undelivered":
                    params["ErrorCode"] = "30003"
                await self._post(message.status_callback, params)
        if undeliverable or not self.sms_webhook_url:
            return
        answer = b.replies(message.to)
        if answer is None:
            return
        await self._pause(b.reply_delay)
        sid = "SM" + secrets.token_hex(16)
        reply = {
            "AccountSid": self.account_sid,
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "From": message.to,
            "To": message.sender or "",
            "Body": answer,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
        }
        if await self._post(self.sms_webhook_url, reply):
            self.replies.setdefault(message.to, []).append(answer)

    async def _post(self, url: str, params: dict[str, str]) -> bool:
        """POST a signed webhook; a few retries on connection errors and 5xx, as a provider would."""
        assert self._session is not None
        headers = {SIGNATURE_HEADER: sign(self.auth_token, url, params)}
        for attempt in range(4):
            try:
                async with self._session.post(url, data=params, headers=headers) as response:
                    await response.read()
                    if response.status < 300:
                        self.callbacks_delivered += 1
                        return True
                    if response.status < 500:
                        self.callback_failures += 1
                        return False
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.2 * (attempt + 1))
        self.callback_failures += 1
        return False
