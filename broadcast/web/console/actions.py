"""What a signed-in user does to alerts, checked against their role and areas, then carried out by
``broadcast.issuing.alerts`` (which audits each step). Pages and the JSON API both act through here.

Cancelling an issued warning lifts it: a cancel message (解除) goes to the same people, once however
often it is asked for, and the original stops sending. A warning still waiting for approval is
withdrawn instead: nobody has been told, so nobody needs to be.
"""

from __future__ import annotations

from broadcast import lifecycle
from broadcast.core.context import Context
from broadcast.core.models import Alert, AlertDraft, AlertStatus, MessageType
from broadcast.issuing import alerts
from broadcast.web.console.access import Permission, require, require_alert, require_areas, require_referenced
from broadcast.web.console.users import User, load_user

LIVE = (AlertStatus.issued, AlertStatus.sending)


def account(ctx: Context, name: str) -> User:
    """The enabled account a name typed on the command line stands for (any spelling of it)."""
    user = load_user(ctx.redis, ctx.keys, alerts.identity(name))
    if user is None:
        raise alerts.AlertError(
            f"no account named {name.strip()!r}; add one with `broadcast users add`", status=404, field="by"
        )
    if user.disabled:
        raise alerts.AlertError(f"the account {user.name} is disabled", status=403, field="by")
    return user


def compose_as(ctx: Context, user: User, draft: AlertDraft, origin: str) -> Alert:
    """Compose (and, below the approval levels, issue) in the user's own name, inside their areas."""
    require(user, Permission.compose)
    require_areas(user, draft.target.areas)
    if draft.references:
        require_referenced(user, alerts.get_alert(ctx, draft.references))
    return lifecycle.compose(ctx, draft.model_copy(update={"composed_by": user.name}), origin=origin)


def approve_as(ctx: Context, user: User, alert_id: str, origin: str) -> Alert:
    """The second person's approval, which issues the alert."""
    require_alert(user, alerts.get_alert(ctx, alert_id), Permission.approve)
    return lifecycle.approve(ctx, alert_id, user.name, origin=origin)


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
        # One cancel message per alert, however many officers press the button: its key is the
        # service's own, out of reach of any request_id a client sends.
        lift = lifecycle.compose(
            ctx, lift_draft(alert, user), origin=origin, idempotency_key=ctx.keys.alert_lift(alert.id)
        )
        if lift.references != alert.id or lift.msg_type is not MessageType.cancel:
            raise alerts.AlertError(f"alert {lift.id} is not the cancel message of alert {alert.id}", status=409)
    try:
        stopped = lifecycle.cancel(ctx, alert_id, user.name, origin=origin)
    except alerts.AlertError as exc:
        if lift is None or exc.status != 409:
            raise
        stopped = alerts.get_alert(ctx, alert_id)  # another officer lifted it a moment ago
    return stopped, lift
