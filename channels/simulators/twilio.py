"""Twilio's Messages and Calls APIs (2010-04-01), simulated: the provider, the network and the residents.

Messages: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` as Twilio takes it (form
fields, Basic auth, 201 JSON shaped as in Twilio's OpenAPI description); then status callbacks to
each message's StatusCallback (sent → delivered, or undelivered with error 30003) and, for a share
of recipients, an inbound reply to the SMS webhook.

Calls: ``POST …/Calls.json`` with inline TwiML; then call progress callbacks (the events asked for in
StatusCallbackEvent, and always the final one), and for a share of those who answer a key press
POSTed to the ``<Gather>`` action URL found in the TwiML.

Every request to our webhooks is signed with X-Twilio-Signature as Twilio signs it (over the URL it
requests; whether Twilio includes the overrides' fragment is not documented, and the service accepts
both), and retried as
the URL's connection overrides ask (``#rc=5&rp=all``: up to five retries on any failure, within
``tt`` milliseconds, 15 s by default); without them, once on a failed connection only, Twilio's
default. Twilio does not document how it spaces retries: the simulator waits 0.5 s, 1 s, 2 s …
What was received is recorded (``messages``, ``calls``) so tests assert on real wire traffic, and
counted for anyone over HTTP (``GET /_simulator/twilio``); misbehaviour is injectable: latency,
429 / 5xx answers (a share of them, or the next few), timeouts, invalid numbers, numbers that never
receive, lines that are busy or never answered. Its knobs can be given when ``broadcast serve``
starts it (``BROADCAST_SIMULATOR_TWILIO``, JSON) or changed while it runs
(``POST /_simulator/twilio/knobs``).

Capacity: a real account carries so many messages a second. Twilio takes what comes faster into
the sender's queue and sends it on at that rate; it refuses a create only when the queue holds more
than its limit (four hours' worth), and then answers 429. With ``capacity`` set the simulator does
the same: each accepted message leaves at ``capacity`` a second (``last_departure`` is when the last
one will have left), and while more than ``capacity_queue_seconds`` of messages wait, creates are
answered 429 (error 20429). A queue of (almost) nothing is a provider that refuses whatever it
cannot send at once. Accepted messages are counted per 10 ms (``timeline``), so a benchmark can see
the rate the provider was offered.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import random
import secrets
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from broadcast.core.segments import sms_cost
from channels.simulators import HANG_SECONDS, SimulatedProvider
from channels.twilio.account import SIGNATURE_HEADER, sign

API_VERSION = "2010-04-01"
MAX_BODY = 1600


@dataclass
class TwilioBehaviour:
    """How the simulated network and residents behave."""

    reply_share: float = 0.7  # share of recipients who answer (SMS reply, or a key press on a call)
    help_share: float = 0.03  # of those who answer, the share asking for help ("9")
    reply_delay: tuple[float, float] = (0.3, 3.0)  # seconds after delivery
    status_delay: tuple[float, float] = (0.05, 0.4)  # seconds between status callbacks
    latency: float = 0.0  # seconds before answering a create request
    invalid_numbers: set[str] = field(default_factory=set)  # create → 400, error 21211
    opted_out_numbers: set[str] = field(default_factory=set)  # create → 400, error 21610
    undeliverable_numbers: set[str] = field(default_factory=set)  # SMS status 'undelivered', error 30003
    undeliverable_share: float = 0.0  # and this share of all numbers, chosen by hash
    busy_numbers: set[str] = field(default_factory=set)  # calls end 'busy'
    unanswered_numbers: set[str] = field(default_factory=set)  # calls end 'no-answer'
    inject: list[int | str] = field(default_factory=list)  # next create answers: 429, 500, 503, "timeout"
    reply_body: str = "1"
    help_body: str = "9"
    seed: int = 7
    send_status_callbacks: bool = True
    keep_messages: bool = True  # False: count messages without keeping each one (long benchmark runs)
    capacity: float = 0.0  # messages a second the account sends on; 0: no limit
    capacity_queue_seconds: float = 4 * 3600.0  # backlog queued before creates are answered 429
    error_share: float = 0.0  # share of creates answered 500 (error 20500), at random
    refuse_share: float = 0.0  # share of creates answered 429 (error 20429), at random

    # Knobs that can be set from outside (serve's settings, the knobs endpoint): plain values only.
    KNOBS = (
        "reply_share",
        "help_share",
        "latency",
        "undeliverable_share",
        "send_status_callbacks",
        "keep_messages",
        "capacity",
        "capacity_queue_seconds",
        "error_share",
        "refuse_share",
        "seed",
    )

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any], base: TwilioBehaviour | None = None) -> TwilioBehaviour:
        """A behaviour with ``knobs`` set (ValueError naming a knob that is not one, or a bad value)."""
        unknown = sorted(set(knobs) - set(cls.KNOBS))
        if unknown:
            raise ValueError(f"unknown simulator knob(s) {', '.join(unknown)}; known: {', '.join(cls.KNOBS)}")
        values: dict[str, Any] = {}
        for name, value in knobs.items():
            kind = type(getattr(cls(), name))
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f"simulator knob {name} must be true or false")
            if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ValueError(f"simulator knob {name} must be a number of at least 0")
            values[name] = kind(value)
        return dataclasses.replace(base or cls(), **values)

    def _draw(self, purpose: str, phone: str) -> float:
        digest = hashlib.sha1(f"{self.seed}:{purpose}:{phone}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def undeliverable(self, phone: str) -> bool:
        return phone in self.undeliverable_numbers or self._draw("lost", phone) < self.undeliverable_share

    def replies(self, phone: str) -> str | None:
        """What this phone's owner answers ("1", "9" or nothing), decided by a hash so runs repeat exactly."""
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
    form: dict[str, str]


@dataclass
class SimulatedCall:
    sid: str
    to: str
    sender: str
    twiml: str
    form: dict[str, str]
    outcome: str = ""  # final CallStatus
    pressed: str | None = None  # the key our Gather endpoint accepted
    responses: list[str] = field(default_factory=list)  # TwiML our endpoints answered


class Capacity:
    """Messages leave one after another at ``per_second``; a message is queued while fewer than
    ``queue_seconds`` of them wait, else refused."""

    def __init__(self, per_second: float, queue_seconds: float = 4 * 3600.0) -> None:
        self.interval = 1.0 / per_second
        self.queue_seconds = queue_seconds
        self.tat = 0.0  # when the last queued message will have left (the simulator's monotonic clock)

    def admit(self, now: float) -> float | None:
        """Queue one message: the seconds until it leaves, or None when the queue is full."""
        tat = max(self.tat, now)
        if tat - now >= self.queue_seconds:
            return None
        self.tat = tat + self.interval
        return self.tat - now


TIMELINE_BUCKETS_PER_SECOND = 100


def twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
        status=status,
    )


def _now() -> str:
    return formatdate(usegmt=True).replace("GMT", "+0000")


class TwilioSimulator(SimulatedProvider):
    """The simulated Twilio account: one SID, one auth token, one inbound SMS webhook."""

    def __init__(
        self, account_sid: str, auth_token: str, sms_webhook_url: str | None, behaviour: TwilioBehaviour | None = None
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.sms_webhook_url = sms_webhook_url
        self.behaviour = behaviour or TwilioBehaviour()
        self.messages: list[SimulatedMessage] = []
        self.calls: list[SimulatedCall] = []
        self.received = Counter[str]()  # phone → messages accepted for it
        self.called = Counter[str]()  # phone → calls placed to it
        self.replies: dict[str, list[str]] = {}  # phone → SMS replies our webhook accepted
        self.callback_failures = 0
        self.callbacks_delivered = 0
        self.rejected = Counter[int]()  # error code → count
        self.created = 0  # messages accepted
        self.parts = 0  # their SMS parts
        self.timeline = Counter[int]()  # 10 ms bucket of time.time() → messages accepted in it
        self.parts_timeline = Counter[int]()  # … and their parts
        self.capacity = (
            Capacity(self.behaviour.capacity, self.behaviour.capacity_queue_seconds)
            if self.behaviour.capacity
            else None
        )
        self.last_departure = 0.0  # time.time() when the last accepted message will have left
        self.callback_retries = 0  # webhook requests sent again after a failure
        self.replies_failed = 0  # replies our webhook never answered 2xx, retries and all
        self._rng = random.Random(self.behaviour.seed)

    def add_routes(self, app: web.Application) -> None:
        base = f"/{API_VERSION}/Accounts/{{sid}}"
        app.router.add_post(f"{base}/Messages.json", self._guarded(self._create_message, metered=True))
        app.router.add_post(f"{base}/Calls.json", self._guarded(self._create_call))
        app.router.add_get("/_simulator/twilio", self._counts)
        app.router.add_get("/_simulator/twilio/received", self._received)
        app.router.add_post("/_simulator/twilio/knobs", self._set_knobs)

    def set_behaviour(self, behaviour: TwilioBehaviour) -> None:
        """Behave so from now on (capacity starts afresh when it changes)."""
        if behaviour.capacity != self.behaviour.capacity:
            self.capacity = (
                Capacity(behaviour.capacity, behaviour.capacity_queue_seconds) if behaviour.capacity else None
            )
        self.behaviour = behaviour

    def counts(self) -> dict[str, Any]:
        """What the simulated provider and residents did so far, in numbers."""
        return {
            "created": self.created,
            "parts": self.parts,
            "rejected": {str(code): n for code, n in self.rejected.items()},
            "phones": len(self.received),
            "duplicates": sum(n - 1 for n in self.received.values() if n > 1),
            "calls": len(self.calls),
            "replies": sum(len(r) for r in self.replies.values()),
            "replies_confirming": sum(r.count(self.behaviour.reply_body) for r in self.replies.values()),
            "phones_confirming": sum(self.behaviour.reply_body in r for r in self.replies.values()),
            "replies_asking_help": sum(r.count(self.behaviour.help_body) for r in self.replies.values()),
            "replies_failed": self.replies_failed,
            "callbacks_delivered": self.callbacks_delivered,
            "callback_failures": self.callback_failures,
            "callback_retries": self.callback_retries,
            "pending": self.pending,
            "last_departure": self.last_departure,
            "knobs": {name: getattr(self.behaviour, name) for name in TwilioBehaviour.KNOBS},
        }

    async def _counts(self, request: web.Request) -> web.Response:
        counts = self.counts()
        if request.query.get("timeline"):  # messages accepted per 10 ms: [[bucket of time.time() × 100, n], …]
            counts["timeline"] = sorted(self.timeline.items())
        return web.json_response(counts)

    async def _received(self, request: web.Request) -> web.Response:
        """Per phone: messages accepted (kept only while ``keep_messages``), and its replies our webhook took."""
        return web.json_response({"messages": dict(self.received), "replies": self.replies})

    async def _set_knobs(self, request: web.Request) -> web.Response:
        try:
            knobs = await request.json()
            if not isinstance(knobs, dict):
                raise ValueError("the body must be a JSON object of knobs")
            self.set_behaviour(TwilioBehaviour.from_knobs(knobs, self.behaviour))
        except ValueError as exc:
            return web.json_response({"error": {"message": str(exc)}}, status=400)
        return web.json_response(self.counts()["knobs"])

    # The API side

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.auth_token)

    def _guarded(
        self, handler: Callable[[web.Request, dict[str, str]], Awaitable[web.Response]], metered: bool = False
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Latency, authentication, capacity and injected failures, common to every create endpoint."""

        async def guarded(request: web.Request) -> web.Response:
            b = self.behaviour
            if b.latency:
                await asyncio.sleep(b.latency)
            if not self._authorised(request):
                return twilio_error(401, 20003, "Authentication Error - invalid username")
            if request.match_info["sid"] != self.account_sid:
                return twilio_error(404, 20404, "The requested resource was not found")
            if b.inject or (b.error_share and self._rng.random() < b.error_share):
                injected = b.inject.pop(0) if b.inject else 500
                if injected == "timeout":
                    await asyncio.sleep(HANG_SECONDS)
                if injected == 429:
                    return self._reject(429, 20429, "Too Many Requests")
                return self._reject(int(injected), 20500, "Internal Server Error")
            if b.refuse_share and self._rng.random() < b.refuse_share:
                return self._reject(429, 20429, "Too Many Requests")
            if metered and self.capacity is not None:
                wait = self.capacity.admit(time.monotonic())
                if wait is None:
                    return self._reject(429, 20429, "Too Many Requests")
                self.last_departure = max(self.last_departure, time.time() + wait)
            posted = await request.post()
            form = {k: " ".join(str(v) for v in posted.getall(k)) for k in set(posted.keys())}
            if not form.get("To"):
                return self._reject(400, 21604, "A 'To' phone number is required.")
            to = form["To"]
            if not to.startswith("+") or not to[1:].isdigit() or to in b.invalid_numbers:
                return self._reject(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            return await handler(request, form)

        return guarded

    def _reject(self, status: int, code: int, message: str) -> web.Response:
        self.rejected[code] += 1
        return twilio_error(status, code, message)

    async def _create_message(self, request: web.Request, form: dict[str, str]) -> web.Response:
        to, body = form["To"], form.get("Body", "")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        if to in self.behaviour.opted_out_numbers:  # STOP applies to messages, not calls
            return self._reject(400, 21610, "Attempt to send to unsubscribed recipient")
        if not body:
            return self._reject(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return self._reject(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if not (sender or service):
            return self._reject(400, 21603, "A 'From' phone number is required.")
        validity = form.get("ValidityPeriod")
        if validity is not None and not (validity.isdigit() and 1 <= int(validity) <= 36000):
            return self._reject(400, 21609, "Invalid ValidityPeriod")
        sid = "SM" + secrets.token_hex(16)
        message = SimulatedMessage(sid, to, sender, body, form)
        parts = sms_cost(body).parts
        self.created += 1
        self.parts += parts
        bucket = int(time.time() * TIMELINE_BUCKETS_PER_SECOND)
        self.timeline[bucket] += 1
        self.parts_timeline[bucket] += parts
        if self.behaviour.keep_messages:
            self.messages.append(message)
            self.received[to] += 1
        if self.behaviour.send_status_callbacks or self.behaviour.reply_share > 0:
            self.spawn(self._sms_network(message))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        return web.json_response(
            {
                "account_sid": self.account_sid,
                "api_version": API_VERSION,
                "body": body,
                "date_created": _now(),
                "date_sent": None,
                "date_updated": _now(),
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": sender,
                "messaging_service_sid": service,
                "num_media": "0",
                "num_segments": str(parts),
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

    async def _create_call(self, request: web.Request, form: dict[str, str]) -> web.Response:
        to, sender = form["To"], form.get("From", "")
        if not sender:
            return self._reject(400, 21213, "A 'From' phone number is required.")
        twiml = form.get("Twiml", "")
        if not (twiml or form.get("Url") or form.get("ApplicationSid")):
            return self._reject(400, 21205, "Url, Twiml or ApplicationSid is required.")
        if twiml:
            try:
                ElementTree.fromstring(twiml)
            except ElementTree.ParseError:
                return self._reject(400, 12100, "Document parse failure")
        sid = "CA" + secrets.token_hex(16)
        call = SimulatedCall(sid, to, sender, twiml, form)
        self.calls.append(call)
        self.called[to] += 1
        self.spawn(self._call_network(call))
        return web.json_response(
            {
                "account_sid": self.account_sid,
                "api_version": API_VERSION,
                "date_created": _now(),
                "date_updated": _now(),
                "direction": "outbound-api",
                "from": sender,
                "from_formatted": sender,
                "sid": sid,
                "status": "queued",
                "to": to,
                "to_formatted": to,
                "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}.json",
            },
            status=201,
        )

    # The network's side

    async def _pause(self, span: tuple[float, float]) -> None:
        low, high = span
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high))

    async def _sms_network(self, message: SimulatedMessage) -> None:
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
        callback = message.form.get("StatusCallback")
        if callback and b.send_status_callbacks:
            for status in ("sent", "undelivered") if undeliverable else ("sent", "delivered"):
                await self._pause(b.status_delay)
                params = {**base, "MessageStatus": status, "SmsStatus": status}
                if status == "undelivered":
                    params["ErrorCode"] = "30003"
                await self.post(callback, params)
        answer = b.replies(message.to)
        if undeliverable or not self.sms_webhook_url or answer is None:
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
        if (await self.post(self.sms_webhook_url, reply)) is not None:
            self.replies.setdefault(message.to, []).append(answer)
        else:
            self.replies_failed += 1

    async def _call_network(self, call: SimulatedCall) -> None:
        b = self.behaviour
        callback = call.form.get("StatusCallback")
        asked = set(call.form.get("StatusCallbackEvent", "").split()) or {"completed"}
        base = {
            "AccountSid": self.account_sid,
            "CallSid": call.sid,
            "From": call.sender,
            "To": call.to,
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
        }

        async def progress(event: str, status: str, **extra: str) -> None:
            await self._pause(b.status_delay)
            if callback and b.send_status_callbacks and (event in asked or event == "completed"):
                await self.post(
                    callback, {**base, "CallStatus": status, "CallbackSource": "call-progress-events", **extra}
                )

        await progress("initiated", "initiated")
        await progress("ringing", "ringing")
        if call.to in b.busy_numbers:
            call.outcome = "busy"
            await progress("completed", "busy", SipResponseCode="486")
            return
        if call.to in b.unanswered_numbers or b.undeliverable(call.to):
            call.outcome = "no-answer"
            await progress("completed", "no-answer", SipResponseCode="480")
            return
        await progress("answered", "in-progress")
        digit = b.replies(call.to)
        action = _gather_action(call.twiml)
        if digit is not None and action:
            await self._pause(b.reply_delay)
            answer = await self.post(action, {**base, "CallStatus": "in-progress", "Digits": digit})
            if answer is not None:
                call.pressed = digit
                call.responses.append(answer)
        call.outcome = "completed"
        await progress("completed", "completed", CallDuration="35")

    async def post(self, url: str, params: dict[str, str]) -> str | None:
        """POST a signed webhook as Twilio would, retried as the URL's connection overrides ask; the
        body of the answer, or None when it never got a 2xx."""
        assert self.session is not None, "start the simulator first"
        target, _, fragment = url.partition("#")
        policy = RetryPolicy.parse(fragment)
        headers = {SIGNATURE_HEADER: sign(self.auth_token, target, params)}  # the URL it requests
        deadline = time.monotonic() + policy.total_seconds
        for attempt in range(policy.retries + 1):
            if attempt:
                self.callback_retries += 1
            try:
                async with self.session.post(target, data=params, headers=headers) as response:
                    body = await response.text()
                    if response.status < 300:
                        self.callbacks_delivered += 1
                        return body
                    failure = "4xx" if response.status < 500 else "5xx"
            except (aiohttp.ClientConnectionError, OSError):
                failure = "ct"
            except TimeoutError:
                failure = "rt"
            pause = 0.5 * 2**attempt
            if failure not in policy.on or time.monotonic() + pause > deadline:
                break
            await asyncio.sleep(pause)
        self.callback_failures += 1
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Twilio's webhook connection overrides that decide retries: ``rc`` retries at most (0-5, default
    1) on the failures ``rp`` names (4xx, 5xx, ct, rt or all; default ct), within ``tt`` ms (15000)."""

    retries: int = 1
    on: frozenset[str] = frozenset({"ct"})
    total_seconds: float = 15.0

    @classmethod
    def parse(cls, fragment: str) -> RetryPolicy:
        knobs = dict(parse_qsl(fragment))
        retries = min(5, max(0, int(knobs["rc"]))) if knobs.get("rc", "").isdigit() else 1
        policy = set(knobs.get("rp", "ct").split(","))
        on = frozenset({"4xx", "5xx", "ct", "rt"}) if "all" in policy else frozenset(policy)
        total = min(15000, max(100, int(knobs["tt"]))) / 1000 if knobs.get("tt", "").isdigit() else 15.0
        return cls(retries, on, total)


def _gather_action(twiml: str) -> str | None:
    """The action URL of the first <Gather> in a TwiML document."""
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError:
        return None
    gather = root.find(".//Gather")
    return gather.get("action") if gather is not None else None
