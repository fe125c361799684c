"""Driving Debian's Chromium with Playwright, and the console steps the browser tests share."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import PASSWORD

CHROMIUM = "/usr/bin/chromium"
# Without the networking switches Chromium keeps calling home, and on a closed network it hangs.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
AXE = Path(__file__).resolve().parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
CONSOLE_SIZE = {"width": 1366, "height": 768}  # a duty room's laptop
PHONE_SIZE = {"width": 390, "height": 844}  # a volunteer's or resident's phone
SERIOUS = ("serious", "critical")


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, or a failure that says what to install."""
    if not Path(CHROMIUM).exists() or shutil.which("fc-list") is None:
        pytest.fail("Chromium is not installed; run `make browser` (or: apt-get install -y chromium fonts-wqy-zenhei)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> None:
    """Keep what the user saw at this step (tests/artifacts/, kept by CI)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/console")
    expect(page.get_by_role("heading", name="上海应急预警发布")).to_be_visible()
    page.get_by_label("用户名 User name").fill(name)
    page.get_by_label("密码 Password").fill(password)
    page.get_by_role("button", name="登录 Sign in").click()
    expect(page.locator("header .who")).to_contain_text(name)


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="退出 Sign out").click()
    expect(page.get_by_role("button", name="登录 Sign in")).to_be_visible()


def axe_violations(page: Page) -> list[dict[str, object]]:
    """Run axe-core (pinned in tests/js/package-lock.json) on the page as it is now."""
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed at {AXE}; run `make browser` (npm ci --prefix tests/js)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the debugging protocol, which the page's script-src policy does not govern.
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return list(result["violations"])


def assert_accessible(page: Page, name: str) -> None:
    """No serious or critical axe-core violation on the page; every page's result is kept in
    tests/artifacts/axe/ for the record."""
    violations = axe_violations(page)
    ARTIFACTS.joinpath("axe").mkdir(parents=True, exist_ok=True)
    summary = [
        {"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "help": v["help"]}  # type: ignore[arg-type]
        for v in violations
    ]
    (ARTIFACTS / "axe" / f"{name}.json").write_text(json.dumps({"url": page.url, "violations": summary}, indent=1))
    bad = [v for v in violations if v["impact"] in SERIOUS]
    details = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"  # type: ignore[index,union-attr]
        for v in bad
    ]
    assert not bad, f"{name}: serious or critical accessibility problems:\n" + "\n".join(details)


def check_page(page: Page, name: str) -> None:
    """Scan the page with axe-core, and keep screenshots of it at the console's and a phone's size."""
    before = page.viewport_size
    assert_accessible(page, name)
    ARTIFACTS.mkdir(exist_ok=True)
    for label, size in (("1366x768", CONSOLE_SIZE), ("390x844", PHONE_SIZE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    if before:
        page.set_viewport_size(before)
