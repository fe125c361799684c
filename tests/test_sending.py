"""Sending: every error class of the SMS path, fallback to the next channel, and the shared rate limit."""

from __future__ import annotations

import asyncio

import pytest

from audiences.population import Population
from broadcast.core.clock import ManualClock
from broadcast.core.context import Context
from broadcast.core.models import ChannelKind
from broadcast.delivering.ratelimit import SharedRateLimit
from broadcast.running.worker import drain
from channels.simulators.twilio import Capacity
from tests.conftest import STREET, Stack
from tests.helpers import issue, progress, texts_to


@pytest.mark.parametrize(
    ("trouble", "fallback", "unreachable"),
    [
        ([429, 429], False, False),  # throttled: slow down, try again
        ([500, 503], False, False),  # retryable
        (["timeout"], False, False),  # retryable
        ("opted_out", True, False),  # opted out of SMS: the call still reaches them
        ("invalid", True, True),  # an invalid number fails by SMS and by voice: a volunteer must go
    ],
)
def test_sms_error_classes(
    ctx: Context,
    population: Population,
    stack: Stack,
    trouble: list[int | str] | str,
    fallback: bool,
    unreachable: bool,
) -> None:
    ctx.settings.send_timeout_seconds = 1.0
    sms_first = [
        r for r in population.residents if ChannelKind.voice in r.channels and r.channels[0] is not ChannelKind.voice
    ]
    victim = sms_first[0]
    assert victim.phone is not None
    if trouble == "invalid":
        stack.sim.behaviour.invalid_numbers.add(victim.phone)
    elif trouble == "opted_out":
        stack.sim.behaviour.opted_out_numbers.add(victim.phone)
    else:
        assert isinstance(trouble, list)
        stack.sim.behaviour.inject.extend(trouble)

    alert = issue(ctx, [STREET], channels=[ChannelKind.sms, ChannelKind.voice])
    drain(ctx)
    stack.settle()
    drain(ctx)
    stack.settle()

    everyone = {r.phone for r in population.residents}
    texted = set(texts_to(stack.sim, population))
    called = set(stack.sim.called)
    voice_first = {r.phone for r in population.residents if r.channels[0] is ChannelKind.voice}
    reached = {victim.phone} if fallback and not unreachable else set()
    assert called - voice_first == reached
    assert texted | called | ({victim.phone} if unreachable else set()) == everyone, "nobody else is left out"
    assert all(n == 1 for n in texts_to(stack.sim, population).values()), "no SMS twice"
    report = progress(ctx, alert.id)
    assert report["totals"]["failed"] == (1 if unreachable else 0)
    assert report["channels"]["sms"].get("failed", 0) == (1 if fallback else 0)
    assert report["channels"]["voice"].get("failed", 0) == (1 if unreachable else 0)
    if trouble in ([429, 429],):
        assert ctx.redis.exists(ctx.keys.rate_limit_learnt(f"twilio:{stack.sim.account_sid}")) == 1, (
            "no rate configured: the refusals taught every worker one"
        )


def test_rate_limit_is_shared_and_halves_when_throttled(ctx: Context) -> None:
    clock = ManualClock()

    async def run() -> tuple[list[bool], list[bool], str, float]:
        client = ctx.async_redis()
        try:
            one = SharedRateLimit(
                client, ctx.keys.rate_limit("acct"), ctx.keys.rate_limit_learnt("acct"), 100, 5, clock
            )
            two = SharedRateLimit(
                client, ctx.keys.rate_limit("acct"), ctx.keys.rate_limit_learnt("acct"), 100, 5, clock
            )
            # Two workers at one instant share five units of burst.
            at_once = [(await w._ask(1))[0] for w in (one, two, one, two, one, two)]
            clock.advance(seconds=0.05)  # five more units are due
            later = [(await one._ask(1))[0] for _ in range(6)]
            two.slow_down()
            clock.advance(seconds=1)
            await two._ask(1)
            _, wait = await two._ask(10)
            clock.advance(seconds=0.25)  # a quiet step: the learnt rate doubles back to the configured one
            await one._ask(0)
            return at_once, later, wait, one.in_force
        finally:
            await client.aclose()

    at_once, later, wait, recovered = asyncio.run(run())
    assert at_once == [True] * 5 + [False]
    assert later == [True] * 5 + [False]
    assert float(wait) == pytest.approx(0.12, abs=0.001), "throttled: the wait doubles (60 ms at the full rate)"
    assert recovered == 100.0, "never above the configured rate"


def test_without_a_configured_rate_the_pace_is_learnt_from_refusals(ctx: Context) -> None:
    clock = ManualClock()

    async def run() -> list[float]:
        client = ctx.async_redis()
        try:
            keys = (ctx.keys.rate_limit("acct"), ctx.keys.rate_limit_learnt("acct"))
            one, two = SharedRateLimit(client, *keys, clock=clock), SharedRateLimit(client, *keys, clock=clock)
            seen = []
            await one._ask(1)
            seen.append(one.in_force)  # no refusal yet: no limit
            one.slow_down()
            await one._ask(1)
            await two._ask(0)
            seen.append(two.in_force)  # the other worker learns it too
            clock.advance(seconds=1)  # four quiet steps: doubled four times
            await two._ask(0)
            seen.append(two.in_force)
            two.slow_down()
            await two._ask(0)
            seen.append(two.in_force)  # a refusal cuts it
            one.slow_down()
            await one._ask(0)
            seen.append(one.in_force)  # refusals of one overshoot cut it once
            clock.advance(seconds=0.5)
            await one._ask(0)
            seen.append(one.in_force)  # then it rises slowly
            clock.advance(seconds=5)
            await one._ask(0)
            clock.advance(seconds=0.5)
            await one._ask(0)
            seen.append(one.in_force)  # five quiet seconds: the refusals passed, it doubles again
            return seen
        finally:
            await client.aclose()

    free, started, doubled, cut, once, rising, probing = asyncio.run(run())
    assert free == 0.0
    assert started == 10.0
    assert doubled == 160.0
    assert cut == pytest.approx(160 / 2), "doubling overshot: back to the last rate that went through"
    assert once == cut
    assert rising == pytest.approx(cut * 1.015**2)
    # The quiet five seconds rise slowly (eight steps at most a look), then two doubling steps: a
    # passing storm of refusals does not leave the account crawling until the learnt rate is forgotten.
    assert probing == pytest.approx(rising * 1.015**8 * 2**2)


def test_sms_rate_limit_holds_across_a_batch(ctx: Context, population: Population, stack: Stack) -> None:
    ctx.settings.sms_rate_per_second = 400.0
    issue(ctx, [STREET])
    started = asyncio.run(_now())
    drain(ctx)
    elapsed = asyncio.run(_now()) - started
    assert sum(texts_to(stack.sim, population).values()) == 600
    assert elapsed >= 600 / 400 * 0.9, f"600 parts at 400/s took only {elapsed:.2f} s"


async def _now() -> float:
    return asyncio.get_running_loop().time()


def test_a_provider_at_capacity_gets_everyone_once_and_nobody_waits_for_a_later_batch(
    ctx: Context, population: Population, stack: Stack
) -> None:
    stack.sim.capacity = Capacity(300.0, queue_seconds=0.03)  # 300 a second; refuses what it cannot send now
    # However slow this machine, the provider refuses: its first 5 creates are answered 429.
    stack.sim.behaviour.inject = [429] * 5
    alert = issue(ctx, [STREET])
    drain(ctx)
    assert stack.sim.rejected[20429] >= 5, "the provider refused some: the test proves something"
    assert texts_to(stack.sim, population) == {r.phone: 1 for r in population.residents}, "everyone once"
    totals = progress(ctx, alert.id)["totals"]
    # "retried" counts messages put off to a later batch: throttled ones went again in their lanes instead.
    assert (totals["sent"], totals["retried"], totals["possible_duplicates"]) == (600, 0, 0)


def test_a_batch_gives_back_the_rate_it_took_and_did_not_spend(ctx: Context) -> None:
    clock = ManualClock()

    async def run() -> tuple[bool, bool]:
        client = ctx.async_redis()
        try:
            keys = (ctx.keys.rate_limit("acct"), ctx.keys.rate_limit_learnt("acct"))
            one = SharedRateLimit(client, *keys, rate=1000, burst=20, clock=clock)
            two = SharedRateLimit(client, *keys, rate=1000, burst=20, clock=clock)
            await one.take(1)  # takes a chunk of 20 ms' worth, spends one unit
            before = (await two._ask(20))[0]
            await one.release()
            after = (await two._ask(19))[0]
            return before, after
        finally:
            await client.aclose()

    before, after = asyncio.run(run())
    assert (before, after) == (False, True), "what one batch left unspent is another's at once"
