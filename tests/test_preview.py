"""The officer's side: preview over the API, render from the command line, and residents getting
the catalogue's wording for updates, with their own confirmation links."""

from __future__ import annotations

import json
import re

import pytest

from audiences.areas import AreaLevel, AreaTree
from audiences.population import Population
from broadcast import lifecycle
from broadcast.core.context import QUEUE_ORDER, Context
from broadcast.core.models import AlertStatus, EventType, Language, Level, MessageType
from broadcast.core.segments import sms_cost
from broadcast.core.tokens import LINK_TOKEN_LENGTH, read_link_token
from broadcast.issuing import alerts
from broadcast.running.cli import main
from broadcast.running.worker import drain
from tests.conftest import STREET, Stack
from tests.helpers import issue, request_json
from tests.samples import sample_draft

PREVIEW = "/api/v1/alerts/preview"


def test_preview_shows_every_channel_in_every_language_and_stores_nothing(
    ctx: Context, tree: AreaTree, stack: Stack, officer_token: str
) -> None:
    body = sample_draft(EventType.typhoon, Level.red, exercise=True).model_dump(mode="json")
    status, preview = request_json(stack.url + PREVIEW, "POST", body, token=officer_token)
    assert status == 200, preview
    first = next(tree.descendants(STREET, AreaLevel.community))
    assert preview["area"]["community"] == first.name and preview["area"]["street"] == "陆家嘴街道"
    assert (preview["severity"], preview["change"], preview["level"]) == ("Extreme", "new", "red")
    assert set(preview["messages"]) == {"sms", "voice", "push", "screen"}
    for channel in preview["messages"].values():
        assert set(channel) == {"zh", "en"}
    for language, sms in preview["messages"]["sms"].items():
        assert sms["segments"] == sms_cost(sms["text"]).parts == preview["cost"]["sms_segments"][language]
    assert preview["messages"]["sms"]["zh"]["text"].startswith("【上海应急】【演练】上海中心气象台发布台风红色预警")
    assert preview["messages"]["voice"]["en"]["language"] == "en-US"
    assert preview["messages"]["push"]["zh"]["title"] == "【演练】台风红色预警"
    assert preview["messages"]["screen"]["zh"]["colour"] == "red"
    assert ctx.redis.get(ctx.keys.alert_next) is None, "a preview is not an alert"
    assert all(ctx.queue(name).count == 0 for name in QUEUE_ORDER)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"level": "blue", "event": "hail"}, "level", "hail has no blue level; its levels are orange, red"),
        ({"params": {"typhoon_number": "6"}}, "params", "typhoon needs parameter typhoon_name"),
        ({"target": {"areas": ["310115999000"]}}, "target.areas", "unknown area code(s): 310115999000"),
        ({"msg_type": "update", "references": "999"}, "references", "alert 999 does not exist"),
        ({"level": "purple"}, "level", "invalid level"),
    ],
    ids=["a level the event lacks", "a missing parameter", "an unknown area", "an unknown reference", "no such level"],
)
def test_preview_refuses_a_bad_draft_naming_the_field(
    ctx: Context, tree: AreaTree, stack: Stack, change: dict[str, object], field: str, message: str, officer_token: str
) -> None:
    body = {**sample_draft(EventType.typhoon, Level.red).model_dump(mode="json"), **change}
    status, answer = request_json(stack.url + PREVIEW, "POST", body, token=officer_token)
    assert status == 422, answer
    assert answer["error"]["field"] == field and message in answer["error"]["message"]


def test_issuing_over_the_api_refuses_a_level_the_event_lacks(
    ctx: Context, tree: AreaTree, stack: Stack, officer_token: str
) -> None:
    body = sample_draft(EventType.frost, Level.orange).model_dump(mode="json") | {"level": "red"}
    status, answer = request_json(stack.url + "/api/v1/alerts", "POST", body, token=officer_token)
    assert status == 422
    assert answer["error"] == {
        "message": "frost has no red level; its levels are blue, yellow, orange",
        "field": "level",
    }
    assert ctx.redis.get(ctx.keys.alert_next) is None


def test_residents_get_the_upgrade_wording_and_their_own_links(
    ctx: Context, population: Population, stack: Stack
) -> None:
    orange = issue(ctx, [STREET], level=Level.orange)
    drain(ctx)
    red = issue(ctx, [STREET], level=Level.red, msg_type=MessageType.update, references=orange.id)
    drain(ctx)
    stack.settle()

    language = {r.phone: r.language for r in population.residents}
    upgrades = [m for m in stack.sim.messages if "升级" in m.body or "raised" in m.body]
    assert {m.to for m in upgrades} == set(language), "every resident hears of the upgrade"
    for message in upgrades:
        if language[message.to] is Language.zh:
            assert "上海中心气象台将台风橙色预警升级为红色预警：" in message.body
        else:
            assert "Typhoon warning raised to RED:" in message.body
    pattern = rf"{re.escape(ctx.settings.public_url)}/c/([A-Za-z0-9_-]{{{LINK_TOKEN_LENGTH}}})$"
    links = [re.search(pattern, m.body) for m in upgrades]
    assert all(links), "each SMS ends with its confirmation link"
    named = {read_link_token(ctx.secret, link.group(1)) for link in links if link}
    assert len(named) == len(upgrades) and {alert for alert, _ in named} == {red.id}, "one link per recipient"
    assert red.references == orange.id
    assert alerts.get_alert(ctx, orange.id).status is AlertStatus.superseded, "the update replaces the orange"
    assert ctx.redis.zscore(ctx.keys.alerts_active, orange.id) is None


def test_an_update_must_keep_the_event_it_changes(ctx: Context, tree: AreaTree) -> None:
    first = issue(ctx, [STREET], level=Level.blue)
    with pytest.raises(alerts.AlertError) as caught:
        lifecycle.compose(
            ctx,
            sample_draft(EventType.rainstorm, Level.blue, msg_type=MessageType.update, references=first.id),
            tree=tree,
        )
    assert caught.value.field == "event"
    assert caught.value.message == f"alert {first.id} is a typhoon warning; its update must be typhoon too"


def test_render_from_the_command_line_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    params = ["--param", "typhoon_number=6", "--param", "typhoon_name=烟花", "--param", "wind_force=12"]
    code = main(
        [
            "templates",
            "render",
            "--event",
            "typhoon",
            "--level",
            "red",
            "--channel",
            "sms",
            "--lang",
            "zh",
            *params,
            "--json",
        ]
    )
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["text"].startswith(
        "【上海应急】上海中心气象台发布台风红色预警：第6号台风“烟花”预计近期影响本市，阵风可达12级。"
    )
    assert (shown["segments"], shown["encoding"]) == (sms_cost(shown["text"]).parts, "UCS-2")

    code = main(
        ["templates", "render", "--event", "typhoon", "--level", "red", "--channel", "screen", *params, "--json"]
    )
    assert code == 0
    screen = json.loads(capsys.readouterr().out)
    assert screen["colour"] == "red" and screen["pages"][0][0] == "台风红色预警"

    update = ["--msg-type", "update", "--previous-level", "orange", "--channel", "push", "--json"]
    assert main(["templates", "render", "--event", "typhoon", "--level", "red", *params, *update]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "台风预警升级为红色"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--event", "hail", "--level", "yellow"], "hail has no yellow level; its levels are orange, red"),
        (["--event", "typhoon", "--level", "red"], "typhoon needs parameter typhoon_number"),
        (["--event", "general", "--level", "red", "--param", "message"], "--param expects key=value"),
    ],
    ids=["a level the event lacks", "missing parameters", "a malformed parameter"],
)
def test_render_from_the_command_line_names_what_is_wrong(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["templates", "render", *args]) == 2
    assert message in capsys.readouterr().err
