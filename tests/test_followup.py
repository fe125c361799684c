"""Confirmation and follow-up: the escalation ladder with injected time, volunteers' lists, the roll-up."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rq.registry import ScheduledJobRegistry

from audiences.population import Population
from audiences.residents import Resident
from audiences.volunteers import Volunteer, VolunteerRole
from broadcast import lifecycle
from broadcast.core.clock import ManualClock
from broadcast.core.context import FOLLOWUP_QUEUE, Context
from broadcast.core.models import ChannelKind, Level
from broadcast.core.tokens import volunteer_token
from broadcast.following.escalation import run_step, step_job_id
from broadcast.running.worker import drain
from channels.twilio.account import SIGNATURE_HEADER, sign, twilio_account
from channels.twilio.sms import INBOUND_PATH
from tests.conftest import STREET, Stack
from tests.helpers import issue, post_form, progress, request_json


@pytest.fixture
def clock(ctx: Context) -> ManualClock:
    """Injected time, starting now (RQ's scheduler keeps real time: steps must not fall due by themselves)."""
    manual = ManualClock(datetime.now(UTC).replace(microsecond=0))
    ctx.clock = manual
    return manual


def step(ctx: Context, alert_id: str, index: int) -> dict[str, Any]:
    return asyncio.run(run_step(ctx, alert_id, index))


def texts(stack: Stack, phone: str) -> list[str]:
    return [m.body for m in stack.sim.messages if m.to == phone]


def link_in(body: str, path: str) -> str:
    found = re.search(rf"https?://\S+{path}\S+", body)
    assert found, body
    return found.group(0)


def grid_worker(population: Population, grid: str) -> Volunteer:
    return next(v for v in population.volunteers if v.role is VolunteerRole.grid_worker and grid in v.grids)


def test_the_ladder_calls_then_lists_then_rolls_up(
    ctx: Context, clock: ManualClock, population: Population, stack: Stack
) -> None:
    stack.sim.behaviour.help_share = 0
    alert = issue(ctx, [STREET], level=Level.red, channels=[ChannelKind.sms, ChannelKind.voice])
    drain(ctx)
    stack.settle()
    issued = alert.issued_at
    assert issued is not None

    scheduled = ScheduledJobRegistry(queue=ctx.queue(FOLLOWUP_QUEUE))
    times = {job_id: scheduled.get_scheduled_time(job_id) for job_id in scheduled.get_job_ids()}
    for index, minutes in enumerate((10, 15, 30)):
        assert times[step_job_id(ctx.keys, alert.id, index)] == issued + timedelta(minutes=minutes)

    answered = set(stack.sim.replies) | {c.to for c in stack.sim.calls if c.pressed}
    silent = [r for r in population.residents if r.phone not in answered]
    assert 100 < len(silent) < 500

    # +10 min: a call to every silent vulnerable resident, whatever their first channel was.
    clock.advance(minutes=10)
    calls_before = len(stack.sim.calls)
    assert step(ctx, alert.id, 0)["called"] == len([r for r in silent if r.vulnerable])
    drain(ctx)
    stack.settle()
    called = {c.to for c in stack.sim.calls[calls_before:]}
    assert called == {r.phone for r in silent if r.vulnerable}
    assert progress(ctx, alert.id)["channels"]["voice.1"]["sent"] == len(called)
    assert step(ctx, alert.id, 0) == {"skipped": "already done"}

    # +15 min: each grid volunteer gets a link to exactly their own grid's silent residents.
    clock.advance(minutes=5)
    assert step(ctx, alert.id, 1)["volunteers"] > 0
    grid = silent[0].grid
    assert grid is not None
    volunteer = grid_worker(population, grid)
    (notice,) = texts(stack, volunteer.phone)
    assert "未确认" in notice and volunteer.name in notice
    link = link_in(notice, "/v/")
    status, page = request_json(link + "/list.json")
    assert status == 200
    expected = {r.name for r in silent if r.grid == grid}
    assert {r["name"] for r in page["residents"]} == expected, "their grid's silent residents, nobody else"
    vulnerable_first = [r["flags"] != [] for r in page["residents"]]
    assert vulnerable_first == sorted(vulnerable_first, reverse=True)
    assert all("****" in r["phone"] and r["dial"].startswith("+86") for r in page["residents"])

    # The volunteer knocks: reached and safe takes them off the list and counts as confirmed in person.
    first = page["residents"][0]
    before = progress(ctx, alert.id)["totals"]["confirmed"]
    body = {"ordinal": first["ordinal"], "outcome": "reached_safe", "request_id": "knock-0001"}
    assert request_json(link + "/outcome", "POST", body)[0] == 200
    assert request_json(link + "/outcome", "POST", body)[0] == 200, "a retried request is the same outcome"
    assert progress(ctx, alert.id)["totals"]["confirmed"] == before + 1
    left = request_json(link + "/list.json")[1]["residents"]
    assert first["name"] not in {r["name"] for r in left} and len(left) == len(expected) - 1
    not_home = {"ordinal": left[0]["ordinal"], "outcome": "not_home", "request_id": "knock-0002"}
    assert request_json(link + "/outcome", "POST", not_home)[0] == 200
    after = request_json(link + "/list.json")[1]["residents"]
    assert after[0]["outcome"] == "not_home", "not home stays on the list, marked"
    # Volunteers' outcomes are counted for the roll-up, never shown as channels of the warning.
    assert set(progress(ctx, alert.id)["channels"]) <= {"sms", "voice", "push", "screen", "voice.1"}

    # Someone else's resident is refused, and changes nothing.
    other = next(r for r in silent if r.grid != grid)
    other_page = request_json(
        link_in(texts(stack, grid_worker(population, other.grid or "").phone)[0], "/v/") + "/list.json"
    )[1]
    foreign = other_page["residents"][0]["ordinal"]
    status, refusal = request_json(link + "/outcome", "POST", {**body, "ordinal": foreign, "request_id": "knock-9999"})
    assert status == 403 and refusal["error"]["field"] == "ordinal"
    assert progress(ctx, alert.id)["totals"]["confirmed"] == before + 1

    # +30 min: the community worker gets the committee's roll-up.
    clock.advance(minutes=15)
    assert step(ctx, alert.id, 2)["workers"] > 0
    worker = next(
        v
        for v in population.volunteers
        if v.role is VolunteerRole.community_worker and v.community == silent[0].community
    )
    rollup_link = link_in(texts(stack, worker.phone)[0], "/w/")
    status, rollup = request_json(rollup_link + "/rollup.json")
    assert status == 200 and rollup["committee"] == worker.community
    row = next(g for g in rollup["grids"] if g["grid"] == grid)
    in_grid = [r for r in population.residents if r.grid == grid]
    assert row["targeted"] == len(in_grid)
    assert row["waiting"] == len(expected) - 1
    status, story = request_json(f"{rollup_link}/r/{first['ordinal']}")
    assert status == 200 and story["confirmed_by"] == "volunteer" and story["outcome"]["outcome"] == "reached_safe"
    with urllib.request.urlopen(rollup_link + "/export.csv", timeout=10) as response:
        rows = list(csv.DictReader(io.StringIO(response.read().decode("utf-8-sig"))))
    committee = [r for r in population.residents if r.community == worker.community]
    assert len(rows) == len(committee)
    knocked = next(r for r in rows if r["ordinal"] == str(first["ordinal"]))
    assert knocked["confirmed_by"] == "volunteer" and knocked["outcome"] == "reached_safe"
    assert all("****" in r["phone"] for r in rows if r["phone"])

    # The link expires with the alert.
    clock.advance(hours=13)
    assert request_json(link + "/list.json")[0] == 410


def test_a_call_for_help_reaches_the_volunteer_at_once(
    ctx: Context, clock: ManualClock, population: Population, stack: Stack
) -> None:
    stack.sim.behaviour.reply_share = 0
    alert = issue(ctx, [STREET], level=Level.orange)
    drain(ctx)
    stack.settle()
    resident: Resident = population.residents[7]
    account = twilio_account(ctx.settings)
    url = ctx.settings.public_url + INBOUND_PATH
    reply = {"AccountSid": account.sid, "From": resident.phone or "", "To": "+8610691234", "Body": "求助"}
    assert post_form(url, reply, {SIGNATURE_HEADER: sign(account.auth_token, url, reply)})[0] == 200
    drain(ctx)
    volunteer = grid_worker(population, resident.grid or "")
    (notice,) = texts(stack, volunteer.phone)
    assert "求助" in notice and resident.name in notice
    status, page = request_json(link_in(notice, "/v/") + "/list.json")
    first = page["residents"][0]
    assert status == 200 and first["name"] == resident.name and first["state"] == "needs_help"
    assert progress(ctx, alert.id)["totals"]["needs_help"] == 1


def test_cancel_stops_the_ladder_and_forged_links_show_nothing(
    ctx: Context, clock: ManualClock, population: Population, stack: Stack
) -> None:
    alert = issue(ctx, [STREET], level=Level.red)
    drain(ctx)
    volunteer = population.volunteers[0]
    token = volunteer_token(ctx.secret, volunteer.id, alert.id)
    assert request_json(f"{stack.url}/v/{token}/list.json")[0] == 200
    for forged in (
        volunteer_token(b"another-secret", volunteer.id, alert.id),
        volunteer_token(ctx.secret, volunteer.id, "999"),
        token[:-2] + "xx",
    ):
        assert request_json(f"{stack.url}/v/{forged}/list.json")[0] == 404
    lifecycle.cancel(ctx, alert.id, "officer-a")
    scheduled = ScheduledJobRegistry(queue=ctx.queue(FOLLOWUP_QUEUE)).get_job_ids()
    assert not any(job.startswith(f"{ctx.keys.ns}-{alert.id}-e") for job in scheduled)
    clock.advance(minutes=15)
    assert step(ctx, alert.id, 1) == {"skipped": "the alert has ended"}
    assert request_json(f"{stack.url}/v/{token}/list.json")[0] == 410


def test_bit_counting_agrees_with_a_plain_count() -> None:
    import random

    from broadcast.following.escalation import count_set, unset_among

    rng = random.Random(5)
    done = bytes(rng.getrandbits(8) for _ in range(300))
    wanted = bytes(rng.getrandbits(8) for _ in range(300))
    plain = [bool(done[o >> 3] & (0x80 >> (o & 7))) for o in range(2400)]
    for start, end in [(0, 2400), (3, 17), (5, 6), (8, 16), (13, 2399), (100, 100), (7, 9)]:
        assert count_set(done, start, end) == sum(plain[start:end]), (start, end)
    expected = [o for o in range(2400) if wanted[o >> 3] & (0x80 >> (o & 7)) and not plain[o]]
    assert unset_among(done, wanted) == expected


def test_replies_in_their_own_words_are_read_or_kept_for_a_person(
    ctx: Context, clock: ManualClock, population: Population, stack: Stack
) -> None:
    stack.sim.behaviour.reply_share = 0
    alert = issue(ctx, [STREET], level=Level.orange)
    drain(ctx)
    stack.settle()
    account = twilio_account(ctx.settings)
    url = ctx.settings.public_url + INBOUND_PATH
    trapped, chatty = population.residents[3], population.residents[4]
    for resident, body in ((trapped, "我家老人被困在电梯里"), (chatty, "看到了，我们已经把阳台的花盆搬进来")):
        reply = {"AccountSid": account.sid, "From": resident.phone or "", "To": "+8610691234", "Body": body}
        assert post_form(url, reply, {SIGNATURE_HEADER: sign(account.auth_token, url, reply)})[0] == 200
    drain(ctx)
    assert progress(ctx, alert.id)["totals"]["needs_help"] == 1, "a help word anywhere is a call for help"
    worker = next(
        v for v in population.volunteers if v.role is VolunteerRole.community_worker and v.community == chatty.community
    )
    token = volunteer_token(ctx.secret, worker.id, alert.id)
    status, rollup = request_json(f"{stack.url}/w/{token}/rollup.json")
    assert status == 200
    assert [r["body"] for r in rollup["replies"]] == ["看到了，我们已经把阳台的花盆搬进来"]
