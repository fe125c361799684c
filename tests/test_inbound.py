"""Inbound at volume: replies that arrive together are stored together, each answered once stored."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlencode

import pytest

from audiences.population import Population
from broadcast.core.context import Context
from broadcast.core.models import ChannelKind, ReplyEvent
from broadcast.hearing.inbound import Inbox, Recorded
from broadcast.issuing.plan import freeze
from broadcast.web.app import form_fields
from channels.twilio.http import form_encode
from tests.conftest import STREET, Stack
from tests.helpers import issue, progress, request_json


def test_replies_arriving_together_are_each_stored_and_answered(ctx: Context, population: Population) -> None:
    alert = issue(ctx, [STREET])
    freeze(ctx, alert)
    residents = population.residents[:120]
    bodies = ["1" if i % 10 else "9" for i in range(len(residents))]

    async def reply_all() -> list[list[Recorded]]:
        client = ctx.async_redis()
        try:
            inbox = Inbox(ctx, client)
            events = [
                [ReplyEvent(channel=ChannelKind.sms, from_address=r.phone or "", body=body)]
                for r, body in zip(residents, bodies, strict=True)
            ]
            stranger = [ReplyEvent(channel=ChannelKind.sms, from_address="+8613000000000", body="1")]
            return await asyncio.gather(*(inbox.record(e) for e in [*events, stranger]))
        finally:
            await client.aclose()

    answers = asyncio.run(reply_all())
    outcomes = [a[0].outcome for a in answers]
    assert outcomes[:-1] == ["acknowledged" if b == "1" else "needs_help" for b in bodies]
    assert outcomes[-1] == "unmatched"
    assert len({a[0].ordinal for a in answers[:-1]}) == len(residents), "each reply found its own recipient"
    totals = progress(ctx, alert.id)["totals"]
    assert (totals["acknowledged"], totals["needs_help"]) == (bodies.count("1"), bodies.count("9"))
    assert totals["delivered"] == len(residents), "whoever answers has the message"
    assert int(ctx.redis.hget(ctx.keys.stats, "unmatched_replies") or 0) == 1


def test_when_storing_fails_every_reply_of_the_batch_fails(ctx: Context, population: Population) -> None:
    async def reply_all() -> list[object]:
        client = ctx.async_redis()
        try:
            inbox = Inbox(ctx, client)

            async def broken(events: object) -> list[Recorded]:
                raise ConnectionError("Redis went away")

            inbox.record_now = broken  # type: ignore[assignment,method-assign]
            events = [
                [ReplyEvent(channel=ChannelKind.sms, from_address=r.phone or "", body="1")]
                for r in population.residents[:5]
            ]
            return await asyncio.gather(*(inbox.record(e) for e in events), return_exceptions=True)
        finally:
            await client.aclose()

    assert all(isinstance(r, ConnectionError) for r in asyncio.run(reply_all())), "no 2xx for what was not stored"


@pytest.mark.parametrize(
    "form",
    [
        {"Body": "回复 1+2 %x & =", "From": "+8613800000000", "Empty": ""},
        {"名字 with space": "值", "a": "1"},
    ],
)
def test_forms_read_and_written_as_the_standard_library_does(form: dict[str, str]) -> None:
    body = urlencode(form).encode()
    assert form_fields(body) == dict(parse_qsl(body.decode(), keep_blank_values=True))
    assert dict(parse_qsl(form_encode(dict(form)).decode(), keep_blank_values=True)) == form
    with pytest.raises(UnicodeDecodeError):
        form_fields(b"Body=\xff")


def test_progress_can_leave_out_the_committee_rows(
    ctx: Context, population: Population, stack: Stack, officer_token: str
) -> None:
    alert = issue(ctx, [STREET])
    freeze(ctx, alert)
    status, body = request_json(f"{stack.url}/api/v1/alerts/{alert.id}?areas=district,street", token=officer_token)
    assert status == 200 and set(body["areas"]) == {"district", "street"}
    assert body["areas"]["street"][0]["targeted"] == 600
    status, body = request_json(f"{stack.url}/api/v1/alerts/{alert.id}", token=officer_token)
    assert set(body["areas"]) == {"district", "street", "community"}
    status, body = request_json(f"{stack.url}/api/v1/alerts/{alert.id}?areas=district,building", token=officer_token)
    assert status == 422 and body["error"]["field"] == "areas" and "building" in body["error"]["message"]
