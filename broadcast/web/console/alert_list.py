"""The alerts a user may see, newest first: alert ids are handed out in order, so the newest are
the highest ids still stored."""

from __future__ import annotations

import redis

from broadcast.core.keys import Keys
from broadcast.core.models import Alert
from broadcast.web.console.access import can_see
from broadcast.web.console.users import User

SCAN_LIMIT = 500  # the newest alerts looked at; older ones are reached by their id


def recent_alerts(client: redis.Redis, keys: Keys, limit: int = SCAN_LIMIT) -> list[Alert]:
    """The newest stored alerts (retention removes old ones), newest first."""
    last = int(client.get(keys.alert_next) or 0)
    ids = [str(i) for i in range(last, max(0, last - limit), -1)]
    if not ids:
        return []
    raw = client.mget([keys.alert(i) for i in ids])
    return [Alert.model_validate_json(r) for r in raw if r]


def visible_alerts(client: redis.Redis, keys: Keys, user: User, limit: int = 100) -> list[Alert]:
    """The newest alerts the user may see."""
    return [alert for alert in recent_alerts(client, keys) if can_see(user, alert)][:limit]


def all_sent(client: redis.Redis, keys: Keys, alerts: list[Alert]) -> dict[str, bool]:
    """Whether every recipient of each issued alert has been sent to or has failed (its queue is
    empty): "sending" stays an alert's stored status after the last batch, the page should not."""
    issued = [alert for alert in alerts if alert.issued_at is not None]
    if not issued:
        return {}
    with client.pipeline(transaction=False) as pipe:
        for alert in issued:
            pipe.hget(keys.plan(alert.id), "targeted")
            pipe.hmget(keys.counts(alert.id), ["sent", "failed"])
        raw = pipe.execute()
    out = {}
    for i, alert in enumerate(issued):
        targeted, (sent, failed) = raw[2 * i], raw[2 * i + 1]
        out[alert.id] = targeted is not None and int(sent or 0) + int(failed or 0) >= int(targeted)
    return out
