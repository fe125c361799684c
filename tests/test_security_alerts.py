"""Attacks on issuing and reading alerts from inside the service: one officer's idempotency key
against another's alert, four eyes by spelling, a push's key used for another resident, and reads
beyond the caller's areas. Each is refused, and the data stays as it was."""

from __future__ import annotations

from typing import Any

import pytest

from audiences.population import Population
from broadcast import lifecycle
from broadcast.core.context import Context
from broadcast.core.models import AlertStatus, ChannelKind, Level, MessageType
from broadcast.issuing import alerts
from broadcast.running.cli import main
from broadcast.running.worker import drain
from broadcast.web.console.users import Role, load_user, store_user
from tests.conftest import STREET, Stack
from tests.helpers import add_user, draft, issue, progress, request_json, token_for

PUDONG = "310115000000"
HUANGPU = "310101000000"
HUANGPU_STREET = "310101002000"


def body(areas: list[str], level: Level = Level.blue, **fields: Any) -> dict[str, Any]:
    """A draft as the API takes it, in the signed-in caller's name."""
    return draft(areas, level, **fields).model_dump(mode="json") | {"composed_by": None}


def test_a_request_id_is_the_callers_own_and_a_cancel_message_belongs_to_its_alert(
    ctx: Context, population: Population, stack: Stack
) -> None:
    pudong = token_for(ctx, "pd.officer", Role.duty_officer, [PUDONG])
    huangpu = token_for(ctx, "hp.officer", Role.duty_officer, [HUANGPU])
    api = stack.url + "/api/v1/alerts"
    status, warning = request_json(api, "POST", body([STREET]), token=pudong)
    assert status == 201
    # Huangpu's officer plants an alert under the key a cancel of Pudong's warning used to take.
    planted_key = f"lift-alert-{warning['id']}"
    status, planted = request_json(api, "POST", body([HUANGPU_STREET], request_id=planted_key), token=huangpu)
    assert status == 201
    status, result = request_json(f"{api}/{warning['id']}/cancel", "POST", {"notify": True}, token=pudong)
    assert status == 200
    lift = result["lift"]
    assert lift["id"] != planted["id"], "the cancel message is not another district's drill"
    assert (lift["msg_type"], lift["references"], lift["target"]) == ("cancel", warning["id"], warning["target"])
    assert lift["composed_by"] == "pd.officer"

    # Another officer's request_id gives the caller an alert of their own, never the other's.
    status, theirs = request_json(api, "POST", body([HUANGPU_STREET], request_id="drill-0001"), token=huangpu)
    assert status == 201
    status, mine = request_json(api, "POST", body([STREET], request_id="drill-0001"), token=pudong)
    assert status == 201 and mine["id"] != theirs["id"]
    assert (mine["composed_by"], mine["target"]["areas"]) == ("pd.officer", [STREET])
    # The caller's own key again is the same alert; for a different warning it is refused.
    assert request_json(api, "POST", body([STREET], request_id="drill-0001"), token=pudong) == (201, mine)
    status, refusal = request_json(api, "POST", body([STREET], Level.yellow, request_id="drill-0001"), token=pudong)
    assert status == 409 and refusal["error"]["field"] == "request_id"
    assert int(ctx.redis.get(ctx.keys.alert_next) or 0) == 5


def test_approval_compares_accounts_not_spellings_and_the_cli_acts_only_as_a_real_account(
    ctx: Context, population: Population, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", ctx.redis_url)
    monkeypatch.setenv("BROADCAST_NAMESPACE", ctx.settings.namespace)
    add_user(ctx, "hp-officer", Role.duty_officer, [PUDONG])
    add_user(ctx, "pd.approver", Role.approver, [PUDONG])
    add_user(ctx, "hp.approver", Role.approver, [HUANGPU])
    add_user(ctx, "other.officer", Role.duty_officer, [PUDONG])
    sleeper = add_user(ctx, "gone.approver", Role.approver, [PUDONG])
    store_user(ctx.redis, ctx.keys, sleeper.model_copy(update={"disabled": True}), replace=True)

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        return code, capsys.readouterr().err

    issue_args = ["alert", "issue", "--event", "typhoon", "--level", "orange", "--area", STREET, "--drill"]
    params = [f"--param={p}" for p in ("typhoon_number=6", "typhoon_name=烟花", "typhoon_name_en=In-fa")]
    params += ["--param=wind_force=10", "--param=eta=今夜", "--param=eta_en=tonight"]
    code, err = run(*issue_args, *params, "--by", "nobody")
    assert code == 2 and "nobody" in err
    assert ctx.redis.get(ctx.keys.alert_next) is None
    code, err = run(*issue_args, *params, "--by", "hp-officer")
    assert code == 0, err
    alert_id = "1"
    refusals = {
        "HP-OFFICER": "may not approve",  # the composer, spelt in capitals, is still the composer
        " hp-officer ": "may not approve",
        "nobody": "no account",
        "gone.approver": "disabled",
        "other.officer": "may not approve",
        "hp.approver": "outside your areas",
    }
    for name, reason in refusals.items():
        code, err = run("alert", "approve", alert_id, "--by", name)
        assert code == 2 and reason in err, (name, err)
        assert alerts.get_alert(ctx, alert_id).status is AlertStatus.pending_approval
    with pytest.raises(alerts.AlertError) as caught:
        lifecycle.approve(ctx, alert_id, "Hp-Officer")
    assert caught.value.status == 403
    code, err = run("alert", "approve", alert_id, "--by", "PD.Approver")
    assert code == 0, err
    approved = alerts.get_alert(ctx, alert_id)
    assert (approved.status, approved.approved_by) == (AlertStatus.issued, "pd.approver")
    code, err = run("alert", "cancel", alert_id, "--by", "hp.approver")
    assert code == 2 and "outside your areas" in err
    assert load_user(ctx.redis, ctx.keys, "hp.approver") is not None


def test_a_push_key_confirms_only_the_resident_it_was_sent_to(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert = issue(ctx, [STREET], channels=[ChannelKind.push, ChannelKind.sms])
    drain(ctx)
    stack.settle()
    untapped = [n for n in stack.jpush.delivered if n.token not in stack.jpush.acks]
    owner, victim = untapped[0], untapped[1]
    before = progress(ctx, alert.id)["totals"]
    url = f"{stack.url}/api/v1/app/ack"
    forged = {
        "alert_id": alert.id,
        "ack": owner.data["ack"],
        "registration_id": victim.token,
        "response": "confirm",
    }
    status, answer = request_json(url, "POST", forged)
    assert status == 403 and answer["error"]["field"] == "ack"
    # A registration id nobody has is answered exactly alike: the answer tells nothing of devices.
    assert request_json(url, "POST", {**forged, "registration_id": "jpush-nobody-has-this"}) == (status, answer)
    assert progress(ctx, alert.id)["totals"] == before, "the other resident is still unconfirmed"
    own = {**forged, "registration_id": owner.token}
    assert request_json(url, "POST", own) == (200, {"recorded": "acknowledged"})
    assert progress(ctx, alert.id)["totals"]["acknowledged"] == before["acknowledged"] + 1


def test_reads_stay_inside_the_callers_areas(ctx: Context, population: Population, stack: Stack) -> None:
    committees = sorted({r.community for r in population.residents})
    worker = token_for(ctx, "chen.jie", Role.community_worker, [committees[0]])
    huangpu = token_for(ctx, "hp.officer", Role.duty_officer, [HUANGPU])
    areas = stack.url + "/api/v1/areas/"
    assert request_json(areas + committees[0], token=worker)[0] == 200
    for code in (committees[1], STREET, PUDONG):
        status, refusal = request_json(areas + code, token=worker)
        assert status == 403 and refusal["error"]["field"] == "code", code
    status, refusal = request_json(areas + STREET, token=huangpu)
    assert status == 403

    preview = stack.url + "/api/v1/targets/preview"
    census = {"areas": [PUDONG], "groups": ["elderly_alone"]}
    status, refusal = request_json(preview, "POST", census, token=huangpu)
    assert status == 403 and refusal["error"]["field"] == "areas" and PUDONG in refusal["error"]["message"]
    assert request_json(preview, "POST", census, token=worker)[0] == 403
    assert request_json(preview, "POST", {"areas": [HUANGPU_STREET]}, token=huangpu)[0] == 200

    hidden = issue(ctx, [STREET], Level.blue)
    message_preview = stack.url + "/api/v1/alerts/preview"
    lifting = body([HUANGPU_STREET], msg_type=MessageType.cancel.value, references=hidden.id)
    status, refusal = request_json(message_preview, "POST", lifting, token=huangpu)
    assert status == 403 and refusal["error"]["field"] == "references"
    assert "浦东" not in str(refusal) and "陆家嘴" not in str(refusal)


def test_a_message_needs_approval_by_its_own_level_and_reach(
    ctx: Context, population: Population, stack: Stack
) -> None:
    officer = token_for(ctx, "pd.officer", Role.duty_officer, [PUDONG])
    api = stack.url + "/api/v1/alerts"
    status, small = request_json(api, "POST", body([STREET], Level.blue), token=officer)
    assert status == 201 and small["status"] == "issued"
    # A red "cancel" to the whole district, riding on a small blue alert, is a new red message.
    wide = body([PUDONG], Level.red, msg_type=MessageType.cancel.value, references=small["id"])
    status, alert = request_json(api, "POST", wide, token=officer)
    assert status == 201 and alert["status"] == "pending_approval", "a red message to 浦东 needs a second officer"
    assert alerts.get_alert(ctx, small["id"]).status is AlertStatus.issued, "nothing is lifted before approval"
    # Lifting the alert as it was sent (same level and reach) is no new warning and needs nobody.
    lift = body([STREET], Level.blue, msg_type=MessageType.cancel.value, references=small["id"])
    status, alert = request_json(api, "POST", lift, token=officer)
    assert status == 201 and alert["status"] == "issued"
