"""``GET /openapi.json``: the JSON API described as OpenAPI 3.1, its schemas generated from the same
pydantic models that validate requests, so the document cannot drift from what is enforced."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from audiences.api import PreviewRequest
from broadcast.app_api import ACK_PATH, AppAck
from broadcast.console.schemas import (
    AlertList,
    AlertRequest,
    Approval,
    AuditPage,
    Cancellation,
    CancelResult,
    ErrorResponse,
)
from broadcast.models import Alert, AlertDraft

OBJECT = "object"


class Operation(BaseModel):
    """One route of the API as the document lists it."""

    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | str = OBJECT  # a model, or a description of a free-form JSON object
    status: int = 200
    signed_in: bool = True


OPERATIONS = [
    Operation(method="get", path="/api/v1/alerts", summary="The newest alerts the caller may see", answer=AlertList),
    Operation(
        method="post",
        path="/api/v1/alerts",
        summary="Compose an alert in the caller's name; orange and red wait for a second person",
        body=AlertRequest,
        answer=Alert,
        status=201,
    ),
    Operation(
        method="post",
        path="/api/v1/alerts/preview",
        summary="Every channel's text and cost for a draft; stores nothing",
        body=AlertDraft,
        answer="messages by channel and language, with SMS parts and push bytes",
    ),
    Operation(
        method="get",
        path="/api/v1/alerts/{id}",
        summary="Progress: totals, channels, and areas cut to the caller's own",
        answer="totals, channels, and areas by district, street and community",
    ),
    Operation(
        method="get",
        path="/api/v1/alerts/{id}/events",
        summary="Live progress as server-sent events (text/event-stream), one 'progress' event per change",
        answer="a stream of progress documents",
    ),
    Operation(
        method="post",
        path="/api/v1/alerts/{id}/approve",
        summary="Approve as the caller, who must not be the composer",
        body=Approval,
        answer=Alert,
    ),
    Operation(
        method="post",
        path="/api/v1/alerts/{id}/cancel",
        summary="Stop an alert; with notify, first send its recipients the cancellation",
        body=Cancellation,
        answer=CancelResult,
    ),
    Operation(method="get", path="/api/v1/audit", summary="The audit log as the caller may read it", answer=AuditPage),
    Operation(method="get", path="/api/v1/areas", summary="How many areas of each level", answer="area statistics"),
    Operation(
        method="get",
        path="/api/v1/areas/{code}",
        summary="An area, its parents, its children and how many people each holds",
        answer="the area report",
    ),
    Operation(
        method="get",
        path="/api/v1/search/areas",
        summary="Areas inside the caller's own whose name contains q or whose code starts with it",
        answer="areas",
    ),
    Operation(
        method="post",
        path="/api/v1/targets/preview",
        summary="How many people a target reaches, per area and first channel",
        body=PreviewRequest,
        answer="counts per area and channel",
    ),
    Operation(
        method="post",
        path=ACK_PATH,
        summary="The resident app's confirmation, authenticated by the key the notification carried",
        body=AppAck,
        answer="what was recorded",
        signed_in=False,
    ),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(op: Operation) -> dict[str, Any]:
    answer = op.answer
    schema = _ref(answer) if not isinstance(answer, str) else {"type": "object", "description": answer}
    out: dict[str, Any] = {
        "summary": op.summary,
        "responses": {
            str(op.status): {"description": "success", "content": _json(schema)},
            "4XX": {"description": "refused; the body names the field at fault", "content": _json(_ref(ErrorResponse))},
        },
    }
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": _json(_ref(op.body))}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("id", "code")
        if "{" + name + "}" in op.path
    ]
    if parameters:
        out["parameters"] = parameters
    out["security"] = [{"bearer": []}, {"session": []}] if op.signed_in else []
    return out


def document() -> dict[str, Any]:
    """The OpenAPI document of the JSON API."""
    models: list[type[BaseModel]] = [ErrorResponse]
    for op in OPERATIONS:
        models += [m for m in (op.body, op.answer) if isinstance(m, type) and m not in models]
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "broadcast: public warning service",
            "version": "1",
            "description": "Every error is a JSON body {error: {message, field}} naming the input at fault.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "broadcast users token NAME --label L"},
                "session": {"type": "apiKey", "in": "cookie", "name": "bc_session"},
            },
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
