"""The resident app's confirmation: a tap on a push notification says "I'm safe" or "I need help".

Each notification carries the alert's id and a key signed for its recipient (their ordinal on the
alert's roster); the app sends them back with its own registration id. The key must be this
alert's, and the device must be the one the recipient registered: a key from one resident's
notification confirms nobody else. A wrong key, a device that is not the recipient's and a device
nobody registered get the same answer, so the endpoint tells nothing about which devices exist.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from broadcast.core.keys import as_text
from broadcast.core.models import AckMethod, ChannelKind, EventKind, RecipientEvent
from broadcast.core.tokens import read_app_ack
from broadcast.delivering.deliver import read_rids
from broadcast.web.base import CTX, INBOX, REDIS, error, read_model

ACK_PATH = "/api/v1/app/ack"
NOT_YOURS = "this confirmation key does not belong to this device and alert"


class AppAck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_id: str = Field(pattern=r"^\d{1,12}$")
    ack: str = Field(min_length=8, max_length=64)
    registration_id: str = Field(min_length=8, max_length=256)
    response: Literal["confirm", "help"]


async def app_ack(request: web.Request) -> web.Response:
    ctx, client, inbox = request.app[CTX], request.app[REDIS], request.app[INBOX]
    body = await read_model(request, AppAck)
    ordinal = read_app_ack(ctx.secret, body.alert_id, body.ack)
    if ordinal is None:
        return error(403, NOT_YOURS, "ack")
    alert = await inbox.alert(body.alert_id)
    if alert is None or not alert.is_active(ctx.clock.now()):
        return error(409, f"alert {body.alert_id} is no longer current; nothing was recorded", "alert_id")
    raw_rid = await client.hget(ctx.keys.resident_by_push_token(body.registration_id), body.registration_id)
    try:
        recipient = (await read_rids(client, ctx.keys, alert.id, [ordinal]))[0] if raw_rid else None
    except KeyError:  # beyond the roster
        recipient = None
    if recipient is None or recipient != int(as_text(raw_rid)):
        return error(403, NOT_YOURS, "ack")
    kind = EventKind.acknowledged if body.response == "confirm" else EventKind.needs_help
    event = RecipientEvent(
        alert_id=alert.id, ordinal=ordinal, kind=kind, channel=ChannelKind.push, method=AckMethod.app
    )
    recorded = await inbox.record_recipient_event(event)
    return web.json_response({"recorded": recorded.outcome})


def add_routes(app: web.Application) -> None:
    app.router.add_post(ACK_PATH, app_ack)
