"""The JSON API under hand-made requests: nothing a client sends gives a 500, and every answer is
what /openapi.json says it is."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from audiences.population import Population
from broadcast.core.context import Context
from broadcast.core.models import Level
from broadcast.web.console.openapi import document
from broadcast.web.console.users import Role
from tests.conftest import STREET, Stack
from tests.helpers import add_user, draft, issue, request_json, token_for
from tests.test_console_access import Visitor

PUDONG = "310115000000"


def raw_request(url: str, method: str, data: bytes | None, token: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {token}"})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_nothing_a_client_sends_gives_a_500(ctx: Context, population: Population, stack: Stack) -> None:
    token = token_for(ctx, "pd.officer", Role.duty_officer, [PUDONG])
    deep = b"[" * 10_000 + b"]" * 10_000
    for nested in (deep, b'{"event": ' + deep + b"}"):
        status, _, answer = raw_request(stack.url + "/api/v1/alerts", "POST", nested, token)
        assert status == 400 and json.loads(answer)["error"]["field"] == "body"
    huge = "99999999999999999999999-0"
    status, body = request_json(f"{stack.url}/api/v1/audit?before={huge}", token=token)
    assert status == 422 and body["error"]["field"] == "before"
    for bad in ("²", "1-²", "18446744073709551616-0"):
        assert request_json(f"{stack.url}/api/v1/audit?before={quote(bad)}", token=token)[0] == 422
    add_user(ctx, "pd.officer", Role.duty_officer, [PUDONG])
    visitor = Visitor(stack.url)
    visitor.sign_in("pd.officer")
    assert visitor.send(f"/console/audit?before={huge}").status == 200
    assert ctx.redis.get(ctx.keys.alert_next) is None


def test_the_api_answers_as_its_document_says(ctx: Context, population: Population, stack: Stack) -> None:
    token = token_for(ctx, "pd.officer", Role.duty_officer, [PUDONG])
    api = stack.url + "/api/v1/alerts"
    spec = document()
    schemas = spec["components"]["schemas"]

    alert = issue(ctx, [STREET], Level.blue)
    status, body = request_json(f"{api}/{alert.id}/cancel", "POST", {"notify": 0}, token=token)
    assert status == 422 and body["error"]["field"] == "notify", "0 is not false"
    status, body = request_json(f"{api}/{alert.id}/cancel", "POST", {"notify": False}, token=token)
    assert status == 200 and set(body) == {"alert", "lift"} and body["lift"] is None
    assert body["alert"]["status"] == "cancelled"
    assert spec["paths"]["/api/v1/alerts/{id}/cancel"]["post"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/CancelResult"}

    twice = draft([STREET], Level.blue).model_dump(mode="json") | {"composed_by": None, "channels": ["sms", "sms"]}
    assert request_json(api, "POST", twice, token=token)[0] == 422
    assert schemas["AlertRequest"]["properties"]["channels"]["uniqueItems"] is True
    assert schemas["AlertRequest"]["properties"]["languages"]["uniqueItems"] is True

    search = spec["paths"]["/api/v1/search/areas"]["get"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in search] == [("q", "query", True)]
    assert request_json(stack.url + "/api/v1/search/areas", token=token)[0] == 422

    unsigned = draft([STREET], Level.blue).model_dump(mode="json")
    del unsigned["composed_by"]
    status, preview = request_json(api + "/preview", "POST", unsigned, token=token)
    assert status == 200 and preview["messages"]["sms"]["zh"]["text"]
    assert spec["paths"]["/api/v1/alerts/preview"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AlertRequest"
    }

    many: dict[str, Any] = {**unsigned, "target": {"areas": [STREET] * 5_001}}
    status, body = request_json(api, "POST", many, token=token)
    assert status == 422 and body["error"]["field"] == "target.areas"
    assert schemas["Target"]["properties"]["areas"]["maxItems"] == 5_000

    status, headers, answer = raw_request(api + "/preview", "OPTIONS", None, token)
    assert status == 405 and headers["Allow"] == "POST" and json.loads(answer)["error"]
    status, headers, _ = raw_request(api + "/preview", "GET", None, token)
    assert status == 405 and headers["Allow"] == "POST"
