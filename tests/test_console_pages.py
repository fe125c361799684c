"""What the console and field pages are built on, without a browser: the confirmation curve from the
recipients' time slots, help requests taken in hand (and refused where they should be), the audit
saying "cancel", the walk order of a volunteer's list, and times read in the configured zone."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from audiences.areas import AreaTree
from broadcast.core.context import Context
from broadcast.core.models import Alert, AlertStatus, EventKind, Level
from broadcast.core.settings import Settings
from broadcast.delivering.ledger import Ledger
from broadcast.following import progress
from broadcast.issuing import alerts
from broadcast.web.console.access import Forbidden
from broadcast.web.console.actions import cancel_as
from broadcast.web.console.help_cases import HelpState, HelpUpdate, mark_help
from broadcast.web.console.users import Role
from broadcast.web.followup_pages import floor_of, walk_order
from broadcast.web.pages.display import display
from tests.conftest import STREET
from tests.helpers import add_user, draft, issue

ISSUED = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)
COMMITTEE = "310115005001"


def stored_alert(ctx: Context, alert_id: str = "7") -> Alert:
    alert = Alert(
        **draft([STREET]).model_dump(), id=alert_id, status=AlertStatus.sending, created_at=ISSUED, issued_at=ISSUED
    )
    ctx.redis.set(ctx.keys.alert(alert_id), alert.model_dump_json())
    return alert


def curve_of(ctx: Context, alert: Alert, size: int, now: datetime) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        client = ctx.async_redis()
        try:
            return await progress.confirmation_curve(client, ctx.keys, alert, size, now)
        finally:
            await client.aclose()

    return asyncio.run(run())


def mark(ctx: Context, alert: Alert, event: EventKind, ordinals: range, seconds: int) -> None:
    async def run() -> None:
        client = ctx.async_redis()
        try:
            ledger = Ledger(client, ctx.keys, alert.id)
            at = ISSUED + timedelta(seconds=seconds)
            await ledger.mark(event, None, [(o, 0) for o in ordinals], issued_at=ISSUED, at=at)
        finally:
            await client.aclose()

    asyncio.run(run())


def at_minute(curve: dict[str, Any], series: str, minute: float) -> int:
    """The curve's value at the last point not after ``minute``."""
    return max(v for m, v in zip(curve["minutes"], curve[series], strict=True) if m <= minute)


def test_the_curve_counts_people_by_when_they_were_sent_to_and_confirmed(ctx: Context) -> None:
    alert = stored_alert(ctx)
    mark(ctx, alert, EventKind.sent, range(10), 5)
    mark(ctx, alert, EventKind.delivered, range(10), 20)
    mark(ctx, alert, EventKind.acknowledged, range(4), 65)
    mark(ctx, alert, EventKind.acknowledged, range(4, 6), 125)
    curve = curve_of(ctx, alert, 12, ISSUED + timedelta(minutes=3))
    assert curve["minutes"][0] == 0 and curve["minutes"][-1] == 3.0
    assert (curve["sent"][0], curve["sent"][-1]) == (0, 10)
    assert at_minute(curve, "confirmed", 1.0) == 0
    assert at_minute(curve, "confirmed", 1.2) == 4
    assert at_minute(curve, "confirmed", 2.0) == 4
    assert curve["confirmed"][-1] == 6 and curve["delivered"][-1] == 10
    assert curve["sampled"] is False


def test_a_large_roster_is_sampled_in_blocks_and_scaled(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "CURVE_SLOTS_READ", 2 * progress.CURVE_BLOCK)
    alert = stored_alert(ctx)
    size = 5 * progress.CURVE_BLOCK
    mark(ctx, alert, EventKind.sent, range(size), 30)
    mark(ctx, alert, EventKind.acknowledged, range(0, size, 2), 90)  # every other person confirmed
    curve = curve_of(ctx, alert, size, ISSUED + timedelta(minutes=2))
    assert curve["sampled"] is True
    assert curve["sent"][-1] == size
    assert curve["confirmed"][-1] == size // 2


@pytest.fixture
def help_asked(ctx: Context, tree: AreaTree) -> Alert:
    """An alert whose roster is one committee of ten; the resident at ordinal 4 asked for help."""
    alert = stored_alert(ctx)
    ctx.redis.set(ctx.keys.roster_communities(alert.id), json.dumps({"communities": [[COMMITTEE, 0]], "size": 10}))
    ctx.redis.zadd(ctx.keys.help_asked(alert.id), {"4": ISSUED.timestamp() + 60})
    return alert


def audit_actions(ctx: Context) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _, fields in ctx.redis.xrange(ctx.keys.audit, "-", "+")
    ]


def test_a_duty_officer_takes_a_help_request_in_hand_and_the_audit_says_so(ctx: Context, help_asked: Alert) -> None:
    officer = add_user(ctx, "zhang.wei", Role.duty_officer, ["310115000000"])
    saved = mark_help(ctx, officer, "7", 4, HelpUpdate(state=HelpState.assigned, assignee="王师傅"), "test")
    assert saved["state"] == "assigned" and saved["by"] == "zhang.wei"
    stored = json.loads(ctx.redis.hget(ctx.keys.help_handling("7"), "4") or "{}")
    assert stored["assignee"] == "王师傅"
    entry = audit_actions(ctx)[-1]
    assert entry["action"] == "help_case" and entry["alert"] == "7"
    assert json.loads(entry["detail"])["state"] == "assigned"
    mark_help(ctx, officer, "7", 4, HelpUpdate(state=HelpState.handled), "test")
    assert json.loads(ctx.redis.hget(ctx.keys.help_handling("7"), "4") or "{}")["state"] == "handled"
    mark_help(ctx, officer, "7", 4, HelpUpdate(state=HelpState.new), "test")
    assert ctx.redis.hget(ctx.keys.help_handling("7"), "4") is None


def test_help_handling_is_refused_clearly_and_changes_nothing(ctx: Context, help_asked: Alert) -> None:
    officer = add_user(ctx, "zhang.wei", Role.duty_officer, ["310115000000"])
    elsewhere = add_user(ctx, "wang.fang", Role.duty_officer, ["310104000000"])  # 徐汇区
    worker = add_user(ctx, "chen.jie", Role.community_worker, [COMMITTEE])
    before = len(audit_actions(ctx))
    with pytest.raises(alerts.AlertError) as not_asked:
        mark_help(ctx, officer, "7", 3, HelpUpdate(state=HelpState.handled), "test")
    assert not_asked.value.status == 404 and not_asked.value.field == "ordinal"
    with pytest.raises(Forbidden):
        mark_help(ctx, elsewhere, "7", 4, HelpUpdate(state=HelpState.handled), "test")
    with pytest.raises(Forbidden):
        mark_help(ctx, worker, "7", 4, HelpUpdate(state=HelpState.handled), "test")
    with pytest.raises(alerts.AlertError) as nobody:
        mark_help(ctx, officer, "7", 4, HelpUpdate(state=HelpState.assigned), "test")
    assert nobody.value.field == "assignee"
    with pytest.raises(ValidationError):
        HelpUpdate.model_validate({"state": "lost"})
    assert ctx.redis.hlen(ctx.keys.help_handling("7")) == 0
    assert len(audit_actions(ctx)) == before


def test_cancelling_an_issued_warning_is_audited_as_cancel(ctx: Context, tree: AreaTree) -> None:
    alert = issue(ctx, [STREET], Level.red)
    officer = add_user(ctx, "zhang.wei", Role.duty_officer, ["310115000000"])
    stopped, lift = cancel_as(ctx, officer, alert.id, "test", notify=True)
    assert stopped.status is AlertStatus.cancelled and lift is not None
    cancels = [e for e in audit_actions(ctx) if e["action"] == "cancel"]
    assert [(e["alert"], e["actor"]) for e in cancels] == [(alert.id, "zhang.wei")]
    assert json.loads(cancels[0]["detail"])["cancellation"] == lift.id
    # Asked again: refused, and still one "cancel" in the audit.
    with pytest.raises(alerts.AlertError) as again:
        cancel_as(ctx, officer, alert.id, "test", notify=True)
    assert again.value.status == 409
    assert len([e for e in audit_actions(ctx) if e["action"] == "cancel"]) == 1


def test_a_volunteer_walks_building_by_building_floor_by_floor_help_first() -> None:
    def resident(ordinal: int, building: str, room: str, help_: bool = False) -> dict[str, Any]:
        return {
            "ordinal": ordinal,
            "building": f"{building}号楼",
            "building_code": building,
            "room": room,
            "floor": floor_of(room),
            "state": "needs_help" if help_ else "",
            "vulnerable": False,
        }

    residents = [
        resident(3, "1", "102", help_=True),
        resident(0, "1", "101"),
        resident(1, "1", "201"),
        resident(2, "1", "103"),
        resident(5, "2", "1203"),
        resident(4, "2", "301", help_=True),
        resident(6, "2", "302"),
    ]
    groups = walk_order(residents)
    assert [(g["building_code"], g["floor"]) for g in groups] == [("1", 1), ("1", 2), ("2", 3), ("2", 12)]
    assert [r["ordinal"] for r in groups[0]["residents"]] == [3, 0, 2]  # help first, then by room
    assert [r["ordinal"] for r in groups[2]["residents"]] == [4, 6]
    assert (floor_of("1203"), floor_of("101"), floor_of("地下室")) == (12, 1, None)


def test_times_people_read_are_in_the_configured_zone(tmp_path: Any) -> None:
    moment = datetime(2026, 11, 29, 14, 25, tzinfo=UTC)
    shanghai = display(Settings(data_dir=tmp_path))
    assert shanghai.time(moment) == "11-29 22:25"
    assert shanghai.stamp(moment.isoformat()) == "2026-11-29 22:25:00 北京时间"
    london = display(Settings(data_dir=tmp_path, timezone="Europe/London"))
    assert london.time(moment) == "11-29 14:25"
    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(data_dir=tmp_path, timezone="Mars/Olympus")
