"""The after-action report of a drill run on an injected clock, checked against figures this test works
out for itself from the ledger's raw bytes (every recipient's 16-byte time slot, the roster's
committees, the help and outcome records); the PDF's text read back with a PDF text extractor; and
two drills of one kind compared, committee by committee."""

from __future__ import annotations

import asyncio
import io
import json
import math
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from audiences.population import Population
from audiences.volunteers import VolunteerRole
from broadcast import lifecycle
from broadcast.core.clock import ManualClock
from broadcast.core.context import Context
from broadcast.core.models import AlertStatus, ChannelKind, EventKind, RecipientEvent
from broadcast.delivering.ledger import roster_index
from broadcast.following.followup import Outcome, record_outcome
from broadcast.following.review import after_action
from broadcast.following.scorecards import compare, compare_csv, drill_scorecards, keep_scorecard, scorecard_of
from broadcast.hearing.field_reports import (
    Category,
    FieldReport,
    Reporter,
    TriageState,
    TriageUpdate,
    mark_report,
    store_report,
)
from broadcast.hearing.inbound import Inbox
from broadcast.issuing import alerts
from broadcast.running.worker import drain
from broadcast.web.review_report import review_html, review_pdf
from channels.simulators.twilio import TwilioBehaviour
from tests.conftest import STREET, Stack
from tests.helpers import issue

T0 = datetime(2026, 5, 12, 6, 28, tzinfo=UTC)  # 14:28 Beijing time, the 5·12 drill


class TickingClock(ManualClock):
    """An injected clock that moves on a little every time it is read, so that sending a batch takes
    (injected) seconds, and that the test moves on by minutes."""

    def now(self) -> datetime:
        self._now += timedelta(milliseconds=200)
        return self._now


@pytest.fixture
def behaviour() -> TwilioBehaviour:
    """Every message delivered, nobody replies: the test says who confirms, and when."""
    return TwilioBehaviour(reply_share=0.0, help_share=0.0, status_delay=(0, 0.01))


@pytest.fixture
def clock(ctx: Context) -> TickingClock:
    ticking = TickingClock(T0)
    ctx.clock = ticking
    ctx.settings.batch_size = 100  # several batches, sent one after another on the injected clock
    return ticking


def run(ctx: Context, work: Any) -> Any:
    async def go() -> Any:
        client = ctx.async_redis()
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def drill(ctx: Context, stack: Stack, clock: TickingClock, share_of: Any) -> str:
    """A typhoon drill to 陆家嘴: sent, delivered, then confirmed committee by committee as ``share_of``
    (committee number → share) says, the confirmations spread over the first 40 minutes; three
    residents ask for help and their volunteers record an outcome; one field report is resolved."""
    alert = issue(ctx, [STREET])
    clock.advance(seconds=20)
    drain(ctx)
    stack.settle()
    index = run(ctx, lambda c: roster_index(c, ctx.keys, alert.id))
    assert index is not None
    ends = [*index.starts[1:], index.size]

    async def confirm(client: Any) -> None:
        inbox = Inbox(ctx, client)
        plan = []
        for i, (start, end) in enumerate(zip(index.starts, ends, strict=True)):
            people = list(range(start, end))
            chosen = people[: int(len(people) * share_of(i))]
            plan += [(1 + (n * 7 + i * 3) % 40, o) for n, o in enumerate(chosen)]
        for minute in range(1, 41):
            clock._now = T0 + timedelta(minutes=minute)
            events = [
                RecipientEvent(alert_id=alert.id, ordinal=o, kind=EventKind.acknowledged, channel=ChannelKind.sms)
                for m, o in plan
                if m == minute
            ]
            await inbox.record_recipient_events([(e, None) for e in events])
        clock._now = T0 + timedelta(minutes=41)
        confirmed = {o for _, o in plan}
        helpers = [o for o in range(index.size) if o not in confirmed][:3]
        for o in helpers:
            event = RecipientEvent(alert_id=alert.id, ordinal=o, kind=EventKind.needs_help, channel=ChannelKind.sms)
            await inbox.record_recipient_event(event)

    run(ctx, confirm)
    drain(ctx)  # the help cases: their volunteers are texted
    return alert.id


def later_outcomes(ctx: Context, population: Population, clock: TickingClock, alert_id: str) -> list[int]:
    """The volunteers reach the people who asked for help, ten minutes later."""
    alert = alerts.get_alert(ctx, alert_id)
    clock._now = T0 + timedelta(minutes=51)

    async def reach(client: Any) -> list[int]:
        index = await roster_index(client, ctx.keys, alert_id)
        assert index is not None
        asked = [int(m) for m in await client.zrange(ctx.keys.help_asked(alert_id), 0, -1)]
        covering = []
        for v in population.volunteers:
            if v.role is VolunteerRole.grid_worker:
                for span in await client.hmget(ctx.keys.ranges(alert_id), v.grids) if v.grids else []:
                    if span:
                        lo, hi = (int(x) for x in span.split(b":"))
                        covering.append((lo, hi, v))
        inbox = Inbox(ctx, client)
        for o in asked:
            volunteer = next(v for lo, hi, v in covering if lo <= o < hi)
            await record_outcome(ctx, client, inbox, alert, index, volunteer, o, Outcome.reached_safe, f"req-{o}-visit")
        return asked

    return list(run(ctx, reach))


def slots(ctx: Context, alert_id: str, size: int) -> list[tuple[int, int, int, int]]:
    """(sent, delivered, confirmed, method) of every recipient, straight from the ledger's bytes."""
    raw = (ctx.redis.get(ctx.keys.slots(alert_id)) or b"").ljust(size * 16, b"\0")
    return [(s, d, c, (rest >> 16) & 0xFF) for s, d, c, rest in struct.iter_unpack(">IIII", raw)]


def kth(times: list[int], share: float, of: int) -> int | None:
    need = math.ceil(share * of)
    return sorted(times)[need - 1] if need and len(times) >= need else None


def test_the_after_action_report_of_a_drill_agrees_with_the_ledger(
    clock: TickingClock, ctx: Context, population: Population, stack: Stack, tmp_path: Path, cli: Any
) -> None:
    alert_id = drill(ctx, stack, clock, lambda i: (0.35, 0.9, 0.6, 0.75)[i % 4])
    asked = later_outcomes(ctx, population, clock, alert_id)
    # A volunteer reports a flooded garage at minute 45; the duty room resolves it at minute 57.
    clock._now = T0 + timedelta(minutes=45)
    report = FieldReport(
        id="0",
        alert_id=alert_id,
        category=Category.flooding,
        text="地下车库进水",
        place=STREET[:9] + "001",
        community=STREET[:9] + "001",
        reporter=Reporter(kind="volunteer", id="V1", name="王"),
        source="page",
        at=clock.now(),
    )
    stored, _ = run(ctx, lambda c: store_report(c, ctx.keys, report, "flood-0001"))
    clock._now = T0 + timedelta(minutes=57)
    mark_report(ctx, alert_id, stored, TriageUpdate(state=TriageState.resolved, note="已抽水"), "officer-a", "t")
    clock._now = T0 + timedelta(hours=1)
    alert = alerts.get_alert(ctx, alert_id)
    review = run(ctx, lambda c: after_action(c, ctx.keys, ctx.settings, alert, clock.now()))

    # ---- the test's own figures, from the ledger's bytes
    roster = json.loads(ctx.redis.get(ctx.keys.roster_communities(alert_id)) or "{}")
    size = roster["size"]
    starts = [s for _, s in roster["communities"]]
    ends = [*starts[1:], size]
    table = slots(ctx, alert_id, size)
    sent = sorted(s - 1 for s, _, _, _ in table if s)
    delivered = sorted(d - 1 for _, d, _, _ in table if d)
    acked = [c - 1 if c else None for _, _, c, _ in table]
    issued = alert.issued_at
    assert issued is not None

    def when(seconds: int) -> str:
        return (issued + timedelta(seconds=seconds)).isoformat()

    t = review["timeline"]
    assert len(sent) == size and t["issued"] == issued.isoformat() and t["composed"] == alert.created_at.isoformat()
    assert t["approved"] == issued.isoformat(), "an orange drill is approved by a second officer"
    assert t["first_sent"] == when(sent[0]) and t["last_sent"] == when(sent[-1])
    for p in (50, 90, 99):
        assert t[f"sent_{p}"] == when(kth(sent, p / 100, len(sent)) or 0), p
    assert (t["first_delivered"], t["last_delivered"]) == (when(delivered[0]), when(delivered[-1]))
    assert sent[-1] > sent[0], "sending took injected time"

    # The curve: at every point, the people confirmed by then.
    curve = review["curve"]
    for minute, value in zip(curve["minutes"], curve["confirmed"], strict=True):
        assert value == sum(1 for a in acked if a is not None and a <= round(minute * 60)), minute
    assert curve["confirmed"][-1] == sum(1 for a in acked if a is not None) == review["totals"]["confirmed"]
    assert curve["street"][STREET] == curve["confirmed"] and curve["district"]["310115000000"] == curve["confirmed"]

    # Per committee: rate, minutes to 50 % and 80 %, help, door to door.
    outcomes = {int(k): json.loads(v) for k, v in ctx.redis.hgetall(ctx.keys.alert_outcomes(alert_id)).items()}
    rows = {c["code"]: c for c in review["committees"]}
    assert len(rows) == len(starts) >= 4
    for (code, start), end in zip(roster["communities"], ends, strict=True):
        mine = [a for a in acked[start:end] if a is not None]
        row = rows[code]
        targeted = end - start
        assert (row["targeted"], row["confirmed"]) == (targeted, len(mine)), code
        assert row["rate"] == round(len(mine) / targeted, 4)
        for share, name in ((0.5, "minutes_to_50"), (0.8, "minutes_to_80")):
            expected = kth(mine, share, targeted)
            assert row[name] == (None if expected is None else round(expected / 60, 1)), (code, name)
        assert row["help"] == sum(1 for o in asked if start <= o < end)
        assert row["visited"] == sum(1 for o in outcomes if start <= o < end)
        by_volunteer = sum(1 for _, _, c, m in table[start:end] if c and m == 5)  # AckMethod.volunteer
        assert row["to_visit"] == targeted - (len(mine) - by_volunteer)
    assert any(r["minutes_to_80"] is None for r in rows.values()), "a committee that never reached 80 %"
    assert any(r["minutes_to_80"] is not None for r in rows.values())

    lowest = review["lowest"]
    assert [c["rate"] for c in lowest] == sorted(c["rate"] for c in review["committees"])[: len(lowest)]
    assert all(c["reasons"] for c in lowest)
    helped = review["help"]
    assert helped["total"] == 3 and helped["contacted"] == 3
    for case in helped["cases"]:
        assert case["outcome"] == "reached_safe" and case["minutes_to_contact"] == 10.0
        assert case["volunteers_notified_at"] is not None
    assert review["door_to_door"]["outcomes"] == {"reached_safe": 3}
    assert review["reports"]["by_category"]["flooding"] == 1 and review["reports"]["median_minutes_to_resolve"] == 12.0
    sms = review["channels"]["sms"]
    assert sms["sent"] == size and sms["delivered"] == size
    parts = int(ctx.redis.hget(ctx.keys.counts(alert_id), "parts:sms") or 0)
    assert parts >= size and review["cost"]["sms_parts"] == parts
    assert review["cost"]["sms"] == round(parts * ctx.settings.sms_part_price, 2)

    # ---- the documents: HTML, and a PDF whose text is Chinese when read back
    html = review_html(review, ctx.settings)
    assert "事后评估报告" in html and 'data-step="sent_99"' in html
    pdf = review_pdf(review, ctx.settings)
    assert pdf.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    for words in (
        "事后评估报告",
        "确认曲线",
        "陆家嘴街道",
        review["committees"][0]["name"],
        "值班长",
        "签字",
        "地下车库进水",
    ):
        assert words in text, words
    # The command line writes the same report.
    code, out, _ = cli("alert", "report", alert_id, "--format", "json")
    assert code == 0 and json.loads(out)["timeline"] == t
    target = tmp_path / "review.pdf"
    assert cli("alert", "report", alert_id, "--format", "pdf", "--output", str(target))[0] == 0
    assert "陆家嘴街道" in PdfReader(str(target)).pages[0].extract_text()


def test_two_drills_of_one_kind_compare_committee_by_committee(
    clock: TickingClock, ctx: Context, population: Population, stack: Stack, cli: Any
) -> None:
    first = drill(ctx, stack, clock, lambda i: 0.4 if i % 2 else 0.8)
    lifecycle.cancel(ctx, first, "officer-a")
    drain(ctx)  # a drill that ends keeps its scorecard
    assert [c["alert"] for c in run(ctx, lambda c: drill_scorecards(c, ctx.keys, "typhoon"))] == [first]
    clock._now = T0 + timedelta(days=154)  # the 10·13 drill
    second = drill(ctx, stack, clock, lambda i: 0.85 if i % 2 else 0.5)
    assert alerts.get_alert(ctx, first).status is AlertStatus.cancelled

    async def keep(client: Any) -> dict[str, Any]:
        card = scorecard_of(
            await after_action(client, ctx.keys, ctx.settings, alerts.get_alert(ctx, second), clock.now())
        )
        await keep_scorecard(client, ctx.keys, card)
        return card

    latest = run(ctx, keep)
    cards = run(ctx, lambda c: drill_scorecards(c, ctx.keys, "typhoon"))
    assert [c["alert"] for c in cards] == [first, second], "oldest first"
    previous = cards[0]
    rows = compare(previous, latest, "committees")
    assert len(rows) == len(latest["committees"])
    for i, row in enumerate(rows):
        assert row["verdict"] == ("improved" if i % 2 else "worse"), row
        assert row["change"]["rate"] == round(row["after"]["rate"] - row["before"]["rate"], 4)
    street = compare(previous, latest, "streets")[0]
    assert street["code"] == STREET and street["change"]["rate"] == round(latest["rate"] - previous["rate"], 4)
    # Exported: one line per street and committee, the figures before and after.
    lines = compare_csv(previous, latest).lstrip("\ufeff").splitlines()
    assert lines[0].startswith("level,code,name,targeted_before") and len(lines) == 1 + 1 + len(rows)
    code, out, _ = cli("drills", "compare", "--event", "typhoon", "--format", "json")
    assert code == 0 and json.loads(out)["previous"] == first and json.loads(out)["latest"] == second
