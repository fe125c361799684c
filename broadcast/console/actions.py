"""What a signed-in user does to alerts, checked against their role and areas, then carried out by
``broadcast.alerts`` (which audits each step). Pages and the JSON API both act through here.

Cancelling an issued warning lifts it: a cancel message (解除) goes to the same people, once however
often it is asked for, and the original stops sending. A warning still waiting for approval is
withdrawn instead: nobody has been told, so nobody needs to be.
"""

from __future__ import annotations

from broadcast import alerts
from broadcast.console.access import Permission, require, require_alert, require_areas
from broadcast.console.users import User
from broadcast.context import Context
from broadcast.models import Alert, AlertDraft, AlertStatus, MessageType

LIVE = (AlertStatus.issued, AlertStatus.sending)


def compose_as(ctx: Context, user: User, draft: AlertDraft, origin: str) -> Alert:
    """Compose (and, below the approval levels, issue) in the user's own name, inside their areas."""
    require(user, Permission.compose)
    require_areas(user, draft.target.areas)
    if draft.references:
        referenced = alerts.get_alert(ctx, draft.references)
        require_areas(user, referenced.target.areas, "references")
    return alerts.compose(ctx, draft.model_copy(update={"composed_by": user.name}), origin=origin)


def approve_as(ctx: Context, user: User, alert_id: str, origin: str) -> Alert:
    """The second person's approval, which issues the alert."""
    require_alert(user, alerts.get_alert(ctx, alert_id), Permission.approve)
    return alerts.approve(ctx, alert_id, user.name, origin=origin)


def lift_draft(alert: Alert, user: User) -> AlertDraft:
    """The cancel message for an issued alert: same event, level, people and channels."""
    return AlertDraft(
        event=alert.event,
        level=alert.level,
        target=alert.target,
        channels=alert.channels,
        languages=alert.languages,
        exercise=alert.exercise,
        composed_by=user.name,
        msg_type=MessageType.cancel,
        references=alert.id,
        # One cancel message per alert, however many officers press the button.
        request_id=f"lift-alert-{alert.id}",
    )


def cancel_as(ctx: Context, user: User, alert_id: str, origin: str, *, notify: bool) -> tuple[Alert, Alert | None]:
    """Stop an alert; with ``notify``, first tell its recipients it is lifted. Returns (alert, lift)."""
    alert = alerts.get_alert(ctx, alert_id)
    require_alert(user, alert, Permission.cancel)
    lift = None
    if notify:
        if alert.status not in LIVE:
            raise alerts.AlertError(
                f"alert {alert.id} is {alert.status.value}; only an issued warning can be lifted", status=409
            )
        lift = alerts.compose(ctx, lift_draft(alert, user), origin=origin)
    try:
        stopped = alerts.cancel(ctx, alert_id, user.name, origin=origin)
    except alerts.AlertError as exc:
        if lift is None or exc.status != 409:
            raise
        stopped = alerts.get_alert(ctx, alert_id)  # another officer lifted it a moment ago
    return stopped, lift
