"""Voice calls: who is called, what they hear, what their key presses and call outcomes record."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from audiences.population import Population
from broadcast.core.context import Context
from broadcast.core.models import ChannelKind, EventKind
from broadcast.running.worker import drain
from channels.base import InboundRejected, InboundRequest
from channels.twilio.account import SIGNATURE_HEADER, sign, twilio_account
from channels.twilio.voice import GATHER_PATH, STATUS_PATH, TwilioVoice
from tests.conftest import STREET, Stack
from tests.helpers import issue, progress, texts_to


def test_voice_first_residents_are_called_and_their_keys_count(
    ctx: Context, population: Population, stack: Stack
) -> None:
    voice_first = [r for r in population.residents if r.channels[0] is ChannelKind.voice]
    others = [r for r in population.residents if r.channels[0] is not ChannelKind.voice]
    assert 20 < len(voice_first) < 150
    busy = voice_first[0].phone
    assert busy is not None
    stack.sim.behaviour.busy_numbers.add(busy)

    alert = issue(ctx, [STREET], channels=[ChannelKind.voice, ChannelKind.sms])
    drain(ctx)
    stack.settle()
    drain(ctx)  # the busy line's fallback batch
    stack.settle()

    assert set(stack.sim.called) == {r.phone for r in voice_first}, "those who prefer voice are called"
    texted = set(texts_to(stack.sim, population))
    assert texted == {r.phone for r in others} | {busy}, "the rest get SMS; busy falls back"

    call = next(c for c in stack.sim.calls if c.to != busy)
    root = ElementTree.fromstring(call.twiml)
    gather = root.find("Gather")
    assert gather is not None and gather.get("numDigits") == "1"
    says = gather.findall("Say")
    assert len(says) == 2 and says[0].text == says[1].text, "the message is said twice"
    assert says[0].get("language") in {"zh-CN", "en-US"}
    assert "按1" in (says[0].text or "") or "Press 1" in (says[0].text or "")
    assert set(call.form["StatusCallbackEvent"].split()) == {"initiated", "ringing", "answered", "completed"}
    assert call.form["Timeout"] == "30"

    pressed = {c.to: c.pressed for c in stack.sim.calls if c.pressed}
    assert pressed, "some residents pressed a key"
    report = progress(ctx, alert.id)
    voice = report["channels"]["voice"]
    answered = sum(1 for c in stack.sim.calls if c.outcome == "completed")
    assert voice["delivered"] == answered == len(voice_first) - 1
    assert voice["failed"] == 1
    phones = {r.phone for r in population.residents}
    sms_confirmed = sum(1 for phone, bodies in stack.sim.replies.items() if phone in phones and "1" in bodies)
    sms_help = sum(1 for phone, bodies in stack.sim.replies.items() if phone in phones and "9" in bodies)
    keys_confirmed = sum(1 for d in pressed.values() if d == "1")
    keys_help = sum(1 for d in pressed.values() if d == "9")
    assert report["totals"]["confirmed"] == sms_confirmed + keys_confirmed
    assert report["totals"]["needs_help"] == sms_help + keys_help


def _request(
    ctx: Context, path: str, form: dict[str, str], query: str = "?a=1&o=3", token: str | None = None
) -> InboundRequest:
    account = twilio_account(ctx.settings)
    url = ctx.settings.public_url + path + query
    signature = sign(token or account.auth_token, url, form)
    return InboundRequest(
        "POST", url, {SIGNATURE_HEADER: signature}, b"", form, dict(p.split("=") for p in query[1:].split("&"))
    )


def _base(ctx: Context) -> dict[str, str]:
    return {"AccountSid": twilio_account(ctx.settings).sid, "CallSid": "CA" + "0" * 32}


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        ("initiated", None, None),
        ("ringing", None, None),
        ("in-progress", EventKind.delivered, None),
        ("completed", EventKind.delivered, None),
        ("busy", EventKind.failed, 486),
        ("no-answer", EventKind.failed, 480),
        ("failed", EventKind.failed, 500),
    ],
)
def test_call_status_callbacks(ctx: Context, status: str, kind: EventKind | None, code: int | None) -> None:
    result = TwilioVoice(ctx.settings).parse_status(_request(ctx, STATUS_PATH, {**_base(ctx), "CallStatus": status}))
    if kind is None:
        assert result.events == []
    else:
        (event,) = result.events
        assert (event.kind, event.error_code, event.ordinal) == (kind, code, 3)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("digits", "kind", "spoken"),
    [("1", EventKind.acknowledged, "谢谢"), ("9", EventKind.needs_help, "尽快联系您"), ("5", None, ""), ("", None, "")],
)
def test_key_presses(ctx: Context, digits: str, kind: EventKind | None, spoken: str) -> None:
    result = TwilioVoice(ctx.settings).parse_gather(_request(ctx, GATHER_PATH, {**_base(ctx), "Digits": digits}))
    assert result.content_type == "text/xml" and "<Hangup" in result.body
    if kind is None:
        assert result.events == []
    else:
        (event,) = result.events
        assert event.kind is kind  # type: ignore[union-attr]
        assert spoken in result.body


@pytest.mark.parametrize(
    ("form", "query", "token", "status"),
    [
        ({"CallStatus": "completed"}, "?a=1&o=3", "wrong-token", 403),
        ({"CallStatus": "teleported"}, "?a=1&o=3", None, 400),
        ({"CallStatus": "completed"}, "?a=1&o=x", None, 400),
    ],
)
def test_bad_voice_callbacks_are_refused(
    ctx: Context, form: dict[str, str], query: str, token: str | None, status: int
) -> None:
    with pytest.raises(InboundRejected) as refused:
        TwilioVoice(ctx.settings).parse_status(_request(ctx, STATUS_PATH, {**_base(ctx), **form}, query, token))
    assert refused.value.status == status
