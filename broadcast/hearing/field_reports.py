"""Field reports (信息报送): what volunteers, community workers and residents find and report upward.

A report has a category (积水, 倒树, 高空坠物, 被困, 停电, 燃气, 其他), a short text, an optional photo
and a place: the reporter's building, grid or committee, and a location when they chose to share it.
Volunteers and community workers report from the page their signed link opens; residents by SMS
("报告 积水 地下车库"), attached to their building. Each report belongs to the alert it was made under.

A report is stored once however often it is sent: a phone that was offline sends its queue when
the network returns, perhaps twice, and a provider retries a webhook. The key is the reporter and
the report's own request id (for an SMS, the provider's message id), kept beside the reports.

A photo is re-encoded before it is kept: its EXIF (camera, time, GPS) never reaches the store. Where
the reporter chose to share the place and the photo carries a GPS fix, that fix becomes the
report's location, shown to the duty room as coordinates, not left inside the picture. The bytes
live outside Redis (``broadcast.core.storage``); the record names them.

A trapped person (被困) is urgent: the console raises it as it raises a call for help.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import datetime
from enum import Enum
from typing import Any, Literal

import redis
import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field

from broadcast.core.context import Context
from broadcast.core.errors import AlertError
from broadcast.core.keys import ALERT_RETENTION_SECONDS, Keys, as_text
from broadcast.issuing.alerts import audit


class Category(str, Enum):
    """What a report is about."""

    flooding = "flooding"
    fallen_tree = "fallen_tree"
    falling_objects = "falling_objects"
    trapped = "trapped"
    power_cut = "power_cut"
    gas = "gas"
    other = "other"

    @property
    def zh(self) -> str:
        return CATEGORY_NAMES[self][0]

    @property
    def label(self) -> str:
        """ "积水 flooding": as pages name it."""
        return " ".join(CATEGORY_NAMES[self])

    @property
    def urgent(self) -> bool:
        return self in URGENT


CATEGORY_NAMES: dict[Category, tuple[str, str]] = {
    Category.flooding: ("积水", "flooding"),
    Category.fallen_tree: ("倒树", "fallen tree"),
    Category.falling_objects: ("高空坠物", "falling objects"),
    Category.trapped: ("被困", "trapped person"),
    Category.power_cut: ("停电", "power cut"),
    Category.gas: ("燃气", "gas"),
    Category.other: ("其他", "other"),
}
# Words a text may name a category by, first match wins (longer words before the shorter ones they contain).
CATEGORY_WORDS: tuple[tuple[str, Category], ...] = (
    ("高空坠物", Category.falling_objects),
    ("坠物", Category.falling_objects),
    ("积水", Category.flooding),
    ("内涝", Category.flooding),
    ("淹", Category.flooding),
    ("倒树", Category.fallen_tree),
    ("树倒", Category.fallen_tree),
    ("被困", Category.trapped),
    ("困", Category.trapped),
    ("停电", Category.power_cut),
    ("燃气", Category.gas),
    ("煤气", Category.gas),
    ("其他", Category.other),
    ("flooding", Category.flooding),
    ("flood", Category.flooding),
    ("tree", Category.fallen_tree),
    ("falling", Category.falling_objects),
    ("trapped", Category.trapped),
    ("power", Category.power_cut),
    ("gas", Category.gas),
    ("other", Category.other),
)
URGENT = frozenset({Category.trapped})
TEXT_LIMIT = 500


class TriageState(str, Enum):
    new = "new"
    seen = "seen"
    assigned = "assigned"
    resolved = "resolved"

    @property
    def label(self) -> str:
        return {"new": "未处理 new", "seen": "已阅 seen", "assigned": "已指派 assigned", "resolved": "已解决 resolved"}[
            self.value
        ]


class Location(BaseModel):
    """Where the reporter stood (a phone's fix) or the photo was taken, when they chose to share it."""

    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy: float | None = Field(default=None, ge=0, le=100_000)  # metres
    source: Literal["phone", "photo"] = "phone"


class Reporter(BaseModel):
    """Who reported: a volunteer or community worker (by registry id) or a resident (by roster ordinal)."""

    kind: Literal["volunteer", "community_worker", "resident"]
    id: str
    name: str = ""
    phone: str = ""


class FieldReport(BaseModel):
    """One report as stored."""

    id: str
    alert_id: str
    category: Category
    text: str = Field(default="", max_length=TEXT_LIMIT)
    place: str  # building, grid or committee code
    community: str
    reporter: Reporter
    source: Literal["page", "sms"]
    location: Location | None = None
    photo: str | None = None  # the file store's name for it
    at: datetime  # when the service received it
    made_at: datetime | None = None  # when the reporter made it, on the phone (it may have waited offline)

    @property
    def urgent(self) -> bool:
        return self.category.urgent


class TriageUpdate(BaseModel):
    """What a duty officer records about one report."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    state: TriageState
    assignee: str = Field(default="", max_length=40)
    note: str = Field(default="", max_length=200)


class ReportRefused(Exception):
    """A report (or its photo) that cannot be stored; nothing was."""

    def __init__(self, message: str, field: str, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.field, self.status = message, field, status


# ---- photos


class CleanPhoto(BaseModel):
    """A photo as kept: JPEG without metadata, and the GPS fix its EXIF carried (if any)."""

    jpeg: bytes
    width: int
    height: int
    gps: Location | None = None


MAX_SOURCE_PIXELS = 60_000_000  # a 60-megapixel picture at most: bigger is not a phone's photo


def _degrees(value: Any, ref: Any) -> float | None:
    try:
        d, m, s = (float(x) for x in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    sign = -1.0 if str(ref).upper() in ("S", "W") else 1.0
    return sign * (d + m / 60 + s / 3600)


def clean_photo(data: bytes, max_side: int) -> CleanPhoto:
    """Decode a photo, turn it upright, shrink it to ``max_side``, and encode it again as JPEG with
    no EXIF, no GPS, no comment; the GPS fix it carried is returned beside it. Not a picture, or one
    too large to be a photo: ReportRefused."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as source:
            if source.format not in ("JPEG", "PNG", "WEBP", "MPO", "HEIF", "GIF"):
                raise ReportRefused(f"照片格式不支持 unsupported photo format ({source.format})", "photo")
            if source.width * source.height > MAX_SOURCE_PIXELS:
                raise ReportRefused("照片太大 the photo has too many pixels", "photo")
            gps_ifd = source.getexif().get_ifd(0x8825)
            gps = None
            if gps_ifd:
                lat, lon = _degrees(gps_ifd.get(2), gps_ifd.get(1)), _degrees(gps_ifd.get(4), gps_ifd.get(3))
                if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
                    gps = Location(lat=round(lat, 6), lon=round(lon, 6), source="photo")
            upright = ImageOps.exif_transpose(source) or source
            picture = upright.convert("RGB")
    except ReportRefused:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ReportRefused(f"这不是可以读取的照片 not a photo we can read ({type(exc).__name__})", "photo") from None
    picture.thumbnail((max_side, max_side))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=82, optimize=True)  # no exif= : nothing of the original's rides along
    return CleanPhoto(jpeg=out.getvalue(), width=picture.width, height=picture.height, gps=gps)


def photo_name(alert_id: str, reporter: Reporter, request_id: str) -> str:
    """The store's name for a report's photo: the same report sent twice names the same file."""
    digest = hashlib.sha256(f"{reporter.kind}:{reporter.id}:{request_id}".encode()).hexdigest()[:20]
    return f"photos/{int(alert_id)}/{digest}.jpg"


# ---- storing

# Store a report once per (reporter, request). KEYS: requests, next, reports, order.
# ARGV: request field, report JSON with "@ID@" where its id goes, received (epoch), lifetime.
_STORE = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {existing, 0} end
local id = tostring(redis.call('INCR', KEYS[2]))
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', KEYS[3], id, (string.gsub(ARGV[2], '@ID@', id, 1)))
redis.call('ZADD', KEYS[4], ARGV[3], id)
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return {id, 1}
"""


async def store_report(
    client: redis.asyncio.Redis, keys: Keys, report: FieldReport, request_id: str
) -> tuple[FieldReport, bool]:
    """Store ``report`` (its id is given here) unless the reporter sent this request before; returns the
    stored report and whether it is new."""
    alert_id = report.alert_id
    field = f"{report.reporter.kind}:{report.reporter.id}:{request_id}"
    template = report.model_copy(update={"id": "@ID@"}).model_dump_json()
    found = await client.eval(
        _STORE,
        4,
        keys.alert_report_requests(alert_id),
        keys.alert_report_next(alert_id),
        keys.alert_reports(alert_id),
        keys.alert_report_order(alert_id),
        field,
        template,
        report.at.timestamp(),
        ALERT_RETENTION_SECONDS,
    )
    report_id, fresh = as_text(found[0]), bool(int(found[1]))
    stored = await client.hget(keys.alert_reports(alert_id), report_id)
    return FieldReport.model_validate_json(stored) if stored else report.model_copy(update={"id": report_id}), fresh


def read_sms_report(body: str, keywords: list[str]) -> tuple[Category, str] | None:
    """ "报告 积水 地下车库" → (flooding, "地下车库"); None when the text is not a report. A report's first
    word is one of ``keywords``; the category follows (any other word: 其他), then the text."""
    text = body.strip()
    lowered = text.casefold()
    keyword = next((k for k in sorted(keywords, key=len, reverse=True) if lowered.startswith(k.casefold())), None)
    if keyword is None:
        return None
    rest = text[len(keyword) :].lstrip(" \t:：,，、")
    folded = rest.casefold()
    for word, category in CATEGORY_WORDS:
        if folded.startswith(word):
            return category, rest[len(word) :].strip(" \t:：,，、")[:TEXT_LIMIT]
    # No category named: the words still say something; a trapped person is urgent wherever it is said.
    category = Category.trapped if "困" in rest else Category.other
    return category, rest.strip()[:TEXT_LIMIT]


# ---- reading and triage

REPORTS_SHOWN = 200  # on the live page; the full list pages through the rest


async def triage_of(client: redis.asyncio.Redis, keys: Keys, alert_id: str) -> dict[str, dict[str, Any]]:
    """What the duty room did about each report it marked."""
    raw = await client.hgetall(keys.alert_report_triage(alert_id))
    return {as_text(k): json.loads(v) for k, v in raw.items()}


async def alert_reports(
    client: redis.asyncio.Redis,
    keys: Keys,
    alert_id: str,
    within: set[str] | None = None,
    *,
    limit: int | None = REPORTS_SHOWN,
    skip: int = 0,
) -> dict[str, Any]:
    """The alert's reports in the committees ``within`` (all when None), newest first, each with its
    triage: ``limit`` after the first ``skip``; with how many there are, how many are open (not
    resolved) and how many of those are urgent."""
    ids = [as_text(i) for i in await client.zrevrange(keys.alert_report_order(alert_id), 0, -1)]
    raw = await client.hmget(keys.alert_reports(alert_id), ids) if ids else []
    triage = await triage_of(client, keys, alert_id)
    reports: list[dict[str, Any]] = []
    for record in raw:
        if record is None:
            continue
        report = FieldReport.model_validate_json(record)
        if within is not None and report.community not in within:
            continue
        mark = triage.get(report.id, {})
        reports.append(
            {
                **json.loads(report.model_dump_json(exclude={"photo"})),
                "photo": bool(report.photo),
                "urgent": report.urgent,
                "category_label": report.category.label,
                "street": report.community[:9] + "000",
                "state": mark.get("state", TriageState.new.value),
                "assignee": mark.get("assignee", ""),
                "note": mark.get("note", ""),
                "marked_by": mark.get("by", ""),
                "marked_at": mark.get("at", ""),
            }
        )
    open_ = [r for r in reports if r["state"] != TriageState.resolved.value]
    end = None if limit is None else skip + limit
    return {
        "total": len(reports),
        "open": len(open_),
        "urgent_open": sum(1 for r in open_ if r["urgent"]),
        "by_category": {c.value: sum(1 for r in reports if r["category"] == c.value) for c in Category},
        "reports": reports[skip:end],
        "more": end is not None and len(reports) > end,
    }


def load_report(client: redis.Redis, keys: Keys, alert_id: str, report_id: str) -> FieldReport | None:
    """One stored report, or None."""
    if not re.fullmatch(r"\d{1,9}", report_id):
        return None
    raw = client.hget(keys.alert_reports(alert_id), report_id)
    return FieldReport.model_validate_json(raw) if raw else None


def mark_report(
    ctx: Context, alert_id: str, report: FieldReport, update: TriageUpdate, by: str, origin: str
) -> dict[str, Any]:
    """Record what the duty room did about a report (audited as "field_report"). The caller has checked
    that ``by`` may act on it."""
    if update.state is TriageState.assigned and not update.assignee:
        raise AlertError("指派给谁？Say who it is assigned to", status=422, field="assignee")
    saved = {
        "state": update.state.value,
        "assignee": update.assignee,
        "note": update.note,
        "by": by,
        "at": ctx.clock.now().isoformat(),
    }
    key = ctx.keys.alert_report_triage(alert_id)
    with ctx.redis.pipeline(transaction=True) as pipe:
        if update.state is TriageState.new and not update.note:
            pipe.hdel(key, report.id)
        else:
            pipe.hset(key, report.id, json.dumps(saved, ensure_ascii=False))
        pipe.expire(key, ALERT_RETENTION_SECONDS)
        pipe.execute()
    audit(
        ctx,
        by,
        "field_report",
        alert_id=alert_id,
        origin=origin,
        report=report.id,
        category=report.category.value,
        state=update.state.value,
        assignee=update.assignee,
        note=update.note,
    )
    return saved
