"""Driving Debian's Chromium with Playwright, and the console steps the browser tests share."""

from __future__ import annotations

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
