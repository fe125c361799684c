"""An alert's life in one place: what follows when it is issued, planned, ended, and when it expires.

Each stage does its own part and knows nothing of the stages after it; this module is where one
leads to the next, and what officers' commands and pages call to compose, approve and cancel.

- **Issued** (composed at a level that needs no second officer, or approved): it becomes one of
  the active alerts, the alert it updates or cancels ends (below), and its plan job is queued.
- **Planned** (that job, on a worker): the roster is frozen and the batches are queued
  (issuing); then, once per alert, the area's screens show it and their clearing is scheduled for
  its expiry (delivering), and its escalation ladder is scheduled (following).
- **Ended** (cancelled, or replaced by an update or a cancel message): replies stop counting for
  it, its ladder's scheduled steps are removed, and its screens are cleared, unless the message
  that replaces it has screens of its own, whose warning takes the old one's place.
- **Expired**: nothing runs but the screens' clearing scheduled when it was planned (and, for a
  drill, the keeping of its scorecard); batches, ladder steps and replies each check the alert's
  expiry themselves. A drill that ends earlier keeps its scorecard then (following).
"""

from __future__ import annotations

from typing import Any

from audiences.areas import AreaTree
from audiences.screens import screens_for
from broadcast.core.context import CONTROL_QUEUE, Context, current
from broadcast.core.jobs import PLAN_JOB, until_done
from broadcast.core.models import Alert, AlertDraft, AlertStatus, ChannelKind
from broadcast.delivering import displays
from broadcast.following import escalation, scorecards
from broadcast.issuing import alerts
from broadcast.issuing import plan as planning


def compose(
    ctx: Context,
    draft: AlertDraft,
    *,
    origin: str = "cli",
    tree: AreaTree | None = None,
    idempotency_key: str | None = None,
) -> Alert:
    """Store a new alert; it is issued at once unless its level needs a second officer.

    The same ``request_id`` from the same officer twice gives the same alert, never two; reused for
    a different warning it is refused (409). ``idempotency_key`` is the service's own (a Redis key
    no request can name), for messages it composes itself, such as one cancel message per alert.
    """
    alert, new = alerts.store(ctx, draft, origin=origin, tree=tree, idempotency_key=idempotency_key)
    if new and alert.status is AlertStatus.issued:
        issue(ctx, alert, draft.composed_by, origin)
    return alert


def approve(ctx: Context, alert_id: str, approver: str, *, origin: str = "cli") -> Alert:
    """The second officer's approval issues the alert; the composer cannot approve their own."""
    alert = alerts.record_approval(ctx, alert_id, approver, origin=origin)
    issue(ctx, alert, approver, origin)
    return alert


def cancel(ctx: Context, alert_id: str, officer: str, *, origin: str = "cli") -> Alert:
    """Stop an alert: batches not yet sent are skipped, replies stop counting, its ladder stops and
    its screens clear."""
    alert = alerts.record_cancel(ctx, alert_id, officer, origin=origin)
    end(ctx, alert_id, clear_screens=True)
    return alert


def issue(ctx: Context, alert: Alert, actor: str, origin: str) -> None:
    """An alert was issued: it is active, the alert it replaces ends, and its plan job is queued."""
    alerts.mark_issued(ctx, alert, actor, origin)
    replaced = alerts.supersede(ctx, alert, actor, origin)
    if replaced is not None:
        # The new alert's own screen message replaces the old one; without screens of its own, clear them.
        end(ctx, replaced, clear_screens=ChannelKind.screen not in alert.channels)
    ctx.queue(CONTROL_QUEUE).enqueue(
        PLAN_JOB,
        alert.id,
        job_id=f"{ctx.keys.ns}-plan-{alert.id}",
        retry=until_done(),
        job_timeout=600,
        result_ttl=3600,
    )


def plan_job(alert_id: str) -> dict[str, Any]:
    """RQ entry point: plan an issued alert."""
    return plan(current(), alert_id)


def plan(ctx: Context, alert_id: str) -> dict[str, Any]:
    """Freeze the roster (once) and queue its batches (each once), then start what follows them
    (once); returns the plan's counts."""
    alert = alerts.get_alert(ctx, alert_id)
    if alert.status in planning.NOT_PLANNED:
        return {"skipped": alert.status.value}
    queued = planning.queue_batches(ctx, alert)
    if planning.first_planning(ctx, alert_id):
        follow(ctx, alert)
    return planning.mark_sending(ctx, alert_id, queued)


def follow(ctx: Context, alert: Alert) -> None:
    """What follows the batches, once per alert: the screens of the area (cleared when the alert
    expires), and the escalation ladder."""
    if ChannelKind.screen in alert.channels:
        tree = AreaTree.load(ctx.redis, ctx.keys)
        if displays.plan_screens(ctx, alert, screens_for(ctx.redis, ctx.keys, tree, alert.target)):
            displays.schedule_clear_at_expiry(ctx, alert)
    escalation.schedule_ladder(ctx, alert)
    scorecards.schedule_scorecard(ctx, alert)


def end(ctx: Context, alert_id: str, *, clear_screens: bool) -> None:
    """An alert that no longer stands: replies stop counting for it, its ladder stops, its screens clear."""
    alerts.deactivate(ctx, alert_id)
    escalation.cancel_ladder(ctx, alert_id)
    ended = alerts.load_alert(ctx.redis, ctx.keys, alert_id)
    if ended is not None and ended.issued_at is not None:
        scorecards.schedule_scorecard(ctx, ended, now=True)  # a drill's figures are kept as it ended
    if clear_screens and ctx.redis.exists(ctx.keys.alert_screens(alert_id)):
        displays.schedule_clear_now(ctx, alert_id)
