"""The whole path: issue a typhoon drill to a street, send, and count confirmations coming back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from audiences.population import Population
from broadcast import lifecycle
from broadcast.core.context import QUEUE_ORDER, Context
from broadcast.core.models import AlertStatus, Language, Level
from broadcast.issuing import alerts
from broadcast.running.cli import main
from broadcast.running.worker import drain
from broadcast.web.console.users import Role
from channels.twilio.account import SIGNATURE_HEADER, sign, twilio_account
from channels.twilio.sms import INBOUND_PATH, STATUS_PATH
from tests.conftest import STREET, Stack, free_port
from tests.helpers import add_user, issue, post_form, progress, request_json, texts_to


def test_every_resident_gets_one_sms_and_confirmations_add_up(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert = issue(ctx, [STREET])
    assert alert.status is AlertStatus.issued and alert.approved_by == "officer-b"

    drain(ctx)
    stack.settle()

    phones = {r.phone for r in population.residents}
    assert len(phones) == 600
    assert texts_to(stack.sim, population) == dict.fromkeys(phones, 1), "each resident gets exactly one SMS"

    language = {r.phone: r.language for r in population.residents}
    for message in stack.sim.messages:
        if message.to not in language:
            continue  # a volunteer told of a call for help
        if language[message.to] is Language.zh:
            assert message.body.startswith("【上海应急】【演练】")
            assert "台风橙色预警" in message.body and "回复1确认收到" in message.body
        else:
            assert "[DRILL]" in message.body and "Reply 1 to confirm" in message.body
    assert {language[m.to] for m in stack.sim.messages if m.to in language} == {Language.zh, Language.en}

    community = {r.phone: r.community for r in population.residents}
    confirmed = Counter(community[p] for p, bodies in stack.sim.replies.items() if p in community and "1" in bodies)
    helped = Counter(community[p] for p, bodies in stack.sim.replies.items() if p in community and "9" in bodies)
    assert sum(confirmed.values()) > 300 and sum(helped.values()) > 0

    report = progress(ctx, alert.id)
    totals = report["totals"]
    assert (totals["targeted"], totals["sent"], totals["delivered"], totals["failed"]) == (600, 600, 600, 0)
    assert totals["confirmed"] == sum(confirmed.values())
    assert totals["needs_help"] == sum(helped.values())
    rows = report["areas"]["community"]
    assert sum(row["targeted"] for row in rows) == 600
    for row in rows:
        assert row["acknowledged"] == confirmed[row["code"]], row["name"]
        assert row["needs_help"] == helped[row["code"]], row["name"]
    assert report["areas"]["street"][0]["name"] == "陆家嘴街道"
    assert report["areas"]["district"][0]["acknowledged"] == totals["confirmed"]


def test_progress_is_served_over_the_api(
    ctx: Context, population: Population, stack: Stack, officer_token: str
) -> None:
    alert = issue(ctx, [STREET])
    drain(ctx)
    stack.settle()
    status, body = request_json(f"{stack.url}/api/v1/alerts/{alert.id}", token=officer_token)
    assert status == 200
    assert body["totals"]["sent"] == 600 and body["channels"]["sms"]["delivered"] == 600
    status, body = request_json(f"{stack.url}/api/v1/alerts/999999", token=officer_token)
    assert status == 404 and body["error"]["field"] == "id"


def test_forged_or_missing_signature_is_refused_and_changes_nothing(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert = issue(ctx, [STREET])
    drain(ctx)
    stack.settle()
    before = progress(ctx, alert.id)["totals"]
    resident = next(r for r in population.residents if r.phone not in stack.sim.replies)
    account = twilio_account(ctx.settings)
    inbound_url = ctx.settings.public_url + INBOUND_PATH
    reply = {
        "AccountSid": account.sid,
        "From": resident.phone or "",
        "To": "+8610691234",
        "Body": "1",
        "MessageSid": "SM" + "0" * 32,
    }

    assert post_form(inbound_url, reply)[0] == 403
    forged = sign("not-the-auth-token", inbound_url, reply)
    assert post_form(inbound_url, reply, {SIGNATURE_HEADER: forged})[0] == 403
    other_url = sign(account.auth_token, inbound_url + "?x=1", reply)
    assert post_form(inbound_url, reply, {SIGNATURE_HEADER: other_url})[0] == 403
    status_url = f"{ctx.settings.public_url}{STATUS_PATH}?a={alert.id}&o=0"
    failed = {"AccountSid": account.sid, "MessageStatus": "failed", "MessageSid": "SM" + "1" * 32, "ErrorCode": "30003"}
    assert post_form(status_url, failed, {SIGNATURE_HEADER: sign("wrong", status_url, failed)})[0] == 403

    assert progress(ctx, alert.id)["totals"] == before

    # The same reply, signed as Twilio signs it, is taken.
    status, body = post_form(inbound_url, reply, {SIGNATURE_HEADER: sign(account.auth_token, inbound_url, reply)})
    assert status == 200 and "<Response>" in body
    assert progress(ctx, alert.id)["totals"]["confirmed"] == before["confirmed"] + 1


def test_reply_from_unknown_number_is_accepted_and_counted_as_unmatched(ctx: Context, stack: Stack) -> None:
    account = twilio_account(ctx.settings)
    url = ctx.settings.public_url + INBOUND_PATH
    reply = {"AccountSid": account.sid, "From": "+8613000000000", "To": "+8610691234", "Body": "1"}
    status, _ = post_form(url, reply, {SIGNATURE_HEADER: sign(account.auth_token, url, reply)})
    assert status == 200
    assert int(ctx.redis.hget(ctx.keys.stats, "unmatched_replies") or 0) == 1


def test_unknown_area_is_refused_naming_the_code_and_queues_nothing(ctx: Context, population: Population) -> None:
    with pytest.raises(alerts.AlertError) as caught:
        issue(ctx, [STREET, "310115999000"])
    assert "310115999000" in caught.value.message and caught.value.field == "target.areas"
    assert ctx.redis.get(ctx.keys.alert_next) is None
    assert all(ctx.queue(name).count == 0 for name in QUEUE_ORDER)


def test_cli_unknown_area_exits_non_zero_with_the_code(
    ctx: Context, population: Population, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", ctx.redis_url)
    monkeypatch.setenv("BROADCAST_NAMESPACE", ctx.settings.namespace)
    add_user(ctx, "officer-a", Role.duty_officer)
    code = main(
        [
            "alert",
            "issue",
            "--event",
            "typhoon",
            "--level",
            "blue",
            "--area",
            "310115999000",
            "--by",
            "officer-a",
            "--param",
            "typhoon_number=6",
        ]
    )
    assert code == 2
    assert "310115999000" in capsys.readouterr().err
    assert all(ctx.queue(name).count == 0 for name in QUEUE_ORDER)


def test_same_request_twice_is_one_alert(ctx: Context, population: Population) -> None:
    first = issue(ctx, [STREET], level=Level.blue, request_id="duty-2026-07-15-0001")
    second = issue(ctx, [STREET], level=Level.blue, request_id="duty-2026-07-15-0001")
    assert first.id == second.id
    assert ctx.redis.get(ctx.keys.alert_next) == b"1"


def test_orange_needs_a_second_officer(ctx: Context, population: Population) -> None:
    from tests.helpers import draft

    alert = lifecycle.compose(ctx, draft([STREET]))
    assert alert.status is AlertStatus.pending_approval
    assert all(ctx.queue(name).count == 0 for name in QUEUE_ORDER), "nothing goes out before approval"
    with pytest.raises(alerts.AlertError) as caught:
        lifecycle.approve(ctx, alert.id, "officer-a")
    assert caught.value.status == 403
    assert lifecycle.approve(ctx, alert.id, "officer-b").status is AlertStatus.issued


def test_demo_once_json_on_a_fresh_machine(tmp_path: Path) -> None:
    """No REDIS_URL, no credentials: the demo starts its own Redis, runs the drill, prints JSON, exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROADCAST_", "REDIS_URL", "MQTT_URL"))}
    env.update(
        {
            "BROADCAST_DATA_DIR": str(tmp_path / "var"),
            "BROADCAST_PORT": str(free_port()),
            "BROADCAST_SIMULATOR_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "broadcast", "demo", "--once", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert {"targeted", "sent", "delivered", "failed", "confirmed"} <= set(summary)
    assert summary["targeted"] == 2000
    assert summary["sent"] + summary["failed"] >= 2000
    assert summary["delivered"] + summary["failed"] == 2000
    assert 1000 < summary["confirmed"] < 2000
    assert (tmp_path / "var" / "redis" / "appendonly.aof").exists(), "the embedded Redis keeps an AOF"
    assert not (tmp_path / "var" / "redis" / "url").exists(), "--once stops the Redis it started"
