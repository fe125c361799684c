"""Voice calls through Twilio's Calls API: the warning read out twice, "press 1 to confirm, 9 for help".

Each call carries its TwiML inline: a ``<Gather numDigits="1">`` wrapping two ``<Say>`` passes,
whose action URL, like the status callback URL, names the alert and the ordinal
(``?a=<alert>&o=<ordinal>``) under Twilio's signature.
"""

from __future__ import annotations

from twilio.twiml.voice_response import Gather, VoiceResponse

from broadcast.core.models import AckMethod, ChannelKind, EventKind, RecipientEvent
from broadcast.core.settings import Settings
from channels.base import (
    InboundRejected,
    InboundRequest,
    InboundResult,
    InboundRoute,
    OutboundMessage,
    SendResult,
)
from channels.twilio.account import callback_url, configuration_problems
from channels.twilio.sms import TwilioChannel

STATUS_PATH = "/hooks/twilio/voice/status"
GATHER_PATH = "/hooks/twilio/voice/gather"
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]

# CallStatus → (what it means, the code we record for it). Busy and no-answer carry SIP-like codes so a
# volunteer's list can say why a call did not get through.
STATUS_MAPPING: dict[str, tuple[EventKind | None, int | None]] = {
    "queued": (None, None),
    "initiated": (None, None),
    "ringing": (None, None),
    "in-progress": (EventKind.delivered, None),  # answered: the message is being read out
    "completed": (EventKind.delivered, None),
    "busy": (EventKind.failed, 486),
    "no-answer": (EventKind.failed, 480),
    "failed": (EventKind.failed, 500),
    "canceled": (EventKind.failed, 487),
}
DIGITS: dict[str, EventKind] = {"1": EventKind.acknowledged, "9": EventKind.needs_help}
THANKS = {"zh-CN": "已收到您的确认，谢谢。", "en-US": "Thank you, your confirmation is recorded."}
HELP_COMING = {
    "zh-CN": "已收到求助，社区工作人员会尽快联系您。",
    "en-US": "Help is on its way; your community will call you.",
}


def call_twiml(text: str, language: str, gather_url: str) -> str:
    """The TwiML of a warning call: the message twice, listening for one key press throughout."""
    response = VoiceResponse()
    gather = Gather(num_digits=1, action=gather_url, method="POST", timeout=8)
    gather.say(text, language=language)
    gather.pause(length=1)
    gather.say(text, language=language)
    response.append(gather)
    return str(response)


def _reply(text: str, language: str) -> str:
    response = VoiceResponse()
    response.say(text, language=language)
    response.hangup()
    return str(response)


class TwilioVoice(TwilioChannel):
    name = "twilio_voice"
    kind = ChannelKind.voice

    @classmethod
    def configuration_problems(cls, settings: Settings) -> list[str]:
        problems = configuration_problems(settings)
        if settings.twilio_configured and not (settings.twilio_voice_from or settings.twilio_from):
            problems.append("set BROADCAST_TWILIO_VOICE_FROM (a voice-capable number) to place calls")
        return problems

    def rate_limit(self) -> tuple[str, float, float] | None:
        rate = self.settings.voice_rate_per_second
        return (f"twilio-voice:{self.account.sid}", rate, 1.0 if rate > 0 else 0.0)

    async def send_one(self, message: OutboundMessage) -> SendResult:
        language = str(message.extra.get("language", "zh-CN"))
        english = {"l": "en"} if language.startswith("en") else {}
        gather_url = callback_url(
            self.settings, GATHER_PATH, message.alert_id, message.ordinal, message.round, **english
        )
        return await self.create(
            message.ordinal,
            lambda client: client.calls.create_async(
                to=message.address,
                from_=self.settings.twilio_voice_from or self.account.sender,
                twiml=call_twiml(message.text, language, gather_url),
                status_callback=callback_url(
                    self.settings, STATUS_PATH, message.alert_id, message.ordinal, message.round
                ),
                status_callback_event=STATUS_EVENTS,
                status_callback_method="POST",
                timeout=self.settings.voice_ring_seconds,
            ),
        )

    def routes(self) -> list[InboundRoute]:
        return [
            InboundRoute("POST", STATUS_PATH, self.parse_status),
            InboundRoute("POST", GATHER_PATH, self.parse_gather),
        ]

    def parse_status(self, request: InboundRequest) -> InboundResult:
        """Call progress: answered, completed, busy, no answer, failed."""
        self.authenticate(request)
        alert_id, ordinal = self.recipient(request)
        status = request.form.get("CallStatus", "")
        if status not in STATUS_MAPPING:
            raise InboundRejected(400, f"unknown CallStatus {status!r}")
        kind, code = STATUS_MAPPING[status]
        if kind is None:
            return InboundResult([])
        sip = request.form.get("SipResponseCode", "")
        event = RecipientEvent(
            alert_id=alert_id,
            ordinal=ordinal,
            kind=kind,
            channel=ChannelKind.voice,
            error_code=int(sip) if kind is EventKind.failed and sip.isdigit() else code,
            provider_ref=request.form.get("CallSid"),
            round=self.round_of(request),
        )
        return InboundResult([event])

    def parse_gather(self, request: InboundRequest) -> InboundResult:
        """A key the resident pressed during the call."""
        self.authenticate(request)
        alert_id, ordinal = self.recipient(request)
        digits = request.form.get("Digits", "")
        language = "en-US" if request.query.get("l") == "en" else "zh-CN"
        kind = DIGITS.get(digits[:1])
        if kind is None:
            # Any other key (or none): nothing to record; the call ends politely.
            return InboundResult([], body=_reply("", language), content_type="text/xml")
        event = RecipientEvent(
            alert_id=alert_id,
            ordinal=ordinal,
            kind=kind,
            channel=ChannelKind.voice,
            method=AckMethod.voice_key,
            provider_ref=request.form.get("CallSid"),
            round=self.round_of(request),
        )
        words = THANKS if kind is EventKind.acknowledged else HELP_COMING
        return InboundResult([event], body=_reply(words[language], language), content_type="text/xml")
