"""SMS through Twilio's Messages API, with the twilio library's asyncio client.

Each message's StatusCallback URL carries the alert, the recipient's ordinal and the escalation
round (``?a=<alert>&o=<ordinal>[&r=<round>]``); Twilio signs the whole URL, so a status callback
finds its recipient with no lookup table and cannot be forged without the auth token. The URL ends
with connection overrides (``#rc=5&rp=all``, ``BROADCAST_TWILIO_WEBHOOK_OVERRIDES``) asking Twilio to
retry a callback we could not store; a retry of one we stored changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

# The twilio library imports its API resources on first use; importing them with this module means a
# worker loads them once, before it forks, and not each batch's work horse again (a tenth of a batch).
from twilio.rest.api.v2010.account import AccountContext  # noqa: F401

from broadcast.core.models import ChannelKind, EventKind, RecipientEvent, ReplyEvent
from broadcast.core.settings import Settings
from channels.base import (
    Channel,
    Gate,
    InboundRejected,
    InboundRequest,
    InboundResult,
    InboundRoute,
    OutboundMessage,
    Outcome,
    SendResult,
    classify_http,
    send_concurrently,
)
from channels.twilio.account import (
    SIGNATURE_HEADER,
    TwilioAccount,
    callback_url,
    configuration_problems,
    loopback_only,
    signed_forms,
    twilio_account,
    verify,
)
from channels.twilio.http import TwilioHttpClient

STATUS_PATH = "/hooks/twilio/sms/status"
INBOUND_PATH = "/hooks/twilio/sms/inbound"
MAX_VALIDITY_SECONDS = 36_000  # Twilio's upper bound for ValidityPeriod

# MessageStatus → what it means for the recipient (None: still on its way, nothing to record)
STATUS_MAPPING: dict[str, EventKind | None] = {
    "accepted": None,
    "scheduled": None,
    "queued": None,
    "sending": None,
    "sent": None,  # handed to the carrier; we count 'sent' when Twilio accepted the request
    "delivered": EventKind.delivered,
    "read": EventKind.delivered,
    "undelivered": EventKind.failed,
    "failed": EventKind.failed,
    "canceled": EventKind.failed,
}

# Twilio error codes → outcome. Anything else: 5xx retryable, 429 throttled, other 4xx permanent.
ERROR_OUTCOMES: dict[int, Outcome] = {
    20429: Outcome.throttled,  # too many requests
    21611: Outcome.throttled,  # the sender's queue is full
    21610: Outcome.opted_out,  # the recipient replied STOP
    21211: Outcome.permanent,  # invalid 'To' number
    21214: Outcome.permanent,  # 'To' cannot be reached
    21612: Outcome.permanent,  # cannot route to this number
    21614: Outcome.permanent,  # 'To' is not a mobile number
    21408: Outcome.permanent,  # region not enabled
    20003: Outcome.bad_config,  # authentication failed
    20404: Outcome.bad_config,  # account not found
    21212: Outcome.bad_config,  # invalid 'From'
    21606: Outcome.bad_config,  # 'From' cannot send SMS
    21703: Outcome.bad_config,  # messaging service has no senders
}

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def classify(status: int, code: int | None) -> Outcome:
    """The outcome of a Twilio API error response."""
    known = ERROR_OUTCOMES.get(code) if code is not None else None
    return known or classify_http(status)


def status_callback_url(settings: Settings, alert_id: str, ordinal: int, round_: int = 0) -> str:
    return callback_url(settings, STATUS_PATH, alert_id, ordinal, round_)


async def create_message(client: Client, form: dict[str, object]) -> Any:
    """POST a message (Messages API form fields) through the twilio client; the new message's JSON.

    ``messages.create_async`` would also make a MessageInstance of the answer: thirty attributes and
    three RFC 2822 dates parsed, a tenth of the time a message costs us, to read one sid. The request
    goes the same way (the library's version, domain and client, our HTTP client), and an error
    answer raises the library's TwilioRestException just the same.
    """
    messages = client.api.v2010.account.messages
    payload = await messages._version.create_async(method="POST", uri=messages._uri, data=form)
    return _Created(payload["sid"])


class _Created:
    """What ``create`` needs of a created resource: its sid."""

    __slots__ = ("sid",)

    def __init__(self, sid: str) -> None:
        self.sid = sid


class TwilioChannel(Channel):
    """What Twilio's SMS and voice channels share: the account, the HTTP client, webhook checks."""

    transport_errors = (aiohttp.ClientError, TimeoutError, OSError)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.account: TwilioAccount = twilio_account(settings)
        self._http: TwilioHttpClient | None = None
        self._client: Client | None = None

    async def __aenter__(self) -> TwilioChannel:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.send_timeout_seconds),
            connector=aiohttp.TCPConnector(limit=self.settings.send_concurrency),
        )
        self._http = TwilioHttpClient(session, self.account.sid, self.account.auth_token)
        self._client = Client(self.account.sid, self.account.auth_token, http_client=self._http)
        self._client.api.base_url = self.account.api_base
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None

    def client(self) -> Client:
        assert self._client is not None, "use the channel as an async context manager"
        return self._client

    def authenticate(self, request: InboundRequest) -> None:
        """Refuse a request Twilio did not sign, or signed for another account."""
        if self.account.simulated and not (self.settings.simulator_webhooks_public or loopback_only(self.settings)):
            raise InboundRejected(
                403,
                "simulated provider webhooks are accepted only while the service is on loopback; "
                "set BROADCAST_SIMULATOR_WEBHOOKS_PUBLIC=true to accept them here",
            )
        signature = request.headers.get(SIGNATURE_HEADER)
        token = self.account.auth_token
        if not verify(token, signed_forms(request.url, self.settings), request.form, signature):
            raise InboundRejected(403, "missing or wrong X-Twilio-Signature")
        if request.form.get("AccountSid") != self.account.sid:
            raise InboundRejected(403, "the request is for another Twilio account")

    async def create(self, ordinal: int, request: Callable[[Client], Awaitable[Any]]) -> SendResult:
        """Make one create request (a message, a call) and say what became of it."""
        try:
            # The twilio library sets no timeout of its own; our session's (send_timeout_seconds) bounds
            # every request it makes, so no per-call timer is needed here.
            created = await request(self.client())
        except TwilioRestException as exc:
            return SendResult(ordinal, classify(exc.status, exc.code), error_code=exc.code, detail=exc.msg)
        except self.transport_errors as exc:
            return SendResult(ordinal, Outcome.retryable, detail=f"{type(exc).__name__}: {exc}")
        return SendResult(ordinal, Outcome.accepted, provider_ref=created.sid)

    async def send_one(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError

    def send(self, messages: Sequence[OutboundMessage], gate: Gate) -> AsyncIterator[SendResult]:
        return send_concurrently(messages, self.send_one, gate, self.settings.send_concurrency)

    @staticmethod
    def recipient(request: InboundRequest) -> tuple[str, int]:
        """The (alert, ordinal) a callback URL names."""
        alert_id = request.query.get("a", "")
        ordinal = request.query.get("o", "")
        if not alert_id.isdigit() or not ordinal.isdigit():
            raise InboundRejected(400, "the callback URL lacks the alert and ordinal")
        return alert_id, int(ordinal)

    @staticmethod
    def round_of(request: InboundRequest) -> int:
        """The escalation round a callback URL names (0: the alert itself)."""
        text = request.query.get("r", "0")
        if len(text) != 1 or not text.isdigit():
            raise InboundRejected(400, "the callback URL names no valid round")
        return int(text)


class TwilioSMS(TwilioChannel):
    name = "twilio_sms"
    kind = ChannelKind.sms

    @classmethod
    def configuration_problems(cls, settings: Settings) -> list[str]:
        return configuration_problems(settings)

    def rate_limit(self) -> tuple[str, float, float] | None:
        return (f"twilio:{self.account.sid}", self.settings.sms_rate_per_second, self.settings.sms_rate_burst)

    async def send_one(self, message: OutboundMessage) -> SendResult:
        form: dict[str, object] = {"To": message.address, "Body": message.text}
        if self.account.messaging_service_sid:
            form["MessagingServiceSid"] = self.account.messaging_service_sid
        else:
            form["From"] = self.account.sender
        if message.ordinal >= 0:  # messages to volunteers carry no recipient of the roster to report on
            form["StatusCallback"] = status_callback_url(
                self.settings, message.alert_id, message.ordinal, message.round
            )
        if message.validity_seconds:
            form["ValidityPeriod"] = max(1, min(MAX_VALIDITY_SECONDS, message.validity_seconds))
        return await self.create(message.ordinal, lambda client: create_message(client, form))

    # Inbound

    def routes(self) -> list[InboundRoute]:
        return [
            InboundRoute("POST", STATUS_PATH, self.parse_status),
            InboundRoute("POST", INBOUND_PATH, self.parse_inbound),
        ]

    def parse_status(self, request: InboundRequest) -> InboundResult:
        """A delivery report for one message we sent."""
        self.authenticate(request)
        alert_id, ordinal = self.recipient(request)
        status = request.form.get("MessageStatus") or request.form.get("SmsStatus") or ""
        if status not in STATUS_MAPPING:
            raise InboundRejected(400, f"unknown MessageStatus {status!r}")
        kind = STATUS_MAPPING[status]
        if kind is None:
            return InboundResult([])
        code_text = request.form.get("ErrorCode", "")
        event = RecipientEvent(
            alert_id=alert_id,
            ordinal=ordinal,
            kind=kind,
            channel=ChannelKind.sms,
            error_code=int(code_text) if code_text.isdigit() else None,
            provider_ref=request.form.get("MessageSid"),
            round=self.round_of(request),
        )
        return InboundResult([event])

    def parse_inbound(self, request: InboundRequest) -> InboundResult:
        """A text a resident sent to our number (a confirmation, or a call for help)."""
        self.authenticate(request)
        sender = request.form.get("From", "")
        if not sender:
            raise InboundRejected(400, "an inbound message needs From")
        event = ReplyEvent(
            channel=ChannelKind.sms,
            from_address=sender,
            body=request.form.get("Body", "")[:1600],
            provider_ref=request.form.get("MessageSid"),
        )
        return InboundResult([event], body=EMPTY_TWIML, content_type="text/xml")
