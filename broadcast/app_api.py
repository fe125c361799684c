"""The resident app's confirmation: a tap on a push notification says "I'm safe" or "I need help".

The notification carries the alert's id and a key signed for that alert; the app sends them back
with its own registration id, which names the resident. A wrong key is refused before anything
is looked up.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from audiences.residents import Resident
from broadcast.keys import as_text
from broadcast.models import AckMethod, ChannelKind, EventKind, RecipientEvent
from broadcast.tokens import verify_app_ack
from broadcast.web import CTX, INBOX, REDIS, error, read_model

ACK_PATH = "/api/v1/app/ack"


class AppAck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_id: str = Field(pattern=r"^\d{1,12}$")
    ack: str = Field(min_length=8, max_length=64)
    registration_id: str = Field(min_length=8, max_length=256)
    response: Literal["confirm", "help"]


async def app_ack(request: web.Request) -> web.Response:
    ctx, client, inbox = request.app[CTX], request.app[REDIS], request.app[INBOX]
    body = await read_model(request, AppAck)
    if not verify_app_ack(ctx.secret, body.alert_id, body.ack):
        return error(403, "the confirmation key does not belong to this alert", "ack")
    raw_rid = await client.hget(ctx.keys.resident_by_push_token(body.registration_id), body.registration_id)
    record = await client.hget(ctx.keys.resident_bucket(int(raw_rid)), as_text(raw_rid)) if raw_rid else None
    if record is None:
        return error(404, "this device is not registered to any resident", "registration_id")
    rid = int(as_text(raw_rid))
    found = await inbox.find_recipient({rid: Resident.from_record(record)}, [body.alert_id])
    if found is None:
        return error(404, "this resident is not among the recipients of a current alert with that id", "alert_id")
    alert_id, ordinal = found
    kind = EventKind.acknowledged if body.response == "confirm" else EventKind.needs_help
    event = RecipientEvent(
        alert_id=alert_id, ordinal=ordinal, kind=kind, channel=ChannelKind.push, method=AckMethod.app
    )
    recorded = await inbox.record_recipient_event(event)
    return web.json_response({"recorded": recorded.outcome})


def add_routes(app: web.Application) -> None:
    app.router.add_post(ACK_PATH, app_ack)
