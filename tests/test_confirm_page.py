"""The link in the SMS: the warning page, its two buttons, and links that must not work."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

from audiences.population import Population
from broadcast import lifecycle
from broadcast.core.context import Context
from broadcast.core.tokens import LINK_TOKEN_LENGTH, link_token
from broadcast.running.worker import drain
from tests.conftest import STREET, Stack
from tests.helpers import issue, progress


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch(url: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, body, Location) without following redirects."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, response.read().decode(), response.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("Location", "")


def _link_of(stack: Stack, phone: str) -> str:
    body = next(m.body for m in stack.sim.messages if m.to == phone)
    found = re.search(rf"(https?://\S+/c/[A-Za-z0-9_-]{{{LINK_TOKEN_LENGTH}}})$", body)
    assert found, body
    return found.group(1)


def test_a_resident_confirms_by_link_and_sees_it_recorded(ctx: Context, population: Population, stack: Stack) -> None:
    alert = issue(ctx, [STREET])
    drain(ctx)
    stack.settle()
    quiet = next(
        r for r in population.residents if r.phone and r.phone not in stack.sim.replies and r.language.value == "zh"
    )
    link = _link_of(stack, quiet.phone or "")
    before = progress(ctx, alert.id)["totals"]

    status, html, _ = fetch(link)
    assert status == 200 and "台风" in html and "收到，我很安全" in html and "我需要帮助" in html
    assert progress(ctx, alert.id)["totals"] == before, "opening the link records nothing"

    status, _, location = fetch(link, {"action": "confirm"})
    assert status == 303 and location.endswith("?lang=zh")
    after = progress(ctx, alert.id)["totals"]
    assert after["confirmed"] == before["confirmed"] + 1
    status, html, _ = fetch(link)
    assert "已收到您的确认" in html

    status, html, _ = fetch(link + "?lang=en")
    assert status == 200 and "I need help" in html

    fetch(link, {"action": "confirm"})
    assert progress(ctx, alert.id)["totals"]["confirmed"] == after["confirmed"], "a second tap counts once"


def test_forged_unknown_and_ended_links_record_nothing(ctx: Context, population: Population, stack: Stack) -> None:
    alert = issue(ctx, [STREET])
    drain(ctx)
    stack.settle()
    before = progress(ctx, alert.id)["totals"]
    base = f"{stack.url}/c/"
    forged = link_token(b"another-secret", alert.id, 3)
    beyond = link_token(ctx.secret, alert.id, 600)
    for token in (forged, beyond, "x" * LINK_TOKEN_LENGTH, "short"):
        for form in (None, {"action": "help"}):
            status, html, _ = fetch(base + token, form)
            assert status == 404 and "这个链接无效" in html, token
    assert progress(ctx, alert.id)["totals"] == before

    lifecycle.cancel(ctx, alert.id, "officer-a")
    status, html, _ = fetch(base + link_token(ctx.secret, alert.id, 5), {"action": "help"})
    assert status == 410 and "结束" in html
    assert progress(ctx, alert.id)["totals"]["needs_help"] == before["needs_help"]
