"""Building and lift screens over a real MQTT broker: shown, acknowledged, offline, cleared."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from audiences.areas import AreaLevel
from audiences.population import Population
from audiences.screens import Screen, Transport, store_screens
from broadcast import lifecycle
from broadcast.composing.screen import half_columns
from broadcast.core.context import Context
from broadcast.core.models import ChannelKind, Target
from broadcast.delivering.displays import ScreenWatch, ack_signature, screen_key
from broadcast.running.worker import drain
from channels.screens.display import Broker, ack_topic
from channels.simulators.screens import ScreenBehaviour, ScreenSimulator
from tests.conftest import STREET, LoopThread, Stack
from tests.helpers import issue, progress

SIZES = [(16, 4), (10, 3), (24, 6)]


@pytest.fixture
def screens(ctx: Context, population: Population, mqtt_url: str) -> list[Screen]:
    """Six screens in the street's buildings, on the test broker."""
    ctx.settings.mqtt_url = mqtt_url
    buildings = [a.code for a in population.areas if a.level is AreaLevel.building][:6]
    made = [
        Screen(
            id=f"lift-{ctx.settings.namespace}-{i}",
            building=b,
            transport=Transport.mqtt,
            address=f"test/{ctx.settings.namespace}/screen/{i}",
            columns=SIZES[i % 3][0],
            lines=SIZES[i % 3][1],
        )
        for i, b in enumerate(buildings)
    ]
    store_screens(ctx.redis, ctx.keys, made)
    return made


@pytest.fixture
def devices(ctx: Context, screens: list[Screen], stack: Stack, mqtt_url: str) -> Iterator[ScreenSimulator]:
    behaviour = ScreenBehaviour(offline={screens[0].id}, silent={screens[1].id})
    simulator = ScreenSimulator(
        mqtt_url,
        ctx.settings.screen_topic_prefix,
        [(s.id, s.address, screen_key(ctx.secret, s.id)) for s in screens],
        ack_signature,
        behaviour,
    )
    stack.loop.run(simulator.start())
    yield simulator
    stack.loop.run(simulator.stop())


def wait_for(check: object, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


async def retained(mqtt_url: str, topic: str) -> bytes | None:
    """What a screen connecting now would be shown on its topic (the retained message), if anything."""
    async with Broker.from_url(mqtt_url).client() as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    return bytes(message.payload)  # type: ignore[arg-type]
        except TimeoutError:
            return None
    return None


def test_screens_show_acknowledge_and_clear(
    ctx: Context, population: Population, screens: list[Screen], stack: Stack, devices: ScreenSimulator, mqtt_url: str
) -> None:
    assert stack.services.screen_watch is not None
    stack.loop.run(stack.services.screen_watch.ready.wait(), timeout=15)
    alert = issue(ctx, [STREET], channels=[ChannelKind.sms, ChannelKind.screen])
    drain(ctx)
    stack.settle()

    online = [s for s in screens if s.id != screens[0].id]
    wait_for(lambda: all(devices.screens[s.id].shown for s in online), "the screens to show the warning")
    for screen in online:
        shown = devices.screens[screen.id].shown[-1]
        assert shown["alert_id"] == alert.id and shown["colour"] == "orange" and shown["exercise"] is True
        assert shown["pages"] and all(len(page) <= screen.lines for page in shown["pages"])
        assert all(half_columns(line) <= 2 * screen.columns for page in shown["pages"] for line in page)
        assert "台风" in "".join(shown["pages"][0])
    later = stack.loop.run(retained(mqtt_url, screens[2].address))
    assert later is not None and json.loads(later)["alert_id"] == alert.id, "a screen that reconnects shows it"

    wait_for(lambda: progress(ctx, alert.id)["screens"]["shown"] == len(screens) - 2, "acknowledgements")
    report = progress(ctx, alert.id)["screens"]
    assert report["targeted"] == 6 and report["published"] == 6
    assert report["shown"] == 4, "the silent screen never says shown; the offline one never receives"
    assert report["offline_screens"] == [screens[0].id]

    lifecycle.cancel(ctx, alert.id, "officer-a")
    drain(ctx)
    wait_for(lambda: all(devices.screens[s.id].cleared for s in online), "the screens to be cleared")
    assert stack.loop.run(retained(mqtt_url, screens[2].address)) is None, "nothing stays on a cleared screen"


def test_acks_that_are_not_the_screens_own_change_nothing(
    ctx: Context, population: Population, screens: list[Screen], stack: Stack, mqtt_url: str
) -> None:
    alert = issue(ctx, [STREET], channels=[ChannelKind.screen])
    drain(ctx)
    watch = ScreenWatch(ctx)
    prefix = ctx.settings.screen_topic_prefix
    key = screen_key(ctx.secret, screens[2].id)
    good = {"alert_id": alert.id, "status": "shown", "sig": ack_signature(key, alert.id, "shown")}
    cases = [
        (ack_topic(prefix, screens[2].id), {**good, "sig": ack_signature("stolen-key", alert.id, "shown")}),
        (ack_topic(prefix, screens[3].id), good),  # another screen's signature on this screen's topic
        (ack_topic(prefix, "no-such-screen"), good),
        (ack_topic("elsewhere", screens[2].id), good),
        (ack_topic(prefix, screens[2].id), {**good, "alert_id": "999999"}),
    ]

    async def run() -> list[str]:
        client = ctx.async_redis()
        try:
            outcomes = [await watch.handle(client, topic, json.dumps(body).encode()) for topic, body in cases]
            outcomes.append(await watch.handle(client, ack_topic(prefix, screens[2].id), b"{not json"))
            outcomes.append(await watch.handle(client, ack_topic(prefix, screens[2].id), json.dumps(good).encode()))
            return outcomes
        finally:
            await client.aclose()

    outcomes = LoopThread()
    try:
        results = outcomes.run(run())
    finally:
        outcomes.stop()
    assert results == ["refused"] * 6 + ["shown"]
    assert progress(ctx, alert.id)["screens"]["shown"] == 1


def test_screens_get_no_warning_meant_for_a_group(ctx: Context, population: Population, screens: list[Screen]) -> None:
    target = Target(areas=[STREET], groups=["elderly"])
    issue(ctx, [STREET], channels=[ChannelKind.sms, ChannelKind.screen], target=target)
    drain(ctx)
    assert not ctx.redis.exists(ctx.keys.alert_screens("1"))
