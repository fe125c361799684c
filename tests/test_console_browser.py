"""The console in a real browser: an officer composes a typhoon red warning for two streets, a
second person approves it, confirmations come in while the page watches, and the officer cancels it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from audiences.areas import AreaTree
from audiences.population import generate, store_population
from audiences.preview import preview
from broadcast import alerts
from broadcast.console.users import Role
from broadcast.context import Context
from broadcast.models import ChannelKind, Level, Target
from broadcast.progress import alert_progress
from broadcast.worker import BackgroundWorker
from channels.simulators.twilio import TwilioBehaviour
from tests.browser import chromium, screenshot, sign_in, sign_out
from tests.conftest import Stack
from tests.helpers import add_user

PUDONG = "310115000000"
LUJIAZUI = "310115005000"  # 陆家嘴街道
WEIFANG = "310115004000"  # 潍坊新村街道


@pytest.fixture
def behaviour() -> TwilioBehaviour:
    """Residents who take a few seconds to answer, so the page has confirmations to watch arrive."""
    return TwilioBehaviour(reply_share=0.7, help_share=0.05, reply_delay=(0.5, 6.0), status_delay=(0, 0.2), seed=7)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def two_streets(ctx: Context, tree: AreaTree) -> int:
    """A few hundred residents in each street; returns how many a warning to both reaches by SMS."""
    store_population(ctx.redis, ctx.keys, generate(tree, LUJIAZUI, 300, seed=11))
    store_population(ctx.redis, ctx.keys, generate(tree, WEIFANG, 250, seed=12))
    counts = preview(ctx.redis, ctx.keys, tree, Target(areas=[LUJIAZUI, WEIFANG]), [ChannelKind.sms], Level.red)
    return int(counts["targeted"])


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


def compose_typhoon_red(page: Page, reached: int) -> None:
    page.get_by_role("link", name="拟稿 Compose a warning").click()
    page.get_by_label("预警类型 Event").select_option("typhoon")
    page.get_by_label("级别 Level").select_option("red")
    params = page.locator("fieldset.params:visible")
    params.get_by_label(re.compile(r"^台风编号 typhoon number")).fill("6")
    params.get_by_label(re.compile(r"^台风名称 typhoon name")).fill("烟花")
    params.get_by_label(re.compile(r"^台风名称（英文） typhoon name")).fill("In-fa")
    params.get_by_label(re.compile(r"^阵风风力（级） gust force")).fill("12")
    for query, name in (("陆家嘴", "陆家嘴街道"), ("潍坊新村", "潍坊新村街道")):
        page.get_by_label("区域 Areas").fill(query)
        result = page.locator("#area-results li", has_text=name)
        result.get_by_role("button", name="添加 Add").click()
        expect(page.locator("#chosen")).to_contain_text(name)
    # The live preview: the words residents will read, and how many people that is.
    expect(page.locator("#reach-count")).to_contain_text(f"{reached:,}")
    expect(page.locator("#messages p[data-channel=sms][data-language=zh]")).to_contain_text("台风红色预警")
    expect(page.locator("#messages p[data-channel=sms][data-language=en]")).to_contain_text("In-fa")
    screenshot(page, "01-compose-preview")
    page.get_by_role("button", name="预览并确认 Review and confirm").click()
    expect(page.locator("#reach-total")).to_contain_text(f"reaches {reached:,} people")
    expect(page.locator("body")).to_contain_text("a second person approves")
    screenshot(page, "02-confirm-submit")
    page.get_by_role("button", name="提交审批 Submit for approval").click()


def test_typhoon_red_for_two_streets_composed_approved_watched_and_cancelled(
    ctx: Context, tree: AreaTree, two_streets: int, stack: Stack, browser: Browser
) -> None:
    reached = two_streets
    add_user(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    add_user(ctx, "li.na", Role.approver, [PUDONG])
    worker = BackgroundWorker(ctx).start()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        sign_in(page, stack.url, "zhang.wei")
        compose_typhoon_red(page, reached)
        expect(page.locator("#alert-status")).to_have_text("待审批 waiting for approval")
        expect(page.locator("body")).to_contain_text("Waiting for a second person to approve")
        expect(page.locator("#approve")).to_have_count(0)  # the composer cannot approve their own
        alert_url = page.url
        screenshot(page, "03-waiting-for-approval")
        sign_out(page)

        sign_in(page, stack.url, "li.na")
        page.get_by_role("link", name=re.compile(r"#1$")).first.click()
        page.locator("#approve").click()
        expect(page.locator("#reach-total")).to_contain_text(f"reaches {reached:,} people")
        screenshot(page, "04-confirm-approval")
        page.get_by_role("button", name="批准并签发 Approve and issue").click()
        assert page.url == alert_url
        page.evaluate("window.sameDocument = true")

        # Counts rise on the open page as residents confirm, with no reload.
        expect(page.locator("#alert-status")).to_have_text("发送中 sending", timeout=30_000)
        expect(page.locator("#total-sent")).to_have_text(f"{reached:,}", timeout=30_000)
        expect(page.locator("#total-confirmed")).not_to_have_text("0", timeout=30_000)
        first = shown_number(page, "#total-confirmed")
        screenshot(page, "05-confirmations-arriving")
        expect(page.locator("#total-confirmed")).not_to_have_text(f"{first:,}", timeout=30_000)
        assert shown_number(page, "#total-confirmed") > first
        stack.settle()
        settled = progress_now(ctx, stack, "1")
        final = settled["totals"]
        assert final["confirmed"] > first
        expect(page.locator("#total-confirmed")).to_have_text(f"{final['confirmed']:,}", timeout=15_000)
        expect(page.locator("#total-needs_help")).to_have_text(f"{final['needs_help']:,}")
        assert page.evaluate("window.sameDocument") is True
        committees = len(settled["areas"]["community"])
        expect(page.locator("#tiles .tile")).to_have_count(1 + 2 + committees)  # district, two streets, committees
        expect(page.locator("#tiles")).to_contain_text("陆家嘴街道")
        screenshot(page, "06-progress-settled")

        # Cancelling tells the same people the warning is lifted, and stops the original.
        page.locator("#cancel").click()
        expect(page.locator("#reach-total")).to_contain_text(f"reaches {reached:,} people")
        screenshot(page, "07-confirm-cancel")
        page.get_by_role("button", name="确认解除 Cancel the warning").click()
        expect(page.locator("#alert-status")).to_have_text("已取消 cancelled")
        expect(page.get_by_role("link", name="#2")).to_be_visible()
        screenshot(page, "08-cancelled")
        page.get_by_role("link", name="#2").click()
        expect(page.locator("body")).to_contain_text("解除")
        expect(page.locator("#total-sent")).to_have_text(f"{reached:,}", timeout=30_000)
        screenshot(page, "09-cancellation-sent")
    finally:
        page.close()
        worker.stop()
    assert not worker.errors
