"""The pages people open on a phone (390×844) during a drill: a resident's confirmation page, a grid
volunteer's door-to-door list, the community worker's roll-up and one resident's story. Each names
the warning and its time, offers tap-to-call wherever a number is shown, marks the choice made, and
passes an axe-core scan; screenshots of each at both sizes go to tests/artifacts/."""

from __future__ import annotations

import csv
import io
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from audiences.population import Population
from audiences.volunteers import VolunteerRole
from broadcast.core.context import Context
from broadcast.core.models import Level
from broadcast.core.tokens import link_token, volunteer_token
from broadcast.following.progress import alert_progress
from broadcast.issuing import alerts
from broadcast.running.worker import BackgroundWorker
from tests.browser import PHONE_SIZE, check_page, chromium
from tests.conftest import STREET, Stack
from tests.helpers import issue


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def ask_for_help(stack: Stack, ctx: Context, alert_id: str, ordinal: int) -> None:
    url = f"{stack.url}/c/{link_token(ctx.secret, alert_id, ordinal)}"
    data = urllib.parse.urlencode({"action": "help"}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
        assert response.status == 200


def wait_until_sent(ctx: Context, stack: Stack, alert_id: str, timeout: float = 60) -> None:
    """Until every recipient has been sent to (the worker runs in the background), then until the
    simulated residents have answered."""

    async def totals() -> dict[str, int]:
        client = ctx.async_redis()
        try:
            return dict((await alert_progress(client, ctx.keys, alerts.get_alert(ctx, alert_id)))["totals"])
        finally:
            await client.aclose()

    deadline = time.monotonic() + timeout
    while True:
        t = stack.loop.run(totals())
        if t["targeted"] and t["sent"] + t["failed"] >= t["targeted"]:
            break
        assert time.monotonic() < deadline, f"alert {alert_id} was not sent within {timeout} s: {t}"
        time.sleep(0.2)
    stack.settle()


def banner_names_the_warning(page: Page) -> None:
    banner = page.locator("header.banner")
    expect(banner).to_contain_text("台风橙色预警")
    expect(banner).to_contain_text(re.compile(r"\d\d-\d\d \d\d:\d\d 北京时间"))
    assert banner.inner_text().count("演练") == 1, banner.inner_text()


def test_a_drill_on_the_phones_of_a_resident_a_volunteer_and_a_community_worker(
    ctx: Context, population: Population, stack: Stack, browser: Browser
) -> None:
    worker = BackgroundWorker(ctx).start()
    page = browser.new_page(viewport=PHONE_SIZE)
    try:
        alert = issue(ctx, [STREET], Level.orange)  # a drill (exercise), approved by a second officer
        wait_until_sent(ctx, stack, alert.id)
        expect_sent = alert.id

        # The resident: the warning, the time, big buttons, numbers to tap.
        page.goto(f"{stack.url}/c/{link_token(ctx.secret, expect_sent, 3)}")
        banner_names_the_warning(page)
        for number in ("12345", "110", "119", "120"):
            expect(page.locator(f"a[href='tel:{number}']")).to_have_count(1)
        page.get_by_role("button", name=re.compile("收到，我很安全")).click()
        safe = page.get_by_role("button", name=re.compile("收到，我很安全"))
        expect(safe).to_have_attribute("aria-pressed", "true")
        expect(safe).to_contain_text("您已选择")
        expect(page.get_by_role("button", name=re.compile("我需要帮助"))).to_have_attribute("aria-pressed", "false")
        check_page(page, "20-resident")

        # The grid volunteer: who is left, building by building and floor by floor, help first.
        volunteer = next(
            v
            for v in population.volunteers
            if v.role is VolunteerRole.grid_worker
            and v.grids
            and sum(1 for r in population.residents if r.grid in v.grids) >= 8
        )
        list_url = f"{stack.url}/v/{volunteer_token(ctx.secret, volunteer.id, alert.id)}"
        listed = get_json(list_url + "/list.json")
        groups = listed["groups"]
        assert sum(len(g["residents"]) for g in groups) == len(listed["residents"])
        # Someone not first on their floor asks for help: they move to the top of that floor.
        group = next(g for g in groups if len(g["residents"]) >= 2 and g["residents"][0]["state"] != "needs_help")
        asking = group["residents"][-1]
        ask_for_help(stack, ctx, alert.id, asking["ordinal"])
        page.goto(list_url)
        banner_names_the_warning(page)
        expect(page.locator(".resident").first).to_be_visible()
        walk = page.evaluate(
            """() => [...document.querySelectorAll('#list > *')].map(n => [n.tagName, n.textContent.trim().slice(0, 40),
                   n.dataset.ordinal || ''])"""
        )
        floors_of: dict[str, list[int]] = {}
        building = ""
        for tag, text, _ in walk:
            if tag == "H2":
                building = text
                assert building not in floors_of, f"{building} appears twice: the walk goes back"
                floors_of[building] = []
            elif tag == "H3" and text[0].isdigit():
                floors_of[building].append(int(text.split()[0]))
        assert all(floors == sorted(floors) for floors in floors_of.values()), floors_of
        card = page.locator(f".resident[data-ordinal='{asking['ordinal']}']")
        expect(card).to_have_class(re.compile("asking"))
        expect(card.locator(".asked")).to_contain_text("本人求助")
        floors: list[list[str]] = []
        for tag, _, ordinal in walk:
            if tag == "H3":
                floors.append([])
            elif tag == "DIV" and ordinal:
                floors[-1].append(ordinal)
        floor = next(f for f in floors if str(asking["ordinal"]) in f)
        assert floor[0] == str(asking["ordinal"]) and len(floor) >= 2, "help is not first on its floor"
        position = [o for f in floors for o in f]
        expect(card.locator("a.call")).to_have_attribute("href", re.compile(r"^tel:\+86\d{11}$"))
        # The outcome chosen is marked, and stays marked once saved.
        other = page.locator(".resident").nth(1 if position[0] == str(asking["ordinal"]) else 0)
        other_ordinal = other.get_attribute("data-ordinal")
        other.get_by_role("button", name="不在家").click()
        chosen = page.locator(f".resident[data-ordinal='{other_ordinal}'] button[data-outcome=not_home]")
        expect(chosen).to_have_attribute("aria-pressed", "true")
        expect(chosen).to_contain_text("✓")
        expect(page.locator(f".resident[data-ordinal='{other_ordinal}'] .saved")).to_contain_text(
            "已保存", timeout=10_000
        )
        page.reload()
        expect(
            page.locator(f".resident[data-ordinal='{other_ordinal}'] button[data-outcome=not_home]")
        ).to_have_attribute("aria-pressed", "true")
        check_page(page, "21-volunteer")

        # The community worker: a roll-up readable on a phone, help with a number to call.
        resident = next(r for r in population.residents if r.name == asking["name"] and r.room == asking["room"])
        community_worker = next(
            v
            for v in population.volunteers
            if v.role is VolunteerRole.community_worker and v.community == resident.community
        )
        rollup_url = f"{stack.url}/w/{volunteer_token(ctx.secret, community_worker.id, alert.id)}"
        page.goto(rollup_url)
        banner_names_the_warning(page)
        case = page.locator(f".case[data-ordinal='{asking['ordinal']}']")
        expect(case).to_contain_text(asking["room"])
        expect(case).to_contain_text(asking["building"])
        expect(case.locator("a.call")).to_have_attribute("href", re.compile(r"^tel:\+86\d{11}$"))
        heights = page.locator("table.grid th").evaluate_all("ths => ths.map(th => th.getBoundingClientRect().height)")
        line = page.locator("table.grid td").first.evaluate("td => parseFloat(getComputedStyle(td).lineHeight)")
        assert max(heights) < 2 * line, f"column headers wrap at 390 px: {heights}"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE_SIZE["width"], f"the roll-up is {width} px wide on a 390 px phone"
        check_page(page, "22-committee")

        # The resident's story, as a person reads it.
        case.get_by_role("link", name=re.compile("经过")).click()
        story = page.locator("#story")
        expect(story).to_contain_text("已发送 Sent")
        expect(story).to_contain_text("求助 Asked for help")
        expect(story.locator("time").first).to_have_text(re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d$"))
        assert "{" not in story.inner_text()
        banner_names_the_warning(page)
        check_page(page, "23-timeline")

        # The export: names and local times, the codes beside.
        with urllib.request.urlopen(rollup_url + "/export.csv", timeout=10) as response:
            rows = list(csv.DictReader(io.StringIO(response.read().decode("utf-8-sig"))))
        row = next(r for r in rows if r["ordinal"] == str(asking["ordinal"]))
        assert row["place"] == asking["building"] and re.fullmatch(r"\d{17}", row["place_code"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0800", row["sent_at"]), row["sent_at"]
    finally:
        page.close()
        worker.stop()
    assert not worker.errors
