"""Pages for the people who knock on doors: a grid volunteer's work list, a community worker's roll-up.

Both are reached by the signed link texted to them (no login on a phone in the rain). A link works
for that person and that alert only, and stops working when the alert ends. A volunteer sees only
the residents of their own grids and buildings; an outcome for anyone else is refused.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from audiences.residents import load_residents
from audiences.volunteers import Volunteer, VolunteerRole
from broadcast.core.csv_export import csv_document
from broadcast.core.keys import as_text
from broadcast.core.models import Alert
from broadcast.core.tokens import read_volunteer_token
from broadcast.delivering.deliver import read_rids
from broadcast.delivering.ledger import roster_index
from broadcast.following.escalation import area_names
from broadcast.following.followup import (
    Outcome,
    OutcomeRefused,
    bit,
    bitmaps,
    flags_of,
    masked,
    outcomes_of,
    record_outcome,
    timeline,
    work_list,
)
from broadcast.issuing.alerts import load_alert_async
from broadcast.web.base import CTX, INBOX, REDIS, error, read_model
from broadcast.web.pages import page
from broadcast.web.pages.display import Display, display

WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "上门确认名单",
        "drill": "演练",
        "intro": "以下居民还没有确认收到预警。请电话联系或上门，并记录结果。",
        "summary": "还有 {n} 人待确认",
        "reached_safe": "已见到，安全",
        "not_home": "不在家",
        "needs_help": "需要帮助",
        "moved_away": "已搬走",
        "saved": "已保存：",
        "waiting": "等待网络，稍后自动发送：",
        "asked_help": "本人求助，请尽快联系",
        "chosen": "已选",
        "building": "楼",
        "floor": "{n} 层",
        "other_floor": "其他",
        "issued": "发布于",
        "call": "拨打",
        "timeline": "经过",
        "asked_at": "求助时间",
        "no_help": "暂无求助",
        "grid": "网格",
        "people": "人数",
        "confirmed": "已确认",
        "help": "求助",
        "waiting_col": "未确认",
        "failed": "未送达",
        "replies": "居民回复",
        "export": "导出名单 (CSV)",
        "back": "返回汇总",
        "offline": "网络不通，记录会在恢复后自动发送。",
        "noscript": "请开启浏览器的 JavaScript。",
        "invalid": "这个链接无效",
        "ended": "这条预警已经结束，名单已关闭。",
        "rollup": "社区汇总",
        "report": "上报现场情况",
    },
    "en": {
        "title": "Door-to-door list",
        "drill": "DRILL",
        "intro": "These residents have not confirmed the warning. Call or knock, then record what you found.",
        "summary": "{n} still to confirm",
        "reached_safe": "Seen, safe",
        "not_home": "Not home",
        "needs_help": "Needs help",
        "moved_away": "Moved away",
        "saved": "Saved: ",
        "waiting": "Waiting for a connection: ",
        "asked_help": "Asked for help: call them first",
        "chosen": "chosen",
        "building": "Building",
        "floor": "floor {n}",
        "other_floor": "other",
        "issued": "Issued",
        "call": "Call",
        "timeline": "What happened",
        "asked_at": "Asked",
        "no_help": "No help requests",
        "grid": "Grid",
        "people": "People",
        "confirmed": "Confirmed",
        "help": "Help",
        "waiting_col": "Not yet",
        "failed": "Undelivered",
        "replies": "Replies",
        "export": "Export list (CSV)",
        "back": "Back to the roll-up",
        "offline": "No connection: your records will be sent when it returns.",
        "noscript": "Please turn on JavaScript.",
        "invalid": "This link is not valid",
        "ended": "This warning has ended; the list is closed.",
        "rollup": "Committee roll-up",
        "report": "Report what you find",
    },
}


def floor_of(room: str) -> int | None:
    """The floor a room number names: 1203 is on floor 12, 101 on floor 1 (None when it does not say)."""
    digits = re.search(r"(\d{3,4})$", room or "")
    return int(digits.group(1)[:-2]) if digits else None


def heading_of(alert: Alert, show: Display, lang: str) -> dict[str, str]:
    """The warning a field page is about, and when it was issued, as the page's banner says it."""
    zh, en = show.warning(alert).split(" ", 1) if " " in show.warning(alert) else (show.warning(alert), "")
    return {
        "warning": zh if lang == "zh" else en,
        "issued": show.time(alert.issued_at or alert.created_at, "%m-%d %H:%M") + f" {show.zone_label()}",
    }


class OutcomeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ordinal: int = Field(ge=0)
    outcome: Outcome
    request_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")


def _language(request: web.Request) -> str:
    asked = request.query.get("lang", "zh")
    return asked if asked in WORDS else "zh"


async def holder(request: web.Request, role: VolunteerRole | None = None) -> tuple[Alert, Volunteer] | web.Response:
    """The alert and volunteer a link names; or the page (or JSON) saying why it does not work."""
    ctx, client = request.app[CTX], request.app[REDIS]
    words = WORDS[_language(request)]
    wants_json = request.method != "GET" or request.path.endswith((".json", "/photo")) or "/r/" in request.path
    found = read_volunteer_token(ctx.secret, request.match_info["token"])
    alert = await load_alert_async(client, ctx.keys, found[0]) if found else None
    raw = await client.hget(ctx.keys.volunteers, found[1]) if found else None
    volunteer = Volunteer.model_validate_json(raw) if raw else None
    if alert is None or volunteer is None or (role is not None and volunteer.role is not role):
        if wants_json:
            return error(404, words["invalid"], "token")
        return page("message.html", status=404, lang=_language(request), heading=words["invalid"], text="")
    if not alert.is_active(ctx.clock.now()):
        if wants_json:
            return error(410, words["ended"], "token")
        return page("message.html", status=410, lang=_language(request), heading=words["ended"], text="")
    return alert, volunteer


async def work_list_page(request: web.Request) -> web.Response:
    found = await holder(request)
    if isinstance(found, web.Response):
        return found
    alert, volunteer = found
    lang = _language(request)
    return page(
        "worklist.html",
        lang=lang,
        words=WORDS[lang],
        words_json=json.dumps(WORDS[lang], ensure_ascii=False),
        token=request.match_info["token"],
        level=alert.level.value,
        exercise=alert.exercise,
        about=heading_of(alert, display(request.app[CTX].settings), lang),
        heading=f"{WORDS[lang]['title']} · {volunteer.name}",
    )


async def work_list_json(request: web.Request) -> web.Response:
    found = await holder(request)
    if isinstance(found, web.Response):
        return found
    alert, volunteer = found
    ctx, client, lang = request.app[CTX], request.app[REDIS], _language(request)
    entries = await work_list(client, ctx.keys, alert, volunteer)
    names = await area_names(client, ctx.keys, sorted({e.resident.place for e in entries}))
    show = display(ctx.settings)
    residents = [
        {
            "ordinal": e.ordinal,
            "name": e.resident.name,
            "place": " ".join(p for p in (names.get(e.resident.place, ""), e.resident.room) if p),
            "building": names.get(e.resident.place, e.resident.place),
            "building_code": e.resident.place,
            "room": e.resident.room,
            "floor": floor_of(e.resident.room),
            "flags": flags_of(e.resident, lang),
            "phone": masked(e.resident.phone),
            "dial": e.resident.phone or "",
            "state": "needs_help" if e.needs_help else "",
            "vulnerable": e.vulnerable,
            "outcome": e.outcome["outcome"] if e.outcome else None,
            "outcome_at": show.time(e.outcome["at"], "%H:%M") if e.outcome else None,
        }
        for e in entries
    ]
    return web.json_response(
        {"alert": alert.id, "volunteer": volunteer.name, "residents": residents, "groups": walk_order(residents)}
    )


def walk_order(residents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The list as a volunteer walks it: building by building in roster order, floor by floor, and
    inside each floor whoever asked for help first, then the vulnerable, then by room."""
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    first: dict[str, int] = {}
    for r in residents:
        first[r["building_code"]] = min(first.get(r["building_code"], r["ordinal"]), r["ordinal"])
        groups.setdefault((r["building_code"], r["floor"]), []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: (first[kv[0][0]], kv[0][1] is None, kv[0][1] or 0))
    return [
        {
            "building": members[0]["building"],
            "building_code": code,
            "floor": floor,
            "help": sum(1 for m in members if m["state"] == "needs_help"),
            "residents": sorted(members, key=lambda m: (m["state"] != "needs_help", not m["vulnerable"], m["room"])),
        }
        for (code, floor), members in ordered
    ]


async def post_outcome(request: web.Request) -> web.Response:
    found = await holder(request)
    if isinstance(found, web.Response):
        return found
    alert, volunteer = found
    ctx, client = request.app[CTX], request.app[REDIS]
    body: OutcomeBody = await read_model(request, OutcomeBody)
    index = await roster_index(client, ctx.keys, alert.id)
    assert index is not None
    try:
        saved = await record_outcome(
            ctx, client, request.app[INBOX], alert, index, volunteer, body.ordinal, body.outcome, body.request_id
        )
    except OutcomeRefused as refused:
        return error(refused.status, refused.message, refused.field)
    return web.json_response({"saved": saved})


async def _committee(request: web.Request) -> tuple[Alert, Volunteer, int, int] | web.Response:
    found = await holder(request, VolunteerRole.community_worker)
    if isinstance(found, web.Response):
        return found
    alert, worker = found
    ctx, client = request.app[CTX], request.app[REDIS]
    span = await client.hget(ctx.keys.ranges(alert.id), worker.community)
    if span is None:
        return page("message.html", status=404, lang=_language(request), heading=WORDS["zh"]["invalid"], text="")
    start, end = (int(x) for x in as_text(span).split(":"))
    return alert, worker, start, end


async def rollup(request: web.Request) -> dict[str, Any] | web.Response:
    """The committee's figures per grid, and its open help cases."""
    found = await _committee(request)
    if isinstance(found, web.Response):
        return found
    alert, worker, start, end = found
    ctx, client = request.app[CTX], request.app[REDIS]
    grid_codes = [f"{worker.community}{n:02d}" for n in range(1, 100)]
    spans = await client.hmget(ctx.keys.ranges(alert.id), grid_codes)
    grids: list[tuple[str, int, int]] = []
    for code, span in zip(grid_codes, spans, strict=True):
        if span is not None:
            lo, hi = as_text(span).split(":")
            grids.append((code, int(lo), int(hi)))
    states = ("acknowledged", "needs_help", "closed", "failed")
    maps = await bitmaps(client, ctx.keys, alert.id, states, start, end)
    names = await area_names(client, ctx.keys, [worker.community, *(g[0] for g in grids)])
    rows = []
    for code, g_start, g_end in grids:
        counts = {s: sum(bit(maps[s], start, o) for o in range(g_start, g_end)) for s in states}
        waiting = sum(
            1
            for o in range(g_start, g_end)
            if not (bit(maps["acknowledged"], start, o) or bit(maps["closed"], start, o))
        )
        targeted = g_end - g_start
        rows.append(
            {
                "grid": code,
                "name": names.get(code, code),
                "targeted": targeted,
                **counts,
                "waiting": waiting,
                "rate": round(counts["acknowledged"] / targeted, 3) if targeted else 0.0,
            }
        )
    helping = [o for o in range(start, end) if bit(maps["needs_help"], start, o) and not bit(maps["closed"], start, o)]
    rids = await read_rids(client, ctx.keys, alert.id, helping)
    residents = await load_residents(client, ctx.keys, rids)
    outcomes = await outcomes_of(client, ctx.keys, alert.id, helping)
    asked = await client.zmscore(ctx.keys.help_asked(alert.id), [str(o) for o in helping]) if helping else []
    places = await area_names(client, ctx.keys, sorted({r.place for r in residents.values()}))
    cases = [
        {
            "ordinal": o,
            "name": r.name,
            "phone": masked(r.phone),
            "dial": r.phone or "",
            "building": places.get(r.place, r.place),
            "building_code": r.place,
            "room": r.room,
            "asked_at": datetime.fromtimestamp(at, UTC).isoformat() if at else None,
            "outcome": (outcomes.get(o) or {}).get("outcome"),
        }
        for o, rid, at in zip(helping, rids, asked, strict=True)
        if (r := residents.get(rid)) is not None
    ]
    cases.sort(key=lambda c: c["asked_at"] or "", reverse=True)  # newest first
    steps = {as_text(k): as_text(v) for k, v in (await client.hgetall(ctx.keys.alert_steps(alert.id))).items()}
    replies = []
    for _, fields in await client.xrevrange(ctx.keys.alert_replies(alert.id), count=10_000) or []:
        entry = {as_text(k): as_text(v) for k, v in (fields or {}).items()}
        if start <= int(entry["ordinal"]) < end:
            replies.append(entry)
    return {
        "alert": alert.id,
        "committee": worker.community,
        "name": names.get(worker.community, worker.community),
        "grids": rows,
        "needs_help": cases,
        "replies": replies[:200],
        "steps_done": steps,
    }


async def rollup_page(request: web.Request) -> web.Response:
    data = await rollup(request)
    if isinstance(data, web.Response):
        return data
    if request.path.endswith(".json"):
        return web.json_response(data)
    alert = await load_alert_async(request.app[REDIS], request.app[CTX].keys, str(data["alert"]))
    assert alert is not None
    show = display(request.app[CTX].settings)
    lang = _language(request)
    return page(
        "rollup.html",
        lang=lang,
        words=WORDS[lang],
        data=data,
        token=request.match_info["token"],
        level=alert.level.value,
        exercise=alert.exercise,
        about=heading_of(alert, show, lang),
        show=show,
    )


ROLLUP_COLUMNS = (
    "ordinal",
    "name",
    "place",
    "place_code",
    "room",
    "phone",
    "sent_at",
    "delivered_at",
    "delivered_by",
    "confirmed_at",
    "confirmed_by",
    "needs_help",
    "outcome",
    "outcome_at",
)


async def rollup_csv(request: web.Request) -> web.Response:
    """Every recipient of the committee with their timeline, for the community's own records."""
    found = await _committee(request)
    if isinstance(found, web.Response):
        return found
    alert, worker, start, end = found
    ctx, client = request.app[CTX], request.app[REDIS]
    ordinals = list(range(start, end))
    rids = await read_rids(client, ctx.keys, alert.id, ordinals)
    residents = await load_residents(client, ctx.keys, rids)
    names = await area_names(client, ctx.keys, sorted({r.place for r in residents.values()}))
    show = display(ctx.settings)

    def local(value: str | None) -> str:
        # A spreadsheet's reader reads local time; the offset keeps it unambiguous.
        return show.time(value, "%Y-%m-%d %H:%M:%S %z") if value else ""

    rows: list[list[object]] = []
    for o, rid in zip(ordinals, rids, strict=True):
        r = residents.get(rid)
        t = await timeline(client, ctx.keys, alert, o)
        outcome = t["outcome"] or {}
        rows.append(
            [
                o,
                r.name if r else "",
                names.get(r.place, r.place) if r else "",
                r.place if r else "",
                r.room if r else "",
                masked(r.phone if r else None),
                local(t["sent_at"]),
                local(t["delivered_at"]),
                t["delivered_by"],
                local(t["confirmed_at"]),
                t["confirmed_by"],
                int(t["states"]["needs_help"]),
                outcome.get("outcome", ""),
                local(outcome.get("at")),
            ]
        )
    response = web.Response(text=csv_document(ROLLUP_COLUMNS, rows), content_type="text/csv", charset="utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="alert-{alert.id}-{worker.community}.csv"'
    return response


async def recipient_timeline(request: web.Request) -> web.Response:
    """One recipient's story: as a page for a person (a browser asks for HTML), as JSON otherwise."""
    found = await _committee(request)
    if isinstance(found, web.Response):
        return found
    alert, _, start, end = found
    ctx, client = request.app[CTX], request.app[REDIS]
    ordinal = request.match_info["ordinal"]
    if not ordinal.isdigit() or not start <= int(ordinal) < end:
        return error(404, "no such recipient in this committee", "ordinal")
    story = await timeline(client, ctx.keys, alert, int(ordinal))
    if "text/html" not in request.headers.get("Accept", ""):
        return web.json_response(story)
    (rid,) = await read_rids(client, ctx.keys, alert.id, [int(ordinal)])
    resident = (await load_residents(client, ctx.keys, [rid])).get(rid)
    names = await area_names(client, ctx.keys, [resident.place] if resident else [])
    asked = await client.zscore(ctx.keys.help_asked(alert.id), ordinal)
    show = display(ctx.settings)
    lang = _language(request)
    return page(
        "timeline.html",
        lang=lang,
        words=WORDS[lang],
        token=request.match_info["token"],
        level=alert.level.value,
        exercise=alert.exercise,
        about=heading_of(alert, show, lang),
        show=show,
        resident=resident,
        place=names.get(resident.place, resident.place) if resident else "",
        events=story_events(story, show, asked),
    )


def story_events(story: dict[str, Any], show: Display, asked: float | None) -> list[tuple[str, str, str]]:
    """(local time, what happened, how) in the order it happened, for a person to read."""
    events: list[tuple[str, str, str]] = []
    if story["sent_at"]:
        events.append((story["sent_at"], "已发送 Sent", ""))
    if story["delivered_at"]:
        events.append((story["delivered_at"], "已送达 Delivered", show.channel(story["delivered_by"] or "")))
    if story["confirmed_at"]:
        events.append((story["confirmed_at"], "已确认 Confirmed", show.method(story["confirmed_by"])))
    if asked:
        events.append((show.epoch(asked).isoformat(), "求助 Asked for help", ""))
    outcome = story.get("outcome") or {}
    if outcome.get("at"):
        events.append((outcome["at"], "志愿者记录 Volunteer recorded", show.outcome(outcome.get("outcome"))))
    events.sort(key=lambda e: datetime.fromisoformat(e[0]))
    shown = [(show.time(at, "%m-%d %H:%M:%S"), what, how) for at, what, how in events]
    failed = [channel for channel, states in story["channels"].items() if "failed" in states]
    if failed:
        how = "、".join(show.channel(c) for c in failed)
        shown.append(("", "发送失败 Failed", how + (f" · code {story['last_error']}" if story["last_error"] else "")))
    if not shown:
        shown.append(("", "尚未发送 Not sent yet", ""))
    return shown


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v/{token}", work_list_page)
    app.router.add_get("/v/{token}/list.json", work_list_json)
    app.router.add_post("/v/{token}/outcome", post_outcome)
    app.router.add_get("/w/{token}", rollup_page)
    app.router.add_get("/w/{token}/rollup.json", rollup_page)
    app.router.add_get("/w/{token}/export.csv", rollup_csv)
    app.router.add_get("/w/{token}/r/{ordinal}", recipient_timeline)
