"""Provider callbacks when things go wrong: retried, late, out of order, or about a message we never sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from audiences.population import Population
from broadcast.core.context import Context
from broadcast.core.models import ChannelKind
from broadcast.running.worker import drain
from channels.simulators.twilio import TwilioSimulator
from channels.twilio.account import SIGNATURE_HEADER, sign, twilio_account
from channels.twilio.sms import INBOUND_PATH, STATUS_PATH
from tests.conftest import STREET, LoopThread, Stack
from tests.helpers import issue, post_form, progress


def status(ctx: Context, query: str, message_status: str, fragment: bool = True, **extra: str) -> int:
    """POST a signed SMS status callback for ``?{query}``; its HTTP status."""
    account = twilio_account(ctx.settings)
    url = f"{ctx.settings.public_url}{STATUS_PATH}?{query}"
    form = {"AccountSid": account.sid, "MessageSid": "SM" + "0" * 32, "MessageStatus": message_status, **extra}
    signed_for = f"{url}#{ctx.settings.twilio_webhook_overrides}" if fragment else url
    return post_form(url, form, {SIGNATURE_HEADER: sign(account.auth_token, signed_for, form)})[0]


def reply(ctx: Context, phone: str, body: str, sid: str) -> int:
    account = twilio_account(ctx.settings)
    url = ctx.settings.public_url + INBOUND_PATH
    form = {"AccountSid": account.sid, "From": phone, "To": "+8610691234", "Body": body, "MessageSid": sid}
    signed_for = f"{url}#{ctx.settings.twilio_webhook_overrides}"
    return post_form(url, form, {SIGNATURE_HEADER: sign(account.auth_token, signed_for, form)})[0]


def sent_quietly(ctx: Context, stack: Stack, *channels: ChannelKind) -> str:
    """Send an alert with the simulated network silent (no reports, no replies); its id."""
    stack.sim.behaviour.send_status_callbacks = False
    stack.sim.behaviour.reply_share = 0
    alert = issue(ctx, [STREET], channels=list(channels or (ChannelKind.sms,)))
    drain(ctx)
    return alert.id


def test_every_callback_url_asks_twilio_to_retry(ctx: Context, population: Population, stack: Stack) -> None:
    stack.sim.behaviour.reply_share = 0
    issue(ctx, [STREET], channels=[ChannelKind.sms, ChannelKind.voice])
    drain(ctx)
    stack.settle()
    callbacks = [m.form["StatusCallback"] for m in stack.sim.messages]
    callbacks += [c.form["StatusCallback"] for c in stack.sim.calls]
    callbacks += [c.twiml.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&") for c in stack.sim.calls]
    assert stack.sim.calls and callbacks
    assert all(url.endswith("#rc=5&rp=all") for url in callbacks), {u for u in callbacks if "#" not in u}


def test_a_status_signed_with_or_without_the_overrides_is_taken_and_a_forged_one_is_not(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert_id = sent_quietly(ctx, stack)
    assert status(ctx, f"a={alert_id}&o=1", "delivered", fragment=True) == 200
    assert status(ctx, f"a={alert_id}&o=2", "delivered", fragment=False) == 200
    account = twilio_account(ctx.settings)
    url = f"{ctx.settings.public_url}{STATUS_PATH}?a={alert_id}&o=3"
    form = {"AccountSid": account.sid, "MessageStatus": "delivered"}
    assert post_form(url, form, {SIGNATURE_HEADER: sign("not-the-token", url, form)})[0] == 403
    totals = progress(ctx, alert_id)["totals"]
    assert totals["delivered"] == 2 and totals["stages"]["delivered"] == 2


def test_a_late_failure_never_undoes_a_delivery_and_a_retry_is_stored_once(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert_id = sent_quietly(ctx, stack, ChannelKind.sms, ChannelKind.voice)
    calls_before = len(stack.sim.calls)
    for _ in range(2):  # the provider's retry of a callback we stored
        assert status(ctx, f"a={alert_id}&o=5", "delivered") == 200
    assert status(ctx, f"a={alert_id}&o=5", "undelivered", ErrorCode="30003") == 200
    drain(ctx)
    report = progress(ctx, alert_id)
    assert report["totals"]["delivered"] == 1 and report["channels"]["sms"]["delivered"] == 1
    assert report["channels"]["sms"].get("failed", 0) == 0 and report["totals"]["failed"] == 0
    assert report["totals"]["stages"]["delivered"] == 1
    assert len(stack.sim.calls) == calls_before, "nobody was called for a message that arrived"
    assert int(ctx.redis.hget(ctx.keys.stats, "superseded_reports") or 0) == 1


def test_a_status_about_a_message_we_never_sent_is_answered_and_not_stored(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert_id = sent_quietly(ctx, stack, ChannelKind.sms, ChannelKind.voice)
    # Round 1 (an escalation call) never happened, and there is no round 7.
    assert status(ctx, f"a={alert_id}&o=5&r=1", "undelivered", ErrorCode="30003") == 200
    assert status(ctx, f"a={alert_id}&o=5&r=7", "delivered") == 200
    assert status(ctx, f"a={alert_id}&o=5&r=x", "delivered") == 400
    report = progress(ctx, alert_id)
    assert report["totals"]["delivered"] == 0 and report["totals"]["failed"] == 0
    assert "sms.1" not in report["channels"] and "sms.7" not in report["channels"]
    assert int(ctx.redis.hget(ctx.keys.stats, "unmatched_reports") or 0) == 2


def test_a_retried_reply_is_kept_once_and_asks_for_help_once(
    ctx: Context, population: Population, stack: Stack
) -> None:
    stack.sim.behaviour.reply_share = 0
    alert = issue(ctx, [STREET])
    drain(ctx)
    stack.settle()
    words, helpless = population.residents[3], population.residents[4]
    for _ in range(3):
        assert reply(ctx, words.phone or "", "家里停电了，窗户坏了", "SM" + "1" * 32) == 200
        assert reply(ctx, helpless.phone or "", "9", "SM" + "2" * 32) == 200
    assert ctx.redis.xlen(ctx.keys.alert_replies(alert.id)) == 1, "a reply kept for a person is kept once"
    help_jobs = [j for j in ctx.queue("control").job_ids if "-h" in j]
    assert help_jobs == [f"{ctx.keys.ns}-{alert.id}-h4"], "one help case, however often the reply came"
    assert progress(ctx, alert.id)["totals"]["needs_help"] == 1


@pytest.fixture
def flaky_hook() -> Iterator[tuple[LoopThread, dict[str, Any]]]:
    """A webhook that fails (503) on its first three requests."""
    loop = LoopThread()
    state: dict[str, Any] = {"seen": 0}

    async def hook(request: web.Request) -> web.Response:
        state["seen"] += 1
        return web.Response(status=503 if state["seen"] <= 3 else 200, text="ok")

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
        return runner

    runner = loop.run(start())
    yield loop, state
    loop.run(runner.cleanup())
    loop.stop()


@pytest.mark.parametrize(("fragment", "seen", "delivered"), [("#rc=5&rp=all", 4, True), ("", 1, False)])
def test_the_simulated_twilio_retries_only_as_the_url_asks(
    fragment: str, seen: int, delivered: bool, flaky_hook: tuple[LoopThread, dict[str, Any]]
) -> None:
    loop, state = flaky_hook

    async def post() -> str | None:
        import aiohttp

        sim = TwilioSimulator("AC" + "1" * 32, "token", None)
        async with aiohttp.ClientSession() as session:
            sim.session = session
            return await sim.post(state["url"] + fragment, {"Body": "1"})

    answer = loop.run(post())
    assert state["seen"] == seen
    assert (answer == "ok") is delivered
