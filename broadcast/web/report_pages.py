"""Reporting from the field: the page a volunteer or community worker opens from their signed link
(``/v/<token>/report``, ``/w/<token>/report``) to tell the duty room what they find, one-handed.

The page keeps each report in the phone until the service has it, and sends it with an id of its
own, so a report made in a basement with no signal arrives once when the network returns. A photo
is re-encoded by the service (``clean_photo``) before it is kept; the place is the reporter's
building, grid or committee, with their location only when they tick "share my location".
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audiences.volunteers import Volunteer, VolunteerRole
from broadcast.core.models import Alert
from broadcast.core.storage import file_store
from broadcast.following.escalation import area_names
from broadcast.hearing.field_reports import (
    TEXT_LIMIT,
    Category,
    FieldReport,
    Location,
    Reporter,
    ReportRefused,
    TriageState,
    alert_reports,
    clean_photo,
    load_report,
    photo_name,
    store_report,
)
from broadcast.web.base import CTX, REDIS, error
from broadcast.web.followup_pages import WORDS, heading_of, holder
from broadcast.web.pages import page
from broadcast.web.pages.display import display

REPORT_WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "现场报告",
        "intro": "看到险情请报告：选类别，写一句话，可拍照。没有信号也可以提交，恢复后自动发送。",
        "category": "类别",
        "text": "情况说明",
        "text_hint": "例：地下车库进水约30厘米",
        "photo": "照片（可选）",
        "place": "地点",
        "share": "附上我的位置（GPS）",
        "send": "提交报告",
        "mine": "我的报告",
        "waiting": "等待网络，稍后自动发送",
        "sent": "已送达值班室",
        "none": "还没有报告",
        "choose": "请先选择类别",
        "stored_locally": "已保存在手机上",
        "too_big": "手机存储已满，请不带照片再试",
        "locating": "正在定位…",
        "no_fix": "无法定位，将只报告所选地点",
        "back": "返回名单",
    },
    "en": {
        "title": "Field report",
        "intro": "Report what you find: pick a kind, say it in a line, add a photo if you can. "
        "It is kept on the phone without a signal and sent when the network returns.",
        "category": "Kind",
        "text": "What you see",
        "text_hint": "e.g. water 30 cm deep in the underground garage",
        "photo": "Photo (optional)",
        "place": "Place",
        "share": "Share my location (GPS)",
        "send": "Send the report",
        "mine": "My reports",
        "waiting": "Waiting for a connection",
        "sent": "Received by the duty room",
        "none": "No reports yet",
        "choose": "Pick a kind first",
        "stored_locally": "Kept on this phone",
        "too_big": "The phone's storage is full; try without the photo",
        "locating": "Finding your location…",
        "no_fix": "No location: the place chosen is reported",
        "back": "Back to the list",
    },
}
STATE_WORDS = {s.value: s.label for s in TriageState}
FIELD_LIMIT = 4096  # bytes of any form field but the photo


class ReportForm(BaseModel):
    """What the reporting page sends (a multipart form; the photo beside it)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    request_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")
    category: Category
    text: str = Field(default="", max_length=TEXT_LIMIT)
    place: str = Field(default="", pattern=r"^(\d{12}|\d{14}|\d{17})?$")
    share_place: bool = False
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    accuracy: float | None = Field(default=None, ge=0, le=100_000)
    made_at: datetime | None = None


def _language(request: web.Request) -> str:
    asked = request.query.get("lang", "zh")
    return asked if asked in REPORT_WORDS else "zh"


def reporter_of(volunteer: Volunteer) -> Reporter:
    kind = "community_worker" if volunteer.role is VolunteerRole.community_worker else "volunteer"
    return Reporter(kind=kind, id=volunteer.id, name=volunteer.name, phone=volunteer.phone)


def places_of(volunteer: Volunteer) -> list[str]:
    """The places a reporter may report from: their buildings, their grids, their committee."""
    return list(dict.fromkeys([*volunteer.buildings, *volunteer.grids, volunteer.community]))


def _base(request: web.Request) -> str:
    return "/w/" if request.path.startswith("/w/") else "/v/"


async def report_page(request: web.Request) -> web.Response:
    found = await holder(request)
    if isinstance(found, web.Response):
        return found
    alert, volunteer = found
    ctx, client, lang = request.app[CTX], request.app[REDIS], _language(request)
    names = await area_names(client, ctx.keys, places_of(volunteer))
    words = {**REPORT_WORDS[lang], "drill": WORDS[lang]["drill"], "issued": WORDS[lang]["issued"]}
    return page(
        "report.html",
        lang=lang,
        words=words,
        words_json=json.dumps({**words, "states": STATE_WORDS}, ensure_ascii=False),
        base=_base(request) + request.match_info["token"],
        level=alert.level.value,
        exercise=alert.exercise,
        about=heading_of(alert, display(ctx.settings), lang),
        reporter=volunteer.name,
        categories=[(c.value, c.zh if lang == "zh" else c.label.split(" ", 1)[1], c.urgent) for c in Category],
        places=[(code, names.get(code, code)) for code in places_of(volunteer)],
    )


async def _read_form(request: web.Request, photo_limit: int) -> tuple[dict[str, str], bytes | None]:
    """The multipart form's fields and its photo, each read no further than its limit."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ReportRefused("send the report as multipart/form-data", "body", 415)
    fields: dict[str, str] = {}
    photo: bytes | None = None
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.name:
            raise ReportRefused("a form part without a name", "body", 400)
        limit = photo_limit if part.name == "photo" else FIELD_LIMIT
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > limit:
                what = "照片太大 the photo is too large" if part.name == "photo" else f"{part.name} is too long"
                raise ReportRefused(what, part.name, 413)
        if part.name == "photo":
            photo = bytes(data) or None
        else:
            try:
                fields[part.name] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ReportRefused(f"{part.name} is not UTF-8 text", part.name, 400) from None
    return fields, photo


async def post_report(request: web.Request) -> web.Response:
    """Store one report (201), or answer 200 with the one stored before for the same request id."""
    found = await holder(request)
    if isinstance(found, web.Response):
        return found
    alert, volunteer = found
    ctx, client = request.app[CTX], request.app[REDIS]
    try:
        fields, photo = await _read_form(request, ctx.settings.photo_max_bytes)
        form = ReportForm.model_validate({k: v for k, v in fields.items() if v != ""})
        report = await _compose(request, alert, volunteer, form, photo)
    except ReportRefused as refused:
        return error(refused.status, refused.message, refused.field)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        return error(422, f"invalid {field}: {first['msg']}", field)
    stored, fresh = await store_report(client, ctx.keys, report, form.request_id)
    return web.json_response({"report": _shown(stored), "new": fresh}, status=201 if fresh else 200)


async def _compose(
    request: web.Request, alert: Alert, volunteer: Volunteer, form: ReportForm, photo: bytes | None
) -> FieldReport:
    """The report a form makes: its place checked against the reporter's own, its photo cleaned and kept."""
    ctx = request.app[CTX]
    allowed = places_of(volunteer)
    place = form.place or allowed[0]
    if place not in allowed:
        raise ReportRefused("这个地点不在您负责的范围 this place is not one you cover", "place", 403)
    reporter = reporter_of(volunteer)
    location = None
    if form.share_place and form.lat is not None and form.lon is not None:
        location = Location(lat=form.lat, lon=form.lon, accuracy=form.accuracy, source="phone")
    name = None
    if photo is not None:
        cleaned = await asyncio.to_thread(clean_photo, photo, ctx.settings.photo_max_side)
        if form.share_place and location is None:
            location = cleaned.gps  # the reporter chose to share where they were: the photo says where
        name = photo_name(alert.id, reporter, form.request_id)
        await asyncio.to_thread(file_store(ctx.settings).put, name, cleaned.jpeg)
    return FieldReport(
        id="0",
        alert_id=alert.id,
        category=form.category,
        text=form.text,
        place=place,
        community=volunteer.community,
        reporter=reporter,
        source="page",
        location=location,
        photo=name,
        at=ctx.clock.now(),
        made_at=form.made_at,
    )


def _shown(report: FieldReport) -> dict[str, Any]:
    """A report as its reporter sees it back (no phone numbers)."""
    return {
        "id": report.id,
        "category": report.category.value,
        "category_label": report.category.label,
        "text": report.text,
        "place": report.place,
        "photo": bool(report.photo),
        "at": report.at.isoformat(),
        "urgent": report.urgent,
    }


async def my_reports(request: web.Request) -> web.Response:
    """The reporter's own reports under this alert, newest first, with what the duty room did."""
    found = await holder(request)
    if isinstance(found, web.Response):
        return found
    alert, volunteer = found
    ctx, client = request.app[CTX], request.app[REDIS]
    listed = await alert_reports(client, ctx.keys, alert.id, {volunteer.community}, limit=None)
    names = await area_names(client, ctx.keys, places_of(volunteer))
    show = display(ctx.settings)
    mine = [
        {
            "id": r["id"],
            "category_label": r["category_label"],
            "text": r["text"],
            "place": names.get(r["place"], r["place"]),
            "at": show.time(r["at"], "%H:%M"),
            "state": r["state"],
            "photo": r["photo"],
            "urgent": r["urgent"],
        }
        for r in listed["reports"]
        if r["reporter"]["kind"] == reporter_of(volunteer).kind and r["reporter"]["id"] == volunteer.id
    ]
    return web.json_response({"reports": mine}, headers={"Cache-Control": "no-store"})


async def my_photo(request: web.Request) -> web.Response:
    """A photo of one of the reporter's own reports."""
    found = await holder(request)
    if isinstance(found, web.Response):
        return found
    alert, volunteer = found
    ctx = request.app[CTX]
    report = await asyncio.to_thread(load_report, ctx.redis, ctx.keys, alert.id, request.match_info["report"])
    if report is None or report.reporter.id != volunteer.id or not report.photo:
        return error(404, "no such photo", "report")
    return await photo_response(request, report)


async def photo_response(request: web.Request, report: FieldReport) -> web.Response:
    """The stored photo of ``report`` (JPEG), never cached by a shared cache."""
    data = await asyncio.to_thread(file_store(request.app[CTX].settings).get, report.photo or "")
    if data is None:
        return error(404, "the photo is no longer kept", "report")
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


def add_routes(app: web.Application) -> None:
    for prefix in ("/v/{token}", "/w/{token}"):
        app.router.add_get(f"{prefix}/report", report_page)
        app.router.add_post(f"{prefix}/reports", post_report)
        app.router.add_get(f"{prefix}/reports.json", my_reports)
        app.router.add_get(prefix + r"/reports/{report:\d{1,9}}/photo", my_photo)
