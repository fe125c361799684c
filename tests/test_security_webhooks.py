"""Attacks on the provider webhooks: a replayed reply counted twice, and a simulated provider whose
signing token anyone could read. (That a delivery report must match the message sent to its
recipient and never move a state backwards is tested with the delivery state machine.)"""

from __future__ import annotations

from pathlib import Path

from multidict import CIMultiDict

from audiences.population import Population
from broadcast.core.context import Context
from broadcast.core.settings import Settings
from broadcast.running.worker import drain
from channels.base import InboundRejected, InboundRequest
from channels.twilio.account import SIGNATURE_HEADER, sign, twilio_account
from channels.twilio.sms import INBOUND_PATH, TwilioSMS
from tests.conftest import STREET, Stack
from tests.helpers import issue, post_form, progress

PUBLISHED_TOKEN = "simulator-auth-token-not-secret"  # what the simulated account used to sign with


def reply(ctx: Context, phone: str, body: str, sid: str) -> dict[str, str]:
    return {
        "AccountSid": twilio_account(ctx.settings).sid,
        "From": phone,
        "To": "+8610691234",
        "Body": body,
        "MessageSid": sid,
    }


def test_a_replayed_reply_is_counted_once(ctx: Context, population: Population, stack: Stack) -> None:
    stack.sim.behaviour.reply_share = 0
    alert = issue(ctx, [STREET])
    drain(ctx)
    stack.settle()
    url = ctx.settings.public_url + INBOUND_PATH
    token = twilio_account(ctx.settings).auth_token
    resident = population.residents[7]
    form = reply(ctx, resident.phone or "", "明天几点开始停课？", "SM" + "7" * 32)
    for _ in range(3):  # Twilio retries, or someone replays a captured request
        assert post_form(url, form, {SIGNATURE_HEADER: sign(token, url, form)})[0] == 200
    other = reply(ctx, resident.phone or "", "明天几点开始停课？", "SM" + "8" * 32)
    assert post_form(url, other, {SIGNATURE_HEADER: sign(token, url, other)})[0] == 200, "a new message counts"
    counts = ctx.redis.hgetall(ctx.keys.counts(alert.id))
    assert int(counts[b"replies_unrecognised"]) == 2
    assert ctx.redis.xlen(ctx.keys.alert_replies(alert.id)) == 2, "the roll-up lists each message once"
    assert int(ctx.redis.hget(ctx.keys.stats, "replayed_replies") or 0) == 2


def test_the_simulated_account_signs_with_a_token_of_this_deployment(
    ctx: Context, population: Population, stack: Stack, tmp_path: Path
) -> None:
    mine = twilio_account(ctx.settings)
    assert mine.simulated and mine.auth_token != PUBLISHED_TOKEN
    elsewhere = Settings(secret_key="another deployment's secret", data_dir=tmp_path)  # type: ignore[arg-type]
    assert twilio_account(elsewhere).auth_token not in (mine.auth_token, PUBLISHED_TOKEN)

    alert = issue(ctx, [STREET])
    drain(ctx)
    stack.settle()
    before = progress(ctx, alert.id)["totals"]
    url = ctx.settings.public_url + INBOUND_PATH
    resident = next(r for r in population.residents if r.phone and r.phone not in stack.sim.replies)
    forged = reply(ctx, resident.phone or "", "1", "SM" + "9" * 32)
    status, _ = post_form(url, forged, {SIGNATURE_HEADER: sign(PUBLISHED_TOKEN, url, forged)})
    assert status == 403
    assert progress(ctx, alert.id)["totals"] == before


def _signed_reply(settings: Settings) -> InboundRequest:
    account = twilio_account(settings)
    url = settings.public_url + INBOUND_PATH
    form = {"AccountSid": account.sid, "From": "+8613900000000", "Body": "1", "MessageSid": "SM" + "1" * 32}
    headers = CIMultiDict({SIGNATURE_HEADER: sign(account.auth_token, url, form)})
    return InboundRequest(method="POST", url=url, headers=headers, body=b"", form=form, query={})


def test_simulated_webhooks_are_refused_beyond_loopback_unless_allowed(tmp_path: Path) -> None:
    base = {"secret_key": "a deployment secret", "data_dir": tmp_path, "port": 8443}
    local = Settings(**base)  # type: ignore[arg-type]
    assert TwilioSMS(local).parse_inbound(_signed_reply(local)).events
    for exposed in (
        Settings(**base, host="0.0.0.0"),  # type: ignore[arg-type]
        Settings(**base, public_url="https://warnings.example.cn"),  # type: ignore[arg-type]
    ):
        try:
            TwilioSMS(exposed).parse_inbound(_signed_reply(exposed))
        except InboundRejected as exc:
            assert exc.status == 403 and "loopback" in exc.reason
        else:
            raise AssertionError(f"a simulated webhook was accepted on {exposed.public_url}")
    allowed = Settings(**base, host="0.0.0.0", simulator_webhooks_public=True)  # type: ignore[arg-type]
    assert TwilioSMS(allowed).parse_inbound(_signed_reply(allowed)).events
