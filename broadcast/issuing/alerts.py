"""The alert's record: composed, approved (four eyes), issued, cancelled or replaced; idempotent;
every action audited.

These functions change the stored alert and its audit trail only. What follows from a change (the
plan job when it is issued, its ladder and screens stopped when it ends) is
``broadcast.lifecycle``'s, which officers' commands and pages call.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import redis
import redis.asyncio

from audiences.areas import AreaTree
from audiences.groups import unknown_groups
from broadcast.core.context import Context
from broadcast.core.errors import AlertError
from broadcast.core.keys import ALERT_RETENTION_SECONDS, Keys, as_text
from broadcast.core.models import Alert, AlertDraft, AlertStatus, MessageType

IDEMPOTENCY_SECONDS = 24 * 3600


def load_alert(client: redis.Redis, keys: Keys, alert_id: str) -> Alert | None:
    """The stored alert, or None."""
    raw = client.get(keys.alert(alert_id))
    return Alert.model_validate_json(raw) if raw else None


async def load_alert_async(client: redis.asyncio.Redis, keys: Keys, alert_id: str) -> Alert | None:
    """The stored alert, or None (for the asynchronous stages)."""
    raw = await client.get(keys.alert(alert_id))
    return Alert.model_validate_json(raw) if raw else None


def get_alert(ctx: Context, alert_id: str) -> Alert:
    """The stored alert, or a 404 AlertError."""
    alert = load_alert(ctx.redis, ctx.keys, alert_id)
    if alert is None:
        raise AlertError(f"no alert with id {alert_id}", status=404, field="id")
    return alert


def audit(
    ctx: Context, actor: str, action: str, *, alert_id: str | None = None, origin: str = "cli", **detail: Any
) -> None:
    """Append to the audit stream: who did what, when, from where."""
    entry = {
        "at": ctx.clock.now().isoformat(),
        "actor": actor,
        "action": action,
        "alert": alert_id or "",
        "origin": origin,
        "detail": json.dumps(detail, ensure_ascii=False, default=str),
    }
    ctx.redis.xadd(ctx.keys.audit, entry)  # type: ignore[arg-type]


def identity(name: str) -> str:
    """The officer a name stands for: account names are compared as the accounts, not as typed."""
    return name.strip().casefold()


def lifts(draft: AlertDraft, referenced: Alert) -> bool:
    """True when ``draft`` only lifts ``referenced``: a cancel at its level, to its people, on its channels."""
    return (
        draft.msg_type is MessageType.cancel
        and draft.references == referenced.id
        and draft.level is referenced.level
        and draft.exercise == referenced.exercise
        and draft.target == referenced.target
        and set(draft.channels) <= set(referenced.channels)
    )


def needs_approval(ctx: Context, draft: AlertDraft, referenced: Alert | None) -> bool:
    """A message at an approval level needs a second person, unless it only lifts the alert it names.

    What a message may do without approval follows its own level and reach: a "cancel" that goes
    to more people, on more channels or at another level than the alert it names is a new warning.
    """
    if draft.level not in ctx.settings.approval_levels:
        return False
    return referenced is None or not lifts(draft, referenced)


def request_key(keys: Keys, draft: AlertDraft) -> str | None:
    """Where a client's idempotency key is kept: its own, per composing account, never another's."""
    if not draft.request_id:
        return None
    scoped = hashlib.sha256(f"{identity(draft.composed_by)}\x1f{draft.request_id}".encode()).hexdigest()
    return keys.alert_idempotency(scoped)


def same_request(alert: Alert, draft: AlertDraft) -> bool:
    """True when ``draft`` asks for what ``alert`` already is (a retry, not a new warning)."""
    stored = AlertDraft.model_validate(alert.model_dump(include=set(AlertDraft.model_fields)))
    return stored.model_copy(update={"composed_by": identity(stored.composed_by)}) == draft.model_copy(
        update={"composed_by": identity(draft.composed_by)}
    )


def check_draft(ctx: Context, draft: AlertDraft, tree: AreaTree | None = None) -> Alert | None:
    """Everything that would make the alert fail later, found now: unknown areas, channels, templates.

    Returns the alert an update or cancel references."""
    tree = tree or AreaTree.load(ctx.redis, ctx.keys)
    unknown = tree.unknown([*draft.target.areas, *draft.target.exclude])
    if unknown:
        raise AlertError(f"unknown area code(s): {', '.join(unknown)}", status=422, field="target.areas")
    unknown = unknown_groups(ctx.redis, ctx.keys, draft.target.groups)
    if unknown:
        raise AlertError(f"unknown group(s): {', '.join(unknown)}", status=422, field="target.groups")
    from broadcast.composing.compose import check_templates, level_problem
    from channels import check_configured

    problems = check_configured(ctx.settings, draft.channels)
    if problems:
        raise AlertError("; ".join(problems), status=422, field="channels")
    problem = level_problem(draft, ctx.settings)
    if problem:
        raise AlertError(problem, status=422, field="level")
    ref = referenced_alert(ctx, draft)
    problems = check_templates(draft, ctx.settings, referenced=ref)
    if problems:
        raise AlertError("; ".join(problems), status=422, field="params")
    return ref


def referenced_alert(ctx: Context, draft: AlertDraft) -> Alert | None:
    """The alert an update or cancel changes; a 422 naming it when it does not exist or is another event."""
    if not draft.references:
        return None
    ref = load_alert(ctx.redis, ctx.keys, draft.references)
    if ref is None:
        raise AlertError(f"alert {draft.references} does not exist", status=422, field="references")
    if ref.event is not draft.event:
        raise AlertError(
            f"alert {ref.id} is a {ref.event.value} warning; its {draft.msg_type.value} must be {ref.event.value} too",
            status=422,
            field="event",
        )
    return ref


def store(
    ctx: Context,
    draft: AlertDraft,
    *,
    origin: str = "cli",
    tree: AreaTree | None = None,
    idempotency_key: str | None = None,
) -> tuple[Alert, bool]:
    """Store a new alert, issued at once unless its level needs a second officer; returns it, and
    whether it is new (False: a repeated request, answered with the alert it gave before).

    The same ``request_id`` from the same officer twice gives the same alert, never two; reused for
    a different warning it is refused (409). ``idempotency_key`` is the service's own (a Redis key
    no request can name), for messages it composes itself, such as one cancel message per alert.
    """
    key = idempotency_key or request_key(ctx.keys, draft)
    if key:
        existing = ctx.redis.get(key)
        if existing:
            return _repeated(ctx, as_text(existing), draft, checked=idempotency_key is None), False
    ref = check_draft(ctx, draft, tree)
    alert_id = str(ctx.redis.incr(ctx.keys.alert_next))
    if key and not ctx.redis.set(key, alert_id, nx=True, ex=IDEMPOTENCY_SECONDS):
        # Another request with the same key won the race; it is the alert.
        winner = ctx.redis.get(key)
        assert winner is not None
        return _repeated(ctx, as_text(winner), draft, checked=idempotency_key is None), False
    now = ctx.clock.now()
    alert = Alert(
        **draft.model_dump(),
        id=alert_id,
        status=AlertStatus.pending_approval if needs_approval(ctx, draft, ref) else AlertStatus.issued,
        created_at=now,
    )
    if alert.status is AlertStatus.issued:
        alert = alert.model_copy(update={"issued_at": now})
    _save(ctx, alert)
    audit(
        ctx,
        draft.composed_by,
        "compose",
        alert_id=alert_id,
        origin=origin,
        level=draft.level.value,
        event=draft.event.value,
        areas=draft.target.areas,
        exercise=draft.exercise,
    )
    return alert, True


def _repeated(ctx: Context, alert_id: str, draft: AlertDraft, *, checked: bool) -> Alert:
    """The alert an idempotency key already gave; a client's key reused for another warning is a 409."""
    alert = get_alert(ctx, alert_id)
    if checked and not same_request(alert, draft):
        raise AlertError(
            f"request_id {draft.request_id} was already used for alert {alert.id}, a different warning; "
            "use a new request_id for a new warning",
            status=409,
            field="request_id",
        )
    return alert


def record_approval(ctx: Context, alert_id: str, approver: str, *, origin: str = "cli") -> Alert:
    """The second officer's approval: the alert is issued; the composer cannot approve their own."""
    approver = approver.strip()
    if not approver:
        raise AlertError("the approver's name is required", status=422, field="approved_by")

    def change(alert: Alert) -> Alert:
        if alert.status is not AlertStatus.pending_approval:
            raise AlertError(f"alert {alert.id} is {alert.status.value}, not waiting for approval", status=409)
        if identity(approver) == identity(alert.composed_by):
            raise AlertError(
                "a second officer must approve: the composer cannot approve their own alert",
                status=403,
                field="approved_by",
            )
        return alert.model_copy(
            update={"status": AlertStatus.issued, "approved_by": approver, "issued_at": ctx.clock.now()}
        )

    alert = _update(ctx, alert_id, change)
    audit(ctx, approver, "approve", alert_id=alert_id, origin=origin)
    return alert


def record_cancel(ctx: Context, alert_id: str, officer: str, *, origin: str = "cli") -> Alert:
    """The alert is cancelled: batches not yet sent skip it."""

    def change(alert: Alert) -> Alert:
        if alert.status in (AlertStatus.cancelled, AlertStatus.expired):
            raise AlertError(f"alert {alert.id} is already {alert.status.value}", status=409)
        return alert.model_copy(update={"status": AlertStatus.cancelled, "cancelled_at": ctx.clock.now()})

    alert = _update(ctx, alert_id, change)
    audit(ctx, officer, "cancel", alert_id=alert_id, origin=origin)
    return alert


def deactivate(ctx: Context, alert_id: str) -> None:
    """An alert that no longer stands leaves the active ones: replies stop counting for it."""
    ctx.redis.zrem(ctx.keys.alerts_active, alert_id)


def supersede(ctx: Context, alert: Alert, actor: str, origin: str) -> str | None:
    """An update replaces the alert it references, a cancel message ends it (CAP's msgType); returns
    the id of the alert that ends (None for a new alert)."""
    if alert.msg_type is MessageType.alert or not alert.references:
        return None
    status = AlertStatus.superseded if alert.msg_type is MessageType.update else AlertStatus.cancelled

    ended: list[bool] = []

    def change(old: Alert) -> Alert:
        ended.clear()
        if old.status in (AlertStatus.cancelled, AlertStatus.expired, AlertStatus.superseded):
            return old
        ended.append(True)
        return old.model_copy(update={"status": status, "cancelled_at": ctx.clock.now()})

    _update(ctx, alert.references, change)
    if ended and alert.msg_type is MessageType.cancel:
        # The audit says what the officer did to the warning: it was cancelled, by this message.
        audit(ctx, actor, "cancel", alert_id=alert.references, origin=origin, cancellation=alert.id)
    return alert.references


def set_status(ctx: Context, alert_id: str, status: AlertStatus, **fields: Any) -> Alert:
    """Move an alert to ``status`` unless it was cancelled meanwhile."""

    def change(alert: Alert) -> Alert:
        if alert.status is AlertStatus.cancelled:
            return alert
        return alert.model_copy(update={"status": status, **fields})

    return _update(ctx, alert_id, change)


def _save(ctx: Context, alert: Alert, pipe: Any = None) -> None:
    target = pipe if pipe is not None else ctx.redis
    target.set(ctx.keys.alert(alert.id), alert.model_dump_json(), ex=ALERT_RETENTION_SECONDS)


def _update(ctx: Context, alert_id: str, change: Any) -> Alert:
    key = ctx.keys.alert(alert_id)
    with ctx.redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                if raw is None:
                    raise AlertError(f"no alert with id {alert_id}", status=404, field="id")
                alert = change(Alert.model_validate_json(raw))
                pipe.multi()
                _save(ctx, alert, pipe)
                pipe.execute()
                return alert
            except redis.WatchError:
                continue


def mark_issued(ctx: Context, alert: Alert, actor: str, origin: str) -> None:
    """The alert is issued: it is one of the active alerts (replies are matched to it), and audited."""
    issued_at: datetime = alert.issued_at or ctx.clock.now()
    ctx.redis.zadd(ctx.keys.alerts_active, {alert.id: issued_at.timestamp()})
    audit(ctx, actor, "issue", alert_id=alert.id, origin=origin)
