"""Inbound requests that must be refused before anything is stored: malformed, oversized, unsigned."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from audiences.population import Population
from broadcast.core.context import Context
from broadcast.running.worker import drain
from channels.twilio.account import SIGNATURE_HEADER, sign, twilio_account
from channels.twilio.sms import INBOUND_PATH, STATUS_PATH
from channels.twilio.voice import GATHER_PATH
from tests.conftest import STREET, Stack
from tests.helpers import issue, post_form, progress


def _signed(ctx: Context, path: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    url = ctx.settings.public_url + path
    return url, {SIGNATURE_HEADER: sign(twilio_account(ctx.settings).auth_token, url, form)}


@pytest.mark.parametrize(
    ("path", "form", "status"),
    [
        (INBOUND_PATH, {"Body": "1"}, 400),  # no From
        (STATUS_PATH + "?a=1&o=0", {"MessageStatus": "teleported"}, 400),
        (STATUS_PATH + "?a=1", {"MessageStatus": "delivered"}, 400),  # no ordinal in the callback URL
        (GATHER_PATH + "?a=1&o=abc", {"Digits": "1"}, 400),
    ],
)
def test_malformed_but_signed_requests_are_400_and_store_nothing(
    ctx: Context, population: Population, stack: Stack, path: str, form: dict[str, str], status: int
) -> None:
    alert = issue(ctx, [STREET])
    drain(ctx)
    stack.settle()
    before = progress(ctx, alert.id)["totals"]
    form = {"AccountSid": twilio_account(ctx.settings).sid, **form}
    url, headers = _signed(ctx, path, form)
    assert post_form(url, form, headers)[0] == status
    assert progress(ctx, alert.id)["totals"] == before


def test_oversized_bodies_are_refused(ctx: Context, stack: Stack) -> None:
    url = ctx.settings.public_url + INBOUND_PATH
    body = b"Body=" + b"x" * (ctx.settings.max_body_bytes + 1)
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413
