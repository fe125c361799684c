"""App push: JPush and FCM against their simulators, the app's confirmation, and every error class."""

from __future__ import annotations

import asyncio
import json

import pytest

from audiences.population import Population
from audiences.residents import Resident
from broadcast.core.context import Context
from broadcast.core.keys import as_text
from broadcast.core.models import ChannelKind
from broadcast.core.settings import Settings
from broadcast.core.tokens import app_ack_token
from broadcast.running.worker import drain
from channels.base import OpenGate, OutboundMessage, Outcome
from channels.push.fcm import FCM
from channels.push.jpush import JPush
from tests.conftest import STREET, Stack
from tests.helpers import issue, progress, request_json, texts_to

MIXED = [ChannelKind.push, ChannelKind.sms, ChannelKind.voice]


def _stored(ctx: Context, external_id: str) -> Resident:
    rid = as_text(ctx.redis.hget(ctx.keys.resident_by_external(external_id), external_id))
    return Resident.from_record(ctx.redis.hget(ctx.keys.resident_bucket(int(rid)), rid) or b"")


def _run_alert(ctx: Context, stack: Stack) -> str:
    alert = issue(ctx, [STREET], channels=MIXED)
    for _ in range(3):  # batches, then fallbacks and delivery reports, then their fallbacks
        drain(ctx)
        stack.settle()
    return alert.id


@pytest.mark.parametrize("provider", ["jpush", "fcm"])
def test_mixed_population_reaches_everyone_in_their_order(
    ctx: Context, population: Population, stack: Stack, provider: str
) -> None:
    ctx.settings.push_provider = provider  # type: ignore[assignment]
    app_users = [r for r in population.residents if r.channels[0] is ChannelKind.push]
    voice_first = [r for r in population.residents if r.channels[0] is ChannelKind.voice]
    assert len(app_users) + len(voice_first) == 600 and len(voice_first) > 20
    gone = app_users[0]
    stack.jpush.behaviour.unregistered.add(gone.push_tokens[0])

    alert_id = _run_alert(ctx, stack)

    simulator = stack.jpush if provider == "jpush" else stack.fcm
    other = stack.fcm if provider == "jpush" else stack.jpush
    assert not other.delivered, "only the configured push provider is used"
    notified = {n.token for n in simulator.delivered}
    assert notified == {r.push_tokens[0] for r in app_users[1:]}, "every app user but the gone token"
    assert set(stack.sim.called) == {r.phone for r in voice_first}, "voice first for those without a smartphone"
    assert set(texts_to(stack.sim, population)) == {gone.phone}, "SMS only where push failed"

    after = _stored(ctx, gone.external_id)
    assert after.push_tokens == [] and ChannelKind.push not in after.channels, "the unregistered token is dropped"
    assert ctx.redis.hget(ctx.keys.resident_by_push_token(gone.push_tokens[0]), gone.push_tokens[0]) is None

    zh = next(n for n in simulator.delivered if n.data.get("alert_id") == alert_id and "台风" in n.title)
    assert zh.title == "【演练】台风橙色预警" and zh.body and zh.data["level"] == "orange"

    report = progress(ctx, alert_id)
    push = report["channels"]["push"]
    assert push["failed"] == 1
    # Each notification carries its recipient's own confirmation key; the provider refuses the gone
    # token at once.
    assert push["sent"] == len(app_users) - 1
    if provider == "jpush":
        assert push["delivered"] == len(app_users) - 1, "JPush's report API says what arrived"
    app_confirmed = sum(1 for r in simulator.acks.values() if r == "confirm")
    app_help = sum(1 for r in simulator.acks.values() if r == "help")
    keys = [c.pressed for c in stack.sim.calls if c.pressed]
    phones = {r.phone for r in population.residents}
    replies = [b for phone, bodies in stack.sim.replies.items() if phone in phones for b in bodies]
    assert app_confirmed > 100 and not simulator.ack_refusals
    assert report["totals"]["confirmed"] == app_confirmed + keys.count("1") + replies.count("1")
    assert report["totals"]["needs_help"] == app_help + keys.count("9") + replies.count("9")
    assert report["totals"]["failed"] == 0, "everyone was reached on some channel"


def test_fcm_requests_carry_a_bearer_token_and_string_data(ctx: Context, population: Population, stack: Stack) -> None:
    ctx.settings.push_provider = "fcm"  # type: ignore[assignment]
    _run_alert(ctx, stack)
    assert stack.fcm.requests and stack.fcm.tokens_issued == 1, "one OAuth exchange serves the whole alert"
    message = stack.fcm.requests[0]
    assert message["android"]["priority"] == "HIGH" and message["android"]["ttl"].endswith("s")
    assert all(isinstance(v, str) for v in message["data"].values())
    assert json.loads(message["data"]["exercise"]) is True


def _messages(n: int = 3) -> list[OutboundMessage]:
    extra = {"title": "台风橙色预警", "data": {"alert_id": "1", "ack": "k" * 22}}
    return [OutboundMessage("1", i, f"token-{i:04d}-abcdef", "请关紧门窗", extra=extra) for i in range(n)]


async def _send(channel: JPush | FCM, messages: list[OutboundMessage]) -> list[Outcome]:
    async with channel:
        return [r.outcome async for r in channel.send(messages, OpenGate())]


@pytest.mark.parametrize("provider", [JPush, FCM])
@pytest.mark.parametrize(
    ("inject", "outcome"),
    [
        (None, Outcome.accepted),
        (429, Outcome.throttled),
        (500, Outcome.retryable),
        (503, Outcome.retryable),
        ("unregistered", Outcome.permanent),
    ],
)
def test_push_error_classes(
    settings: Settings, stack: Stack, provider: type[JPush | FCM], inject: int | str | None, outcome: Outcome
) -> None:
    simulator = stack.jpush if provider is JPush else stack.fcm
    messages = _messages(1)
    if inject == "unregistered":
        simulator.behaviour.unregistered.add(messages[0].address)
    elif inject is not None:
        simulator.behaviour.inject.append(inject)
    assert asyncio.run(_send(provider(settings), messages)) == [outcome]


def test_push_with_wrong_credentials_is_bad_configuration(settings: Settings, stack: Stack) -> None:
    values = {**settings.model_dump(), "jpush_app_key": "0" * 24, "jpush_master_secret": "nope"}
    wrong = Settings(**{**values, "jpush_api_base": settings.simulator_url})
    assert asyncio.run(_send(JPush(wrong), _messages(2))) == [Outcome.bad_config] * 2


def test_fcm_renews_a_refused_access_token(settings: Settings, stack: Stack) -> None:
    assert asyncio.run(_send(FCM(settings), _messages(1))) == [Outcome.accepted]
    stack.loop.loop.call_soon_threadsafe(stack.fcm.revoke_tokens)
    assert asyncio.run(_send(FCM(settings), _messages(1))) == [Outcome.accepted]
    assert stack.fcm.tokens_issued == 2


def test_app_confirmation_is_checked_before_anything_is_recorded(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert = issue(ctx, [STREET], channels=MIXED)
    drain(ctx)
    stack.settle()
    before = progress(ctx, alert.id)["totals"]
    notification = next(n for n in stack.jpush.delivered if n.token not in stack.jpush.acks)
    ordinal = int(notification.data["ack"].partition(".")[0])
    url = f"{stack.url}/api/v1/app/ack"
    good = {
        "alert_id": alert.id,
        "ack": notification.data["ack"],
        "registration_id": notification.token,
        "response": "help",
    }
    assert good["ack"] == app_ack_token(ctx.secret, alert.id, ordinal)
    cases = [
        ({**good, "ack": app_ack_token(ctx.secret, "999", ordinal)}, 403, "ack"),
        ({**good, "ack": app_ack_token(ctx.secret, alert.id, ordinal + 1)}, 403, "ack"),
        ({**good, "registration_id": "jpush-not-a-device"}, 403, "ack"),
        ({**good, "response": "maybe"}, 422, "response"),
        ({k: v for k, v in good.items() if k != "ack"}, 422, "ack"),
    ]
    for body, status, field in cases:
        answer = request_json(url, "POST", body)
        assert answer[0] == status and answer[1]["error"]["field"] == field, body
    assert progress(ctx, alert.id)["totals"] == before
    assert request_json(url, "POST", good) == (200, {"recorded": "needs_help"})
    assert progress(ctx, alert.id)["totals"]["needs_help"] == before["needs_help"] + 1
