"""``GET /openapi.json``: the JSON API described as OpenAPI 3.1, its schemas generated from the same
pydantic models that validate requests, so the document cannot drift from what is enforced."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from broadcast.core.models import Alert
from broadcast.web.app_api import ACK_PATH, AppAck
from broadcast.web.areas_api import PreviewRequest
from broadcast.web.console.schemas import (
    AlertList,
    AlertRequest,
    Approval,
    AuditPage,
    Cancellation,
    CancelResult,
    ErrorResponse,
)

OBJECT = "object"


ALERT_ID = {"type": "string", "pattern": r"^[0-9]{1,12}$"}
AREA_CODE = {"type": "string", "pattern": r"^[0-9]{12}([0-9]{2}([0-9]{3})?)?$"}
LEVELS = "(district|street|community)?"


class Operation(BaseModel):
    """One route of the API as the document lists it."""

    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | str = OBJECT  # a model, or a description of a free-form JSON object
    status: int = 200
    signed_in: bool = True
    query: list[dict[str, Any]] = []  # query parameters, as OpenAPI parameter objects
    stream: bool = False  # also answers text/event-stream to a client that asks for it


def query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    """A query parameter as the document declares it."""
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


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
        body=AlertRequest,
        answer="messages by channel and language, with SMS parts and push bytes",
    ),
    Operation(
        method="get",
        path="/api/v1/alerts/{id}",
        summary="Progress: totals, channels, and areas cut to the caller's own",
        answer="totals, channels, and areas by district, street and community",
        query=[
            query(
                "areas",
                {"type": "string", "pattern": f"^{LEVELS}(,{LEVELS})*$"},
                "the area levels to list, comma-separated (default all; district,street leaves out committees)",
            )
        ],
    ),
    Operation(
        method="get",
        path="/api/v1/alerts/{id}/events",
        summary="Live progress as server-sent events, one 'progress' event per change, to a client that "
        "accepts text/event-stream; to any other, the progress document as it is now",
        answer="the progress document (as text/event-stream: a stream of them)",
        stream=True,
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
    Operation(
        method="get",
        path="/api/v1/audit",
        summary="The audit log as the caller may read it, newest first",
        answer=AuditPage,
        query=[
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "entries per page (default 100)"),
            query(
                "before", {"type": "string", "pattern": r"^[0-9]{1,19}(-[0-9]{1,19})?$"}, "next_before of the last page"
            ),
            query("alert", ALERT_ID, "only the entries about this alert"),
        ],
    ),
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
        query=[
            query(
                "q",
                {"type": "string", "minLength": 1, "maxLength": 40, "pattern": r"[^ \t\n\r\f\v]"},
                "part of a name, or the start of a code",
                required=True,
            )
        ],
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
    content = _json(schema)
    if op.stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    out: dict[str, Any] = {
        "summary": op.summary,
        "responses": {
            str(op.status): {"description": "success", "content": content},
            "4XX": {"description": "refused; the body names the field at fault", "content": _json(_ref(ErrorResponse))},
        },
    }
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": _json(_ref(op.body))}
    path_schemas = {"id": ALERT_ID, "code": AREA_CODE}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in path_schemas.items()
        if "{" + name + "}" in op.path
    ]
    parameters += op.query
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
