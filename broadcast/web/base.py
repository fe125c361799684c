"""What the web app and every route module take from it: the app's keys (context, Redis client,
inbox), the JSON error answer, and the strict reading of a request body."""

from __future__ import annotations

from typing import Any

import redis.asyncio
from aiohttp import web
from pydantic import BaseModel, ValidationError

from broadcast.core.context import Context
from broadcast.core.errors import AlertError
from broadcast.hearing.inbound import Inbox

CTX = web.AppKey("ctx", Context)
REDIS = web.AppKey("redis", redis.asyncio.Redis)
INBOX = web.AppKey("inbox", Inbox)


def error(status: int, message: str, field: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if field:
        body["field"] = field
    body.update(extra)
    return web.json_response({"error": body}, status=status)


def validation_error(exc: ValidationError) -> web.Response:
    fields = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in exc.errors()]
    return error(422, f"invalid {fields[0]['field']}: {fields[0]['message']}", fields[0]["field"], fields=fields)


async def read_model(request: web.Request, model: type[BaseModel]) -> Any:
    """The body as ``model``, exactly as the OpenAPI document says: JSON, checked strictly (``0`` is not
    ``false``, ``"5"`` is not 5), nested at most a couple of hundred levels (deeper is not JSON we read)."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        bad_json = next((e for e in exc.errors() if e["type"] == "json_invalid"), None)
        if bad_json is not None:
            reason = str(bad_json.get("ctx", {}).get("error", "")) or "not JSON"
            raise AlertError(f"the body must be JSON ({reason})", status=400, field="body") from None
        raise
