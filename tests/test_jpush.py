"""JPush batch single push against its simulator: one request carries up to 1,000 notifications, each
with its own recipient's key, and each answer goes back to its own recipient."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from audiences.population import Population
from broadcast.core.context import Context
from broadcast.core.models import ChannelKind
from broadcast.core.settings import Settings
from broadcast.core.tokens import app_ack_token, read_app_ack
from broadcast.delivering.ledger import Ledger
from broadcast.running.worker import drain
from channels.base import UNREGISTERED, OpenGate, OutboundMessage, Outcome, SendResult, Sent
from channels.push.jpush import BATCH_PATH, CID_PATH, SIMULATOR_APP_KEY, SIMULATOR_MASTER_SECRET, JPush
from tests.conftest import STREET, Stack
from tests.helpers import issue, progress, request_json

SECRET = b"jpush-test-secret"
ALERT = "41"

# What one message becomes in the pushlist: its own target, and its own key among the extras.
MESSAGE = OutboundMessage(
    ALERT,
    3,
    "jpush-device-0003",
    "请关紧门窗，减少外出。",
    validity_seconds=3600,
    extra={"title": "台风橙色预警", "data": {"alert_id": ALERT, "ack": "3.k3y"}},
)
BATCH_ENTRY = {
    "platform": "all",
    "target": "jpush-device-0003",
    "notification": {
        "android": {
            "alert": "请关紧门窗，减少外出。",
            "title": "台风橙色预警",
            "priority": 2,
            "extras": {"alert_id": ALERT, "ack": "3.k3y"},
        },
        "ios": {
            "alert": {"title": "台风橙色预警", "body": "请关紧门窗，减少外出。"},
            "sound": "default",
            "extras": {"alert_id": ALERT, "ack": "3.k3y"},
        },
    },
    "options": {"time_to_live": 3600, "apns_production": True},
}
CID = re.compile(rf"^{SIMULATOR_APP_KEY}-[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$")


def _entry(**changes: Any) -> dict[str, Any]:
    entry = json.loads(json.dumps(BATCH_ENTRY))
    for key, value in changes.items():
        if value is None:
            entry.pop(key)
        else:
            entry[key] = value
    return entry


def _without_android_alert() -> dict[str, Any]:
    entry = _entry()
    del entry["notification"]["android"]["alert"]
    return entry


AUDIENCE = {"registration_id": ["jpush-device-0003"]}


def _one(entry: dict[str, Any]) -> Callable[[list[str]], dict[str, Any]]:
    """A pushlist of one entry, under a cid from the pool."""
    return lambda cids: {"pushlist": {cids[0]: entry}}


# Requests the real API refuses, and how: (what is wrong, the body given cids from the pool, status, code).
MALFORMED: list[tuple[str, Callable[[list[str]], dict[str, Any]], int, int]] = [
    ("no pushlist", lambda cids: {"push_list": {cids[0]: BATCH_ENTRY}}, 400, 1002),
    ("an empty pushlist", lambda cids: {"pushlist": {}}, 400, 1003),
    ("a pushlist that is a list", lambda cids: {"pushlist": [BATCH_ENTRY]}, 400, 1003),
    ("a cid not from the pool", lambda cids: {"pushlist": {f"{SIMULATOR_APP_KEY}-made-up": BATCH_ENTRY}}, 400, 1003),
    ("an audience instead of a target", _one(_entry(target=None, audience=AUDIENCE)), 400, 1009),
    ("no target", _one(_entry(target=None)), 400, 1002),
    ("a list of targets", _one(_entry(target=["jpush-device-0003"])), 400, 1003),
    ("no platform", _one(_entry(platform=None)), 400, 1002),
    ("an Android notification without text", _one(_without_android_alert()), 400, 1002),
    ("a text time to live", _one(_entry(options={"time_to_live": "1h"})), 400, 1003),
    ("1,001 notifications", lambda cids: {"pushlist": {c: _entry(target=c[-12:]) for c in cids}}, 400, 1003),
]

# How JPush answers one device's entry in a batch → what the channel reports for that recipient.
PARTIAL: list[tuple[int, int | str, Outcome, int | None]] = [
    (1, "unregistered", Outcome.permanent, UNREGISTERED),  # 1011, dropped from the resident
    (4, 1000, Outcome.retryable, 1000),  # JPush's internal error
    (6, 2005, Outcome.permanent, 2005),  # the device has had too many messages
    (7, 1030, Outcome.retryable, 1030),  # JPush's internal timeout
    (9, 2002, Outcome.throttled, 2002),
]


class CountingGate(OpenGate):
    """What the shared rate limit would be charged, and a throttled batch sent again ``retries`` times."""

    def __init__(self, retries: int = 0, on_retry: Callable[[], None] | None = None) -> None:
        self.costs: list[float] = []
        self.admitted: set[int] = set()
        self.retries = retries
        self.on_retry = on_retry
        self.retried = 0

    async def admit(self, messages: Sequence[OutboundMessage], cost: float) -> None:
        self.costs.append(cost)
        self.admitted.update(m.ordinal for m in messages)

    async def retry_throttled(self, message: OutboundMessage, tries: int) -> bool:
        if tries >= self.retries:
            return False
        self.retried += 1
        if self.on_retry is not None:
            self.on_retry()
        return True


def _keyed(n: int) -> list[OutboundMessage]:
    """n recipients, each with their own device and their own key."""
    return [
        OutboundMessage(
            ALERT,
            o,
            f"jpush-device-{o:05d}",
            "请关紧门窗，减少外出。",
            extra={"title": "台风橙色预警", "data": {"alert_id": ALERT, "ack": app_ack_token(SECRET, ALERT, o)}},
        )
        for o in range(n)
    ]


async def _send(channel: JPush, messages: list[OutboundMessage], gate: OpenGate | None = None) -> list[SendResult]:
    async with channel:
        return [r async for r in channel.send(messages, gate or OpenGate())]


def _basic() -> str:
    return "Basic " + base64.b64encode(f"{SIMULATOR_APP_KEY}:{SIMULATOR_MASTER_SECRET}".encode()).decode()


def _call(url: str, body: Any = None, auth: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Authorization", auth or _basic())
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_notification_goes_out_in_the_batch_request_shape(settings: Settings, stack: Stack) -> None:
    results = asyncio.run(_send(JPush(settings), [MESSAGE]))
    assert [(r.ordinal, r.outcome) for r in results] == [(3, Outcome.accepted)]
    [batch] = stack.jpush.batches
    [(cid, entry)] = batch["pushlist"].items()
    assert CID.match(cid), cid
    assert entry == BATCH_ENTRY
    assert not stack.jpush.requests, "no single push"
    [shown] = stack.jpush.delivered
    assert (shown.token, shown.title, shown.data["ack"]) == ("jpush-device-0003", "台风橙色预警", "3.k3y")


@pytest.mark.parametrize(("case", "body", "status", "code"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_the_simulator_refuses_what_jpush_refuses(
    settings: Settings, stack: Stack, case: str, body: Callable[[list[str]], dict[str, Any]], status: int, code: int
) -> None:
    base = settings.simulator_url
    pool_status, pool = _call(f"{base}{CID_PATH}?count=1000&type=push")
    assert pool_status == 200 and len(pool["cidlist"]) == 1000
    cids = pool["cidlist"] + [_call(f"{base}{CID_PATH}?count=1")[1]["cidlist"][0]]
    answer = _call(f"{base}{BATCH_PATH}", body(cids))
    assert (answer[0], answer[1]["error"]["code"]) == (status, code), case
    assert not stack.jpush.batches and not stack.jpush.delivered, "nothing went out"


def test_the_simulator_refuses_wrong_credentials(settings: Settings, stack: Stack) -> None:
    wrong = "Basic " + base64.b64encode(b"0" * 24 + b":nope").decode()
    base = settings.simulator_url
    assert _call(f"{base}{CID_PATH}?count=1", auth=wrong)[0] == 401
    assert _call(f"{base}{BATCH_PATH}", {"pushlist": {}}, auth=wrong) == (
        401,
        {"error": {"code": 1004, "message": "Authen failed"}},
    )


def test_2500_recipients_go_in_3_requests_each_with_their_own_key(settings: Settings, stack: Stack) -> None:
    messages = _keyed(2500)
    gate = CountingGate()
    results = asyncio.run(_send(JPush(settings), messages, gate))

    assert sorted(r.ordinal for r in results) == list(range(2500)), "one result per recipient"
    assert {r.outcome for r in results} == {Outcome.accepted}
    assert len({r.provider_ref for r in results}) == 2500, "each notification is a message of its own"
    assert sorted(len(b["pushlist"]) for b in stack.jpush.batches) == [500, 1000, 1000]
    assert not stack.jpush.requests
    by_token = {m.address: m for m in messages}
    for batch in stack.jpush.batches:
        for entry in batch["pushlist"].values():
            own = by_token[entry["target"]].extra["data"]["ack"]
            assert entry["notification"]["android"]["extras"]["ack"] == own
            assert entry["notification"]["ios"]["extras"]["ack"] == own
    delivered = {n.token: n.data["ack"] for n in stack.jpush.delivered}
    assert len(stack.jpush.delivered) == 2500
    assert all(read_app_ack(SECRET, ALERT, delivered[m.address]) == m.ordinal for m in messages)
    # The shared rate limit is charged one unit per request: three for cids, three batches.
    assert stack.jpush.cid_requests == 3 and gate.costs == [1] * 6
    assert gate.admitted == set(range(2500))


def test_partial_failures_in_a_batch_reach_the_right_recipients(settings: Settings, stack: Stack) -> None:
    messages = _keyed(12)
    for ordinal, answer, _, _ in PARTIAL:
        token = messages[ordinal].address
        if answer == "unregistered":
            stack.jpush.behaviour.unregistered.add(token)
        else:
            stack.jpush.behaviour.refuse[token] = int(answer)
    results = asyncio.run(_send(JPush(settings), messages))

    expected: dict[int, tuple[Outcome, int | None]] = {o: (Outcome.accepted, None) for o in range(12)}
    expected.update({o: (outcome, code) for o, _, outcome, code in PARTIAL})
    assert {r.ordinal: (r.outcome, r.error_code) for r in results} == expected
    assert len(stack.jpush.batches) == 1
    refused = {messages[o].address for o, *_ in PARTIAL}
    assert {n.token for n in stack.jpush.delivered} == {m.address for m in messages} - refused


def test_a_throttled_batch_is_sent_again_with_the_same_cids(settings: Settings, stack: Stack) -> None:
    stack.jpush.behaviour.inject.append(429)
    gate = CountingGate(retries=3)
    results = asyncio.run(_send(JPush(settings), _keyed(1500), gate))

    assert sorted(r.ordinal for r in results) == list(range(1500))
    assert {r.outcome for r in results} == {Outcome.accepted}
    assert gate.retried == 1
    assert sorted(len(b["pushlist"]) for b in stack.jpush.batches) == [500, 1000]
    assert len(stack.jpush.delivered) == 1500 and len({n.token for n in stack.jpush.delivered}) == 1500
    # The retry keeps its cids: two cid requests, three batch requests (one throttled).
    assert stack.jpush.cid_requests == 2 and gate.costs == [1] * 5


def test_a_throttled_notification_is_sent_again_alone(settings: Settings, stack: Stack) -> None:
    messages = _keyed(10)
    stack.jpush.behaviour.refuse[messages[9].address] = 2002

    def recover() -> None:
        stack.loop.loop.call_soon_threadsafe(stack.jpush.behaviour.refuse.clear)

    results = asyncio.run(_send(JPush(settings), messages, CountingGate(retries=3, on_retry=recover)))
    assert {r.outcome for r in results} == {Outcome.accepted} and len(results) == 10
    first, again = stack.jpush.batches
    assert len(first["pushlist"]) == 10
    [(cid, entry)] = again["pushlist"].items()
    assert entry["target"] == messages[9].address and cid in first["pushlist"]
    assert len(stack.jpush.delivered) == 10


def test_sending_again_does_not_notify_twice(settings: Settings, stack: Stack) -> None:
    """What a retry after a lost answer does: the same cids, so JPush answers without pushing again."""
    messages = _keyed(5)

    async def twice() -> tuple[list[SendResult], list[SendResult]]:
        async with JPush(settings) as channel:
            first = [r async for r in channel.send(messages, OpenGate())]
            second = [r async for r in channel.send(messages, OpenGate())]
            return first, second

    first, second = asyncio.run(twice())
    assert sorted((r.ordinal, r.provider_ref) for r in first) == sorted((r.ordinal, r.provider_ref) for r in second)
    assert {r.outcome for r in second} == {Outcome.accepted}
    assert len(stack.jpush.delivered) == 5 and stack.jpush.cid_requests == 1


def test_an_app_without_the_batch_api_sends_one_device_per_request(settings: Settings, stack: Stack) -> None:
    stack.jpush.behaviour.vip = False
    messages = _keyed(25)
    stack.jpush.behaviour.unregistered.add(messages[2].address)
    results = {r.ordinal: (r.outcome, r.error_code) for r in asyncio.run(_send(JPush(settings), messages))}

    assert results == {o: (Outcome.permanent, UNREGISTERED) if o == 2 else (Outcome.accepted, None) for o in range(25)}
    assert not stack.jpush.batches and stack.jpush.cid_requests == 1
    assert sorted(r["audience"]["registration_id"][0] for r in stack.jpush.requests) == [m.address for m in messages]
    assert {n.data["ack"] for n in stack.jpush.delivered} == {
        m.extra["data"]["ack"] for m in messages if m.ordinal != 2
    }


def test_delivery_reports_say_who_got_their_notification(settings: Settings, stack: Stack) -> None:
    messages = _keyed(150)  # two report requests: at most 100 msg_ids each
    offline = {messages[o].address for o in (5, 120)}
    stack.jpush.behaviour.offline.update(offline)

    async def send_and_ask() -> list[int]:
        async with JPush(settings) as channel:
            sent = [
                Sent(r.ordinal, messages[r.ordinal].address, r.provider_ref or "")
                async for r in channel.send(messages, OpenGate())
            ]
            return sorted(e.ordinal for e in await channel.delivery_reports(ALERT, sent))

    assert asyncio.run(send_and_ask()) == [o for o in range(150) if o not in (5, 120)]


def test_an_alert_reaches_app_users_in_batches_and_each_key_confirms_its_own_recipient(
    ctx: Context, population: Population, stack: Stack
) -> None:
    stack.jpush.behaviour.inject.append(429)  # the first batch request is throttled, and sent again
    app_users = [r for r in population.residents if r.channels[0] is ChannelKind.push]
    vulnerable = [r for r in app_users if r.vulnerable]
    alert = issue(ctx, [STREET], channels=[ChannelKind.push, ChannelKind.sms])
    drain(ctx)
    stack.settle()

    delivered = stack.jpush.delivered
    assert sorted(n.token for n in delivered) == sorted(r.push_tokens[0] for r in app_users), "each once"
    # One request per batch job (vulnerable residents go first, in jobs of their own), not one per device.
    sizes = sorted(len(b["pushlist"]) for b in stack.jpush.batches)
    assert sizes == sorted([len(vulnerable), len(app_users) - len(vulnerable)]) and len(vulnerable) > 0
    assert not stack.jpush.requests
    assert progress(ctx, alert.id)["channels"]["push"]["sent"] == len(app_users)
    ordinals = [read_app_ack(ctx.secret, alert.id, n.data["ack"]) for n in delivered]
    assert None not in ordinals and len(set(ordinals)) == len(delivered), "a key of its own per notification"
    # The simulated app taps with the key its notification carried; the service checks that key
    # against the device's resident, so no refusal means every key was its own recipient's.
    assert stack.jpush.acks and not stack.jpush.ack_refusals

    def acknowledged() -> set[int]:
        async def read() -> list[bool]:
            client = ctx.async_redis()
            try:
                return await Ledger(client, ctx.keys, alert.id).bits("acknowledged", own)
            finally:
                await client.aclose()

        return {o for o, bit in zip(own, asyncio.run(read()), strict=True) if bit}

    own = [o for o in ordinals if o is not None]
    before = acknowledged()
    waiting = next(n for n in delivered if n.token not in stack.jpush.acks)
    ordinal = read_app_ack(ctx.secret, alert.id, waiting.data["ack"])
    assert ordinal is not None and ordinal not in before
    body = {"alert_id": alert.id, "ack": waiting.data["ack"], "registration_id": waiting.token, "response": "confirm"}
    assert request_json(f"{stack.url}/api/v1/app/ack", "POST", body) == (200, {"recorded": "acknowledged"})
    assert acknowledged() == before | {ordinal}, "exactly that recipient is confirmed"
