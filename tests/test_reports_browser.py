"""Field reports and the after-action report in a real browser: a volunteer reports from a 390×844
phone with no signal and the report reaches the duty room once the network returns; the duty room
at 1366×768 sees a trapped person raised as a call for help is, triages the reports grouped by
street, then reads the drill's after-action report and compares it with the previous drill. Every
new page is scanned with axe-core and kept as screenshots at both sizes."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, expect

from audiences.areas import AreaTree
from audiences.population import Population, generate, store_population
from audiences.volunteers import VolunteerRole
from broadcast.core.context import Context
from broadcast.core.tokens import volunteer_token
from broadcast.following.review import after_action
from broadcast.following.scorecards import keep_scorecard, scorecard_of
from broadcast.issuing import alerts
from broadcast.running.worker import BackgroundWorker
from broadcast.web.console.users import Role
from channels.simulators.twilio import TwilioBehaviour
from tests.browser import ARTIFACTS, CONSOLE_SIZE, PHONE_SIZE, check_page, chromium, sign_in
from tests.conftest import Stack
from tests.helpers import add_user, issue
from tests.test_callbacks import reply
from tests.test_field_pages_browser import wait_until_sent

LUJIAZUI = "310115005000"
WEIFANG = "310115004000"


@pytest.fixture
def behaviour() -> TwilioBehaviour:
    return TwilioBehaviour(reply_share=0.5, help_share=0.0, reply_delay=(0, 0.01), status_delay=(0, 0.01), seed=5)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def two_streets(ctx: Context, tree: AreaTree) -> tuple[Population, Population]:
    lujiazui = generate(tree, LUJIAZUI, 200, seed=21)
    weifang = generate(tree, WEIFANG, 150, seed=22)
    store_population(ctx.redis, ctx.keys, lujiazui)
    store_population(ctx.redis, ctx.keys, weifang)
    return lujiazui, weifang


def phone_photo() -> bytes:
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (31.0, 14.0, 24.0), 3: "E", 4: (121.0, 30.0, 0.0)}
    out = io.BytesIO()
    Image.new("RGB", (1200, 900), (60, 120, 200)).save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def stored_reports(ctx: Context, alert_id: str) -> list[dict[str, Any]]:
    return [json.loads(v) for v in ctx.redis.hvals(ctx.keys.alert_reports(alert_id))]


def test_a_report_made_without_signal_reaches_the_duty_room_once_and_is_triaged_by_street(
    ctx: Context, two_streets: tuple[Population, Population], stack: Stack, browser: Browser
) -> None:
    lujiazui, weifang = two_streets
    add_user(ctx, "zhang.wei", Role.duty_officer, ["310115000000"])
    worker = BackgroundWorker(ctx).start()
    phone = browser.new_context(viewport=PHONE_SIZE)
    page = phone.new_page()
    try:
        alert = issue(ctx, [LUJIAZUI, WEIFANG])
        wait_until_sent(ctx, stack, alert.id)

        # ---- the volunteer's phone: no signal in the flooded garage
        volunteer = next(v for v in lujiazui.volunteers if v.role is VolunteerRole.grid_worker and v.grids)
        token = volunteer_token(ctx.secret, volunteer.id, alert.id)
        page.goto(f"{stack.url}/v/{token}")
        page.get_by_role("link", name=re.compile("上报现场情况")).click()
        expect(page.locator("header.banner")).to_contain_text("台风橙色预警")
        check_page(page, "30-report-empty")
        phone.set_offline(True)
        page.get_by_role("button", name="积水").click()
        expect(page.get_by_role("button", name="积水")).to_have_attribute("aria-pressed", "true")
        page.get_by_label("情况说明").fill("地下车库进水约30厘米")
        page.set_input_files(
            "#photo", files=[{"name": "garage.jpg", "mimeType": "image/jpeg", "buffer": phone_photo()}]
        )
        page.get_by_role("button", name="提交报告").click()
        queued = page.locator("#mine li[data-queued]")
        expect(queued).to_have_count(1)
        expect(queued).to_contain_text("等待网络")
        expect(page.locator("#offline")).to_be_visible()
        assert stored_reports(ctx, alert.id) == [], "nothing reached the service without a network"
        check_page(page, "31-report-waiting")
        # Signal again: the phone sends what waited, once.
        phone.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        sent = page.locator("#mine li[data-report]")
        expect(sent).to_have_count(1, timeout=15_000)
        expect(sent).to_contain_text("已送达值班室")
        expect(page.locator("#mine li[data-queued]")).to_have_count(0)
        page.reload()
        expect(page.locator("#mine li[data-report]")).to_have_count(1)
        (report,) = stored_reports(ctx, alert.id)
        assert report["text"] == "地下车库进水约30厘米" and report["photo"] and report["location"] is None
        check_page(page, "32-report-sent")
        phone.close()

        # ---- the duty room: a resident of the other street is trapped
        console = browser.new_page(viewport=CONSOLE_SIZE)
        sign_in(console, stack.url, "zhang.wei")
        console.goto(f"{stack.url}/console/alerts/{alert.id}")
        card = console.locator("#reports-card")
        expect(card.locator("[data-report]")).to_have_count(1, timeout=15_000)
        console.evaluate("document.title = 'watching'")
        chimes = int(console.locator("#progress").get_attribute("data-chimes") or 0)
        resident = next(r for r in weifang.residents if r.phone and r.building)
        assert reply(ctx, resident.phone or "", "报告 被困 电梯停在两层之间，里面有人", "SM" + "5" * 32) == 200
        urgent = card.locator(".report.urgent")
        expect(urgent).to_have_count(1, timeout=15_000)
        expect(urgent).to_contain_text("紧急 URGENT")
        expect(urgent).to_contain_text("电梯停在两层之间")
        assert "被困" in console.title(), "a trapped person changes the tab's title as a call for help does"
        assert int(console.locator("#progress").get_attribute("data-chimes") or 0) > chimes
        expect(card).not_to_have_class(re.compile("quiet-help"))
        check_page(console, "33-live-with-reports")

        # The full list, grouped by street, newest first; the officer takes the trapped report in hand.
        console.goto(f"{stack.url}/console/alerts/{alert.id}/reports")
        streets = console.locator("section.street-reports")
        expect(streets).to_have_count(2)
        expect(streets.first).to_have_attribute("data-street", WEIFANG)
        trapped = console.locator(".report.urgent").first
        trapped.locator("select").select_option("assigned")
        trapped.locator("input[name=assignee]").fill("消防救援站")
        trapped.locator("input[name=note]").fill("已派人")
        trapped.get_by_role("button", name="保存 Save").click()
        expect(console.locator(".report.urgent.state-assigned")).to_have_count(1)
        expect(console.locator(".report.urgent .mark-note")).to_contain_text("消防救援站")
        expect(console.locator("#reports-summary")).to_contain_text("紧急 1 urgent")
        check_page(console, "34-reports-by-street")
        console.goto(f"{stack.url}/console/alerts/{alert.id}")
        expect(console.locator("#trail td[data-action=field_report]")).to_contain_text("现场报告处理")
        photo = console.request.get(f"{stack.url}/console/alerts/{alert.id}/reports/{report['id']}/photo")
        assert photo.ok and photo.headers["content-type"] == "image/jpeg"
        assert b"Exif" not in photo.body()

        # ---- after the drill: its report, and the comparison with the one before
        console.get_by_role("link", name=re.compile("事后评估")).click()
        expect(console.locator("#chart-curve .scatterlayer .trace")).to_have_count(3, timeout=15_000)
        expect(console.locator("#timeline tr[data-step=sent_99] td").first).to_have_text(
            re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
        )
        expect(console.locator("#streets tr[data-code]")).to_have_count(2)
        expect(console.locator("#pdf")).to_have_attribute("href", f"/console/alerts/{alert.id}/review.pdf")
        check_page(console, "35-review")
        pdf = console.request.get(f"{stack.url}/console/alerts/{alert.id}/review.pdf")
        assert pdf.ok and pdf.body().startswith(b"%PDF")
        (ARTIFACTS / "35-review.pdf").write_bytes(pdf.body())  # to look at, as printed

        second = issue(ctx, [LUJIAZUI, WEIFANG])
        wait_until_sent(ctx, stack, second.id)

        async def keep(alert_id: str) -> None:
            client = ctx.async_redis()
            try:
                found = alerts.get_alert(ctx, alert_id)
                review = await after_action(client, ctx.keys, ctx.settings, found, ctx.clock.now())
                await keep_scorecard(client, ctx.keys, scorecard_of(review))
            finally:
                await client.aclose()

        stack.loop.run(keep(second.id))
        console.goto(f"{stack.url}/console/drills?event=typhoon")
        expect(console.locator("#streets tr[data-code]")).to_have_count(2)
        expect(console.locator("#committees tr[data-verdict]").first).to_be_visible()
        expect(console.locator("#chart-drills")).to_have_attribute("data-bars", "2", timeout=15_000)
        expect(console.locator("#overall")).to_contain_text(f"#{alert.id}")
        expect(console.locator("#export")).to_have_attribute("href", re.compile(r"compare\.csv\?event=typhoon"))
        check_page(console, "36-drills")
        console.close()
    finally:
        worker.stop()
    assert not worker.errors
