"""The console in a real browser at a duty room's 1366×768: an officer composes a typhoon red warning
for two streets (with a mistake to correct, and a trip back from the review), a second person
approves it having seen exactly what residents will get, residents confirm and three ask for help
while the page watches, the officer takes the help requests in hand, and cancels the warning. Every
page is scanned with axe-core and kept as screenshots at both sizes."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect

from audiences.areas import AreaTree
from audiences.population import generate, store_population
from audiences.preview import preview
from broadcast.core.context import Context
from broadcast.core.models import ChannelKind, Level, Target
from broadcast.core.tokens import link_token
from broadcast.following.progress import alert_progress
from broadcast.issuing import alerts
from broadcast.running.worker import BackgroundWorker
from broadcast.web.console.users import Role
from channels.simulators.twilio import TwilioBehaviour
from tests.browser import CONSOLE_SIZE, check_page, chromium, sign_in, sign_out
from tests.conftest import Stack
from tests.helpers import add_user

PUDONG = "310115000000"
LUJIAZUI = "310115005000"  # 陆家嘴街道
WEIFANG = "310115004000"  # 潍坊新村街道
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def behaviour() -> TwilioBehaviour:
    """Residents who take a few seconds to answer, so the page has confirmations to watch arrive;
    nobody asks for help by text: the test asks for it itself, so it knows who and when."""
    return TwilioBehaviour(reply_share=0.7, help_share=0.0, reply_delay=(0.5, 6.0), status_delay=(0, 0.2), seed=7)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def two_streets(ctx: Context, tree: AreaTree) -> dict[str, int]:
    """A few hundred residents in each street; how many a warning reaches by SMS, in all and in each."""
    store_population(ctx.redis, ctx.keys, generate(tree, LUJIAZUI, 300, seed=11))
    store_population(ctx.redis, ctx.keys, generate(tree, WEIFANG, 250, seed=12))
    out = {}
    for name, areas in (("all", [LUJIAZUI, WEIFANG]), ("lujiazui", [LUJIAZUI]), ("weifang", [WEIFANG])):
        counts = preview(ctx.redis, ctx.keys, tree, Target(areas=areas), [ChannelKind.sms], Level.red)
        out[name] = int(counts["targeted"])
    return out


def progress_now(ctx: Context, stack: Stack, alert_id: str) -> dict[str, Any]:
    """The alert's progress, read on the stack's loop (Playwright's own loop holds this thread)."""

    async def fetch() -> dict[str, Any]:
        client = ctx.async_redis()
        try:
            return await alert_progress(client, ctx.keys, alerts.get_alert(ctx, alert_id))
        finally:
            await client.aclose()

    return stack.loop.run(fetch())


def shown_number(page: Page, selector: str) -> int:
    return int(page.locator(selector).inner_text().replace(",", ""))


def above_the_fold(page: Page, selector: str) -> None:
    """The element's top is inside the first screen, without scrolling."""
    box = page.locator(selector).first.bounding_box()
    assert box is not None and box["y"] < CONSOLE_SIZE["height"], f"{selector} starts at {box} (below the fold)"


def ask_for_help(stack: Stack, ctx: Context, alert_id: str, ordinal: int) -> None:
    """A resident taps "I need help" on the page their SMS links to."""
    url = f"{stack.url}/c/{link_token(ctx.secret, alert_id, ordinal)}"
    data = urllib.parse.urlencode({"action": "help"}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
        assert response.status == 200


def compose_typhoon_red(page: Page, reached: dict[str, int]) -> None:
    page.get_by_role("link", name="拟稿 Compose a warning").click()
    page.get_by_label("预警类型 Event").select_option("typhoon")
    page.get_by_label("级别 Level").select_option("red")
    params = page.locator("fieldset.params:visible")
    number = params.get_by_label(re.compile(r"^台风编号 typhoon number"))
    # Examples are marked as examples, never mistaken for filled values.
    assert number.get_attribute("placeholder", timeout=5_000).startswith("例：")  # type: ignore[union-attr]
    assert number.input_value() == ""
    number.fill("6")
    params.get_by_label(re.compile(r"^台风名称 typhoon name")).fill("烟花")
    params.get_by_label(re.compile(r"^阵风风力（级） gust force")).fill("12")
    for query, name in (("陆家嘴", "陆家嘴街道"), ("潍坊新村", "潍坊新村街道")):
        page.get_by_label(re.compile("^区域 Areas")).fill(query)
        result = page.locator("#area-results li", has_text=name)
        result.get_by_role("button", name="添加 Add").click()
        expect(page.locator("#chosen")).to_contain_text(name)
        expect(page.locator("#area-results li")).to_have_count(0)  # the search closes once an area is added
    expect(page.locator("#reach-count")).to_contain_text(f"{reached['all']:,}")
    expect(page.locator("#reach-mini")).to_contain_text(f"{reached['all']:,}")
    english = page.locator("fieldset.params:visible input[data-key=typhoon_name_en]")
    # The live preview marks the missing English name beside its field.
    expect(english).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#live-err-typhoon_name_en")).to_contain_text("必填")
    # Review anyway: refused, the field marked, in Chinese and English, and the form kept.
    review = page.get_by_role("button", name="预览并确认 Review and confirm")
    box = review.bounding_box()
    assert box is not None and box["y"] + box["height"] <= CONSOLE_SIZE["height"], "Review is out of reach"
    review.click()
    english = page.locator("fieldset.params:visible input[data-key=typhoon_name_en]")
    expect(english).to_have_attribute("aria-invalid", "true")
    error = page.locator("#" + str(english.get_attribute("aria-describedby")))
    expect(error).to_contain_text("必填")
    expect(error).to_contain_text("typhoon_name_en")
    expect(page.locator("#problems")).to_contain_text("处需要修改")
    expect(page.locator("#chosen")).to_contain_text("潍坊新村街道")
    check_page(page, "02-compose-with-a-mistake")
    english.fill("In-fa")
    expect(page.locator("#messages [data-channel=sms][data-language=zh]")).to_contain_text("台风红色预警")
    expect(page.locator("#messages [data-channel=sms][data-language=en]")).to_contain_text("In-fa")
    # Only the ticked channels are previewed: SMS alone, then SMS and app push.
    expect(page.locator("#messages [data-channel=push]")).to_have_count(0)
    page.get_by_label("应用推送 App push").check()
    expect(page.locator("#messages [data-channel=push][data-language=zh]")).to_have_count(1)
    page.get_by_role("button", name="预览并确认 Review and confirm").click()
    expect(page.locator("#reach-total")).to_contain_text(f"reaches {reached['all']:,} people")
    # Back keeps the whole draft.
    page.get_by_role("button", name="返回修改 Back to edit").click()
    expect(page.locator("#chosen")).to_contain_text("陆家嘴街道")
    expect(page.locator("#chosen")).to_contain_text("潍坊新村街道")
    expect(page.locator("fieldset.params:visible input[data-key=typhoon_name_en]")).to_have_value("In-fa")
    expect(page.get_by_label("应用推送 App push")).to_be_checked()
    page.get_by_role("button", name="预览并确认 Review and confirm").click()
    expect(page.locator("body")).to_contain_text("a second person approves")
    check_page(page, "03-review")
    page.get_by_role("button", name="提交审批 Submit for approval").click()


def test_typhoon_red_composed_approved_watched_helped_and_cancelled(
    ctx: Context, tree: AreaTree, two_streets: dict[str, int], stack: Stack, browser: Browser
) -> None:
    reached = two_streets
    add_user(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    add_user(ctx, "li.na", Role.approver, [PUDONG])
    add_user(ctx, "root", Role.admin)
    worker = BackgroundWorker(ctx).start()
    page = browser.new_page(viewport=CONSOLE_SIZE)
    try:
        sign_in(page, stack.url, "zhang.wei")
        check_page(page, "01-home-empty")
        page.goto(f"{stack.url}/console")
        compose_typhoon_red(page, reached)
        expect(page.locator("#alert-status")).to_have_text("待审批 waiting for approval")
        expect(page.locator("#approve")).to_have_count(0)  # the composer cannot approve their own
        # Pending: what will go out, not a funnel of zeros.
        expect(page.locator("#progress")).to_have_count(0)
        expect(page.locator("#reach-total")).to_contain_text(f"{reached['all']:,}")
        alert_url = page.url
        check_page(page, "04-pending")
        sign_out(page)

        # The approver sees, above the fold, exactly what residents will get.
        sign_in(page, stack.url, "li.na")
        expect(page.locator("#pending")).to_contain_text("陆家嘴街道")
        expect(page.locator("#pending")).to_contain_text("台风红色预警")
        page.get_by_role("link", name=re.compile(r"#1$")).first.click()
        page.locator("#approve").click()
        for selector in ("#brief-texts [data-channel=sms][data-language=zh]", "#brief-texts [data-channel=push]"):
            above_the_fold(page, selector)
        texts = page.locator("#brief-texts")
        for channel in ("sms", "push"):
            for language in ("zh", "en"):
                expect(texts.locator(f"[data-channel={channel}][data-language={language}]")).to_have_count(1)
        expect(texts.locator("[data-channel=sms][data-language=en]")).to_contain_text("In-fa")
        expect(texts.locator("[data-channel=voice]")).to_have_count(0)
        areas = page.locator("#brief-areas")
        expect(areas.locator(f"[data-code='{LUJIAZUI}']")).to_contain_text(
            f"陆家嘴街道 {LUJIAZUI} · {reached['lujiazui']:,}"
        )
        expect(areas.locator(f"[data-code='{WEIFANG}']")).to_contain_text(f"{reached['weifang']:,}")
        expect(page.locator("#brief-params")).to_contain_text("烟花")
        expect(page.locator("#brief-params")).to_contain_text("In-fa")
        expect(page.locator("#brief-channels")).to_contain_text("短信 SMS")
        expect(page.locator("#brief-channels")).to_contain_text("应用推送 app push")
        expect(page.locator("#drill-fact")).to_contain_text("真实预警")
        expect(page.locator("#brief-valid")).to_contain_text("720 min")
        above_the_fold(page, "#confirm")
        approve_colour = page.locator("#confirm").evaluate("b => getComputedStyle(b).backgroundColor")
        withdraw_colour = page.locator("#other-action").evaluate("b => getComputedStyle(b).backgroundColor")
        assert approve_colour != withdraw_colour, "approve and withdraw look the same"
        expect(page.locator("#other-action")).to_have_text("撤回 Withdraw…")
        check_page(page, "05-approve")
        page.get_by_role("button", name="批准并签发 Approve and issue").click()
        assert page.url == alert_url
        page.evaluate("window.sameDocument = true")

        # The officer allows the chime once; the page remembers.
        page.locator("#sound-on").click()
        expect(page.locator("#sound-ask")).to_be_hidden()
        expect(page.locator("#total-sent")).to_have_text(f"{reached['all']:,}", timeout=30_000)
        expect(page.locator("#alert-status")).to_have_text("已全部发出 all sent · 生效中 in force", timeout=30_000)
        expect(page.locator("#clock")).to_contain_text("签发已")
        expect(page.locator("#clock")).to_contain_text("已全部发出 all sent")
        stack.settle()  # the simulated residents have all answered (a few of them asking for help)
        before = {int(m) for m in ctx.redis.zrange(ctx.keys.help_asked("1"), 0, -1)}
        expect(page.locator("#help-table tr[data-ordinal]")).to_have_count(len(before), timeout=15_000)
        chimes = int(page.locator("#progress").get_attribute("data-chimes") or 0)
        page.evaluate("document.title = 'watching'")  # as if the officer had looked at the tab

        # Three more residents ask for help, one after another: the tab's title and the chime say so.
        ordinals = [o for o in (5, 320, 17, 6, 321, 18) if o not in before][:3]
        for ordinal in ordinals:
            ask_for_help(stack, ctx, "1", ordinal)
        expect(page.locator("#help-table tr[data-ordinal]")).to_have_count(len(before) + 3, timeout=15_000)
        assert "新求助" in page.title()
        assert int(page.locator("#progress").get_attribute("data-chimes") or 0) > chimes
        asked = {int(m): s for m, s in ctx.redis.zrange(ctx.keys.help_asked("1"), 0, -1, withscores=True)}
        rows = page.locator("#help-table tr[data-ordinal]")
        shown = [int(rows.nth(i).get_attribute("data-ordinal") or -1) for i in range(len(asked))]
        assert shown[:3] == ordinals[::-1], "the newest help requests are not first"
        assert shown == sorted(asked, key=lambda o: -asked[o]), "help requests are not newest first"
        first = rows.first
        expected_time = datetime.fromtimestamp(asked[shown[0]], SHANGHAI).strftime("%H:%M")
        expect(first.locator("td").first).to_contain_text(expected_time)
        dial = first.locator("a.tel").get_attribute("href") or ""
        assert re.fullmatch(r"tel:\+86\d{11}", dial), dial
        # Help requests lead the page: above the fold, before the funnel.
        above_the_fold(page, "#help-card")
        assert page.evaluate(
            "document.getElementById('help-card').compareDocumentPosition(document.getElementById('totals')) & 4"
        )
        # The officer assigns one; it stays so after a reload, and the audit says who did.
        first.locator("select").select_option("assigned")
        first.locator("input[name=assignee]").fill("王师傅")
        first.get_by_role("button", name="保存 Save").click()
        expect(first.locator(".mark-note")).to_contain_text("已保存")
        check_page(page, "06-live-with-help")
        page.reload()
        row = page.locator(f"#help-table tr[data-ordinal='{shown[0]}']")
        expect(row).to_have_class("state-assigned")
        expect(row.locator("input[name=assignee]")).to_have_value("王师傅")
        expect(page.locator("#trail td[data-action=help_case]")).to_contain_text("求助处理")

        stack.settle()
        settled = progress_now(ctx, stack, "1")
        final = settled["totals"]
        expect(page.locator("#total-confirmed")).to_have_text(f"{final['confirmed']:,}", timeout=15_000)
        expect(page.locator("#total-needs_help")).to_have_text(str(len(asked)))
        # Per channel: the rows add up to the sum row, and the people row is the funnel's.
        expect(page.locator("#channels tr[data-channel=help]")).to_have_count(0)
        rows_data = page.evaluate(
            """() => [...document.querySelectorAll('#channels tr')].filter(r => r.dataset.channel || r.id)
                 .map(r => [r.dataset.channel || r.id, [...r.querySelectorAll('td.num')]
                 .map(td => Number(td.textContent.replace(/,/g, '')))])"""
        )
        channel_rows = [values for name, values in rows_data if name not in ("channel-sum", "channel-people")]
        sums = dict(rows_data)["channel-sum"]
        assert [sum(column) for column in zip(*channel_rows, strict=True)] == sums
        assert dict(rows_data)["channel-people"] == [
            final["targeted"],
            final["sent"],
            final["delivered"],
            final["failed"],
        ]
        assert sums[0] == final["targeted"], "first-choice channels do not add up to the people targeted"
        # The confirmation curve, drawn by plotly.js from the recipients' time slots: three lines.
        page.reload()
        expect(page.locator("#curve .scatterlayer .trace")).to_have_count(3, timeout=10_000)
        expect(page.locator("#curve")).to_have_attribute("data-confirmed", str(final["confirmed"]), timeout=10_000)
        expect(page.locator("#curve-summary")).to_contain_text("已确认")
        expect(page.locator("#tiles .tile")).to_have_count(1 + 2 + len(settled["areas"]["community"]))
        assert page.evaluate("window.sameDocument") is None  # reloaded on purpose above
        check_page(page, "07-live-settled")

        page.goto(f"{alert_url}/help")
        expect(page.locator("#help-table tr[data-ordinal]")).to_have_count(len(asked))
        check_page(page, "08-help-list")

        # Cancelling shows the 解除 text residents will get.
        page.goto(alert_url)
        page.locator("#cancel").click()
        expect(page.locator("#reach-total")).to_contain_text(f"reaches {reached['all']:,} people")
        expect(page.locator("#lift-texts [data-channel=sms][data-language=zh]")).to_contain_text("解除")
        check_page(page, "09-cancel")
        page.get_by_role("button", name="确认解除 Cancel the warning").click()
        # Finished looks finished: grey, 已解除, nothing to update or cancel.
        expect(page.locator("#alert-status")).to_have_text("已解除 lifted")
        expect(page.locator("#banner")).to_have_class("banner finished")
        expect(page.locator("#update")).to_have_count(0)
        expect(page.locator("#cancel")).to_have_count(0)
        check_page(page, "10-cancelled")
        page.get_by_role("link", name="#2").first.click()
        expect(page.locator("#total-sent")).to_have_text(f"{reached['all']:,}", timeout=30_000)
        expect(page.locator("#banner")).to_have_class("banner finished")
        expect(page.locator("#alert-status")).to_contain_text("解除通知")
        expect(page.locator("#cancel")).to_have_count(0)
        expect(page.locator("#update")).to_have_count(0)
        check_page(page, "11-cancellation")

        # Home: nothing in force; the cancellation is not a live warning; times are Shanghai's.
        page.goto(f"{stack.url}/console")
        expect(page.locator("#live")).to_have_count(0)
        recent = page.locator("#recent")
        expect(recent.locator("tr[data-alert='1']")).to_have_attribute("data-phase", "finished")
        expect(recent.locator("tr[data-alert='2']")).to_have_attribute("data-phase", "cancelling")
        expect(recent.locator("tr[data-alert='1'] .tag.finished")).to_have_count(1)
        expect(page.locator("body")).not_to_contain_text("UTC")
        created = alerts.get_alert(ctx, "1").created_at.astimezone(SHANGHAI).strftime("%m-%d %H:%M")
        expect(recent.locator("tr[data-alert='1']")).to_contain_text(created)
        expect(recent.locator("tr[data-alert='1']")).to_contain_text("陆家嘴街道")
        check_page(page, "12-home")

        # The audit says cancel.
        page.goto(f"{stack.url}/console/audit")
        cancel_rows = page.locator("#audit tr", has=page.locator("td[data-action=cancel]"))
        expect(cancel_rows).to_have_count(1)
        expect(cancel_rows.first).to_contain_text("#1")
        expect(page.locator("#audit")).to_contain_text("陆家嘴街道")
        check_page(page, "13-audit")
        sign_out(page)

        sign_in(page, stack.url, "root")
        page.goto(f"{stack.url}/console/users")
        expect(page.locator("#users")).to_contain_text("浦东新区")
        check_page(page, "14-users")
    finally:
        page.close()
        worker.stop()
    assert not worker.errors
