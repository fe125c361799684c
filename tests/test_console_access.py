"""Who gets into the console and the API, and what each role and area may see and do."""

from __future__ import annotations

import http.cookiejar
import io
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from audiences.areas import AreaTree
from audiences.population import Population
from broadcast.core.context import Context
from broadcast.core.models import EventType, Level
from broadcast.running.cli import main
from broadcast.running.worker import drain
from broadcast.web.app import create_app
from broadcast.web.console.api_tokens import revoke_token
from broadcast.web.console.openapi import document
from broadcast.web.console.users import Role, load_user
from tests.conftest import STREET, Stack
from tests.helpers import PASSWORD, add_user, draft, issue, request_json, token_for
from tests.samples import sample_draft

HUANGPU_STREET = "310101002000"
PUDONG = "310115000000"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Visitor:
    """A browser without a screen: keeps cookies, shows redirects as they are."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)
        self.headers: dict[str, str] = {}

    def send(self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Any:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            response = self.opener.open(request, timeout=20)
        except urllib.error.HTTPError as exc:
            response = exc
        response.text = response.read().decode()
        self.headers = dict(response.headers)
        return response

    def sign_in(self, name: str, password: str = PASSWORD) -> Any:
        form = self.send("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text
        return self.send("/login", {"csrf": csrf.group(1), "name": name, "password": password, "next": "/console"})

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.send("/console").text)
        assert found
        return found.group(1)


def guarded_routes(ctx: Context) -> list[tuple[str, str]]:
    app = create_app(ctx)
    out = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/v1/") and path != "/api/v1/app/ack" and route.method != "HEAD":
            out.append((route.method, path.replace("{id}", "1").replace("{code}", STREET)))
    return out


def test_every_api_route_but_the_apps_signed_ack_refuses_an_anonymous_caller(ctx: Context, stack: Stack) -> None:
    routes = guarded_routes(ctx)
    assert ("POST", "/api/v1/alerts") in routes and ("GET", "/api/v1/audit") in routes
    for method, path in routes:
        status, body = request_json(stack.url + path, method, {} if method == "POST" else None)
        assert status == 401, (method, path, body)
        assert body["error"]["field"] == "Authorization"
    for token in ("bct_forged", "not-a-token"):
        assert request_json(stack.url + "/api/v1/alerts", token=token)[0] == 401
    # Routes that authenticate by signature stay open to their callers.
    assert request_json(stack.url + "/healthz") == (200, {"ok": True})
    assert request_json(stack.url + "/api/v1/app/ack", "POST", {})[0] == 422
    assert request_json(stack.url + "/openapi.json")[0] == 200
    visitor = Visitor(stack.url)
    assert visitor.send("/c/AAAAAAAAAAAAAAAA").status == 404
    assert visitor.send("/console/compose").status == 303
    assert visitor.headers["Location"] == "/login?next=/console/compose"


def test_signing_in_sets_a_strict_http_only_cookie_and_is_audited(ctx: Context, tree: AreaTree, stack: Stack) -> None:
    add_user(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    visitor = Visitor(stack.url)
    answer = visitor.sign_in("zhang.wei", "wrong password")
    assert answer.status == 401 and "Wrong user name or password" in answer.text
    answer = visitor.sign_in("zhang.wei")
    assert answer.status == 303 and answer.headers["Location"] == "/console"
    cookie = next(c for c in answer.headers.get_all("Set-Cookie") if c.startswith("bc_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "zhang.wei（值班员）" in visitor.send("/console").text
    actions = [(e[1][b"actor"], e[1][b"action"]) for e in ctx.redis.xrange(ctx.keys.audit)]
    assert actions == [(b"zhang.wei", b"sign_in_failed"), (b"zhang.wei", b"sign_in")]
    assert PASSWORD.encode() not in b"".join(v for e in ctx.redis.xrange(ctx.keys.audit) for v in e[1].values())


def test_too_many_failed_sign_ins_lock_the_account_even_for_the_right_password(
    ctx: Context, tree: AreaTree, stack: Stack
) -> None:
    add_user(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    visitor = Visitor(stack.url)
    for _ in range(ctx.settings.login_attempts):
        assert visitor.sign_in("zhang.wei", "guess guess guess").status == 401
    answer = visitor.sign_in("zhang.wei")
    assert answer.status == 429 and "Too many failed sign-ins; try again in 15 min" in answer.text
    assert visitor.send("/console").status == 303, "no session was opened"


def test_a_form_or_script_without_the_sessions_csrf_token_changes_nothing(
    ctx: Context, population: Population, stack: Stack
) -> None:
    add_user(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    visitor = Visitor(stack.url)
    visitor.sign_in("zhang.wei")
    body = sample_draft(EventType.typhoon, Level.orange).model_dump(mode="json") | {"composed_by": "zhang.wei"}
    form = {"draft": str(body), "request_id": "abcdefgh12"}
    answer = visitor.send("/console/alerts", form)
    assert answer.status == 403 and "reload and try again" in answer.text
    answer = visitor.send("/console/alerts", {**form, "csrf": "forged-token"})
    assert answer.status == 403
    api = urllib.request.Request(stack.url + "/api/v1/alerts", data=b"{}", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        visitor.opener.open(api, timeout=10)
    assert refused.value.code == 403 and b'"field": "csrf"' in refused.value.read()
    assert ctx.redis.get(ctx.keys.alert_next) is None
    assert visitor.send("/console/logout", {"csrf": visitor.csrf()}).status == 303
    assert visitor.send("/console").status == 303, "signed out"


def test_an_officer_composes_only_inside_their_areas_and_only_in_their_own_name(
    ctx: Context, population: Population, stack: Stack
) -> None:
    token = token_for(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    outside = draft([HUANGPU_STREET], composed_by="zhang.wei").model_dump(mode="json")
    status, body = request_json(stack.url + "/api/v1/alerts", "POST", outside, token=token)
    assert status == 403 and body["error"]["field"] == "target.areas"
    assert HUANGPU_STREET in body["error"]["message"]
    impostor = draft([STREET], composed_by="li.na").model_dump(mode="json")
    status, body = request_json(stack.url + "/api/v1/alerts", "POST", impostor, token=token)
    assert status == 403 and body["error"]["field"] == "composed_by"
    assert ctx.redis.get(ctx.keys.alert_next) is None

    inside = draft([STREET], Level.red).model_dump(mode="json") | {"composed_by": None}
    status, alert = request_json(stack.url + "/api/v1/alerts", "POST", inside, token=token)
    assert status == 201 and alert["composed_by"] == "zhang.wei" and alert["status"] == "pending_approval"
    approve = f"{stack.url}/api/v1/alerts/{alert['id']}/approve"
    status, body = request_json(approve, "POST", {}, token=token)
    assert status == 403 and "may not approve" in body["error"]["message"]
    approver = token_for(ctx, "li.na", Role.approver, [PUDONG])
    status, body = request_json(approve, "POST", {"approved_by": "zhang.wei"}, token=approver)
    assert status == 403 and body["error"]["field"] == "approved_by"
    huangpu_approver = token_for(ctx, "wang.fang", Role.approver, ["310101000000"])
    status, body = request_json(approve, "POST", {}, token=huangpu_approver)
    assert status == 403, "an approver of another district sees nothing of it"
    status, body = request_json(approve, "POST", {}, token=approver)
    assert status == 200 and body["approved_by"] == "li.na" and body["status"] == "issued"


def test_cancelling_with_notify_sends_one_cancellation_to_the_same_people(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert = issue(ctx, [STREET], Level.yellow)
    drain(ctx)
    token = token_for(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    url = f"{stack.url}/api/v1/alerts/{alert.id}/cancel"
    status, body = request_json(url, "POST", {"notify": True}, token=token)
    assert status == 200 and body["alert"]["status"] == "cancelled"
    lift = body["lift"]
    assert (lift["msg_type"], lift["references"], lift["target"]) == ("cancel", alert.id, alert.target.model_dump())
    status, again = request_json(url, "POST", {"notify": True}, token=token)
    assert status == 409 and "cancelled" in again["error"]["message"]
    assert int(ctx.redis.get(ctx.keys.alert_next) or 0) == 2, "one cancellation, however often it is asked for"


def test_a_community_worker_sees_only_their_committee_and_a_volunteer_nothing_of_the_console(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert = issue(ctx, [STREET])
    drain(ctx)
    stack.settle()
    committee = sorted({r.community for r in population.residents})[0]
    worker = token_for(ctx, "chen.jie", Role.community_worker, [committee])
    status, progress = request_json(f"{stack.url}/api/v1/alerts/{alert.id}", token=worker)
    assert status == 200
    assert [row["code"] for row in progress["areas"]["community"]] == [committee]
    other = issue(ctx, [HUANGPU_STREET], Level.blue)
    status, body = request_json(f"{stack.url}/api/v1/alerts/{other.id}", token=worker)
    assert status == 403 and body["error"]["field"] == "id"
    status, listing = request_json(f"{stack.url}/api/v1/alerts", token=worker)
    assert [a["id"] for a in listing["alerts"]] == [alert.id]
    status, body = request_json(
        f"{stack.url}/api/v1/alerts", "POST", draft([committee]).model_dump(mode="json"), token=worker
    )
    assert status == 403

    visitor = Visitor(stack.url)
    add_user(ctx, "chen.jie", Role.community_worker, [committee])
    visitor.sign_in("chen.jie")
    page = visitor.send("/console/community").text
    row = next(r for r in progress["areas"]["community"])
    assert row["name"] in page and f'<b class="confirmed">{row["acknowledged"]}</b>' in page

    volunteer = token_for(ctx, "xiao.li", Role.volunteer, [committee])
    for path in ("/api/v1/alerts", f"/api/v1/alerts/{alert.id}", "/api/v1/areas"):
        assert request_json(stack.url + path, token=volunteer)[0] == 403
    add_user(ctx, "xiao.li", Role.volunteer, [committee])
    visitor = Visitor(stack.url)
    visitor.sign_in("xiao.li")
    assert "My work lists" in visitor.send("/console").text
    assert visitor.send("/console/compose").status == 403


def test_a_revoked_token_or_disabled_user_is_refused_at_once(ctx: Context, tree: AreaTree, stack: Stack) -> None:
    token = token_for(ctx, "zhang.wei")
    assert request_json(stack.url + "/api/v1/alerts", token=token)[0] == 200
    revoke_token(ctx.redis, ctx.keys, "zhang.wei", "tests")
    assert request_json(stack.url + "/api/v1/alerts", token=token)[0] == 401
    token = token_for(ctx, "zhang.wei")
    user = load_user(ctx.redis, ctx.keys, "zhang.wei")
    assert user is not None
    ctx.redis.hset(ctx.keys.users, "zhang.wei", user.model_copy(update={"disabled": True}).model_dump_json())
    assert request_json(stack.url + "/api/v1/alerts", token=token)[0] == 401


def test_the_audit_log_is_exported_with_who_what_and_from_where(
    ctx: Context, population: Population, stack: Stack
) -> None:
    token = token_for(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    body = draft([STREET], Level.yellow, composed_by="zhang.wei").model_dump(mode="json")
    assert request_json(stack.url + "/api/v1/alerts", "POST", body, token=token)[0] == 201
    status, page = request_json(stack.url + "/api/v1/audit", token=token)
    assert status == 200
    assert [(e["actor"], e["action"]) for e in page["entries"]] == [("zhang.wei", "issue"), ("zhang.wei", "compose")]
    assert page["entries"][1]["origin"] == "127.0.0.1 (token tests)"
    add_user(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    visitor = Visitor(stack.url)
    visitor.sign_in("zhang.wei")
    export = visitor.send("/console/audit.csv")
    assert export.status == 200 and "attachment" in visitor.headers["Content-Disposition"]
    lines = export.text.lstrip("\ufeff").splitlines()
    assert lines[0] == "id,at,actor,action,alert,origin,detail"
    assert any(",zhang.wei,compose,1,127.0.0.1 (token tests)," in line for line in lines)
    assert request_json(stack.url + "/api/v1/audit?limit=many", token=token)[1]["error"]["field"] == "limit"


def test_the_openapi_document_lists_every_api_route_with_schemas_from_the_models(ctx: Context) -> None:
    spec = document()
    for method, path in guarded_routes(ctx):
        template = path.replace("/1", "/{id}", 1) if path.startswith("/api/v1/alerts/1") else path
        template = template.replace(STREET, "{code}")
        assert method.lower() in spec["paths"].get(template, {}), (method, template)
    schemas = spec["components"]["schemas"]
    create = spec["paths"]["/api/v1/alerts"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/AlertRequest")
    assert "composed_by" not in schemas["AlertRequest"].get("required", [])
    assert set(schemas["EventType"]["enum"]) >= {"typhoon", "rainstorm"}
    assert spec["paths"]["/api/v1/app/ack"]["post"]["security"] == []


def test_users_are_added_from_the_command_line_with_argon2_hashes(
    ctx: Context, tree: AreaTree, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", ctx.redis_url)
    monkeypatch.setenv("BROADCAST_NAMESPACE", ctx.keys.ns)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "zhang.wei", "--role", "duty_officer", "--area", PUDONG, "--password-stdin"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        main(["users", "add", "zhang.wei", "--role", "duty_officer", "--area", "310115999000", "--password-stdin"]) == 2
    )
    assert "unknown area code(s): 310115999000" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "zhang.wei", "--role", "duty_officer", "--area", PUDONG, "--password-stdin"]) == 0
    assert "added zhang.wei (duty_officer); areas: 310115000000 浦东新区" in capsys.readouterr().out
    user = load_user(ctx.redis, ctx.keys, "zhang.wei")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in ctx.redis.hget(ctx.keys.users, "zhang.wei").decode()
    assert main(["users", "token", "zhang.wei", "--label", "ci-bot"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("bct_") and token.encode() not in b"".join(ctx.redis.keys("*apitoken*"))


def test_an_admin_disables_an_account_and_nobody_else_may(ctx: Context, tree: AreaTree, stack: Stack) -> None:
    add_user(ctx, "root.admin", Role.admin)
    add_user(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    officer = Visitor(stack.url)
    officer.sign_in("zhang.wei")
    assert officer.send("/console/users").status == 403
    admin = Visitor(stack.url)
    admin.sign_in("root.admin")
    page = admin.send("/console/users").text
    assert "zhang.wei" in page and "值班员 duty_officer" in page
    assert admin.send("/console/users/zhang.wei/disabled", {"csrf": admin.csrf(), "disabled": "1"}).status == 303
    assert officer.send("/console").status == 303, "a disabled account's session ends at once"
    assert officer.sign_in("zhang.wei").status == 401
    last = ctx.redis.xrevrange(ctx.keys.audit, count=2)
    assert (last[1][1][b"actor"], last[1][1][b"action"]) == (b"root.admin", b"user_disable")
