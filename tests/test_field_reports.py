"""Field reports reaching the duty room: a report the phone sends twice is stored once, a photo keeps
nothing of its EXIF, a trapped person is urgent, a resident reports by SMS from their building,
and the duty room's triage is audited. Bad input is refused with the field named, storing nothing."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from PIL import Image

from audiences.population import Population
from audiences.volunteers import Volunteer, VolunteerRole
from broadcast.core.context import Context
from broadcast.core.storage import file_store
from broadcast.core.tokens import volunteer_token
from broadcast.hearing.field_reports import Category, read_sms_report
from broadcast.issuing.plan import freeze
from broadcast.web.console.users import Role
from tests.conftest import STREET, Stack
from tests.helpers import add_user, issue, request_json, token_for
from tests.test_callbacks import reply

# Lujiazui, as a phone's camera writes it: 31°14'24.0"N 121°30'0.0"E
GPS = {1: "N", 2: (31.0, 14.0, 24.0), 3: "E", 4: (121.0, 30.0, 0.0)}


def photo_with_gps(width: int = 2400, height: int = 1800) -> bytes:
    """A JPEG as a phone takes it: GPS, camera make and a capture time in its EXIF."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0132] = "2026:07:15 10:02:00"  # DateTime
    exif[0x8825] = GPS
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 160)).save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def multipart(fields: dict[str, str], photo: bytes | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body as a browser's FormData sends it."""
    boundary = "----report" + uuid.uuid4().hex
    body = io.BytesIO()
    for name, value in fields.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    if photo is not None:
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
        )
        body.write(photo + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def send_report(url: str, fields: dict[str, str], photo: bytes | None = None) -> tuple[int, Any]:
    data, content_type = multipart(fields, photo)
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def grid_volunteer(population: Population) -> Volunteer:
    return next(v for v in population.volunteers if v.role is VolunteerRole.grid_worker and v.grids)


def live_reports(stack: Stack, token: str, alert_id: str) -> dict[str, Any]:
    """What the duty room's live page gets: the progress snapshot's field reports."""
    status, body = request_json(f"{stack.url}/api/v1/alerts/{alert_id}/events", token=token)
    assert status == 200, body
    return dict(body["reports"])


@pytest.fixture
def officer(ctx: Context) -> str:
    return token_for(ctx, "zhang.wei", Role.duty_officer, ["310115000000"])


def test_a_report_sent_twice_by_a_phone_coming_back_online_reaches_the_officer_once(
    ctx: Context, population: Population, stack: Stack, officer: str
) -> None:
    alert = issue(ctx, [STREET])
    freeze(ctx, alert)
    volunteer = grid_volunteer(population)
    url = f"{stack.url}/v/{volunteer_token(ctx.secret, volunteer.id, alert.id)}/reports"
    report = {"request_id": "offline-7f3a9c21", "category": "flooding", "text": "地下车库进水约30厘米"}
    first = send_report(url, report)
    # The answer was lost on the way back: the phone keeps the report and sends it again.
    again = send_report(url, report)
    assert (first[0], again[0]) == (201, 200)
    assert first[1]["new"] is True and again[1]["new"] is False
    assert first[1]["report"]["id"] == again[1]["report"]["id"]
    seen = live_reports(stack, officer, alert.id)
    assert seen["total"] == 1 and seen["open"] == 1 and seen["urgent_open"] == 0
    (shown,) = seen["reports"]
    assert shown["text"] == "地下车库进水约30厘米" and shown["category"] == "flooding"
    assert shown["place"] == (volunteer.buildings or volunteer.grids)[0], "the reporter's own place by default"
    assert shown["reporter_name"] == volunteer.name and shown["street"] == STREET
    # A second report with its own id is a second report.
    assert send_report(url, {**report, "request_id": "offline-8b1c0d22"})[0] == 201
    assert live_reports(stack, officer, alert.id)["total"] == 2


def test_a_photo_is_stored_without_its_exif_and_its_place_only_when_shared(
    ctx: Context, population: Population, stack: Stack, officer: str
) -> None:
    alert = issue(ctx, [STREET])
    freeze(ctx, alert)
    volunteer = grid_volunteer(population)
    token = volunteer_token(ctx.secret, volunteer.id, alert.id)
    url = f"{stack.url}/v/{token}/reports"
    original = photo_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825), "the test photo carries GPS"
    status, body = send_report(url, {"request_id": "photo-0001aaaa", "category": "fallen_tree"}, original)
    assert status == 201, body
    kept_private = body["report"]["id"]
    status, body = send_report(
        url, {"request_id": "photo-0002bbbb", "category": "fallen_tree", "share_place": "true"}, original
    )
    assert status == 201, body
    shared = body["report"]["id"]

    store = file_store(ctx.settings)
    for report_id in (kept_private, shared):
        stored = json.loads(ctx.redis.hget(ctx.keys.alert_reports(alert.id), report_id) or "{}")
        data = store.get(stored["photo"])
        assert data is not None
        picture = Image.open(io.BytesIO(data))
        assert picture.format == "JPEG" and max(picture.size) == ctx.settings.photo_max_side
        assert not picture.getexif(), "EXIF survived"
        assert b"Exif" not in data and b"PhoneMaker" not in data and b"2026:07:15" not in data
    reports = {r["id"]: r for r in live_reports(stack, officer, alert.id)["reports"]}
    assert reports[kept_private]["location"] is None
    assert reports[shared]["location"] == {"lat": 31.24, "lon": 121.5, "accuracy": None, "source": "photo"}
    # The photo is behind the reporter's signed link, and nobody else's.
    with urllib.request.urlopen(f"{stack.url}/v/{token}/reports/{shared}/photo", timeout=10) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
    other = next(v for v in population.volunteers if v.id != volunteer.id)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            f"{stack.url}/v/{volunteer_token(ctx.secret, other.id, alert.id)}/reports/{shared}/photo", timeout=10
        )
    assert refused.value.code == 404


def test_a_trapped_person_is_urgent_whether_reported_on_the_page_or_by_sms(
    ctx: Context, population: Population, stack: Stack, officer: str
) -> None:
    alert = issue(ctx, [STREET])
    freeze(ctx, alert)
    volunteer = grid_volunteer(population)
    url = f"{stack.url}/v/{volunteer_token(ctx.secret, volunteer.id, alert.id)}/reports"
    assert send_report(url, {"request_id": "power-00000001", "category": "power_cut", "text": "3号楼停电"})[0] == 201
    assert live_reports(stack, officer, alert.id)["urgent_open"] == 0
    resident = next(r for r in population.residents if r.phone and r.building)
    assert reply(ctx, resident.phone or "", "报告 被困 电梯里有两人", "SM" + "7" * 32) == 200
    assert reply(ctx, resident.phone or "", "报告 被困 电梯里有两人", "SM" + "7" * 32) == 200  # Twilio's retry
    seen = live_reports(stack, officer, alert.id)
    assert seen["total"] == 2 and seen["urgent_open"] == 1
    trapped = seen["reports"][0]  # newest first
    assert trapped["urgent"] is True and trapped["category"] == "trapped" and trapped["source"] == "sms"
    assert trapped["text"] == "电梯里有两人"
    assert trapped["place"] == resident.building, "an SMS report comes from the sender's building"
    assert trapped["reporter_name"] == resident.name and trapped["dial"] == resident.phone
    # It reports; it does not confirm the warning.
    assert not ctx.redis.getbit(ctx.keys.bits(alert.id, "acknowledged"), int(trapped["reporter_id"]))


def test_the_duty_room_triages_a_report_and_the_audit_says_so(
    ctx: Context, population: Population, stack: Stack, officer: str
) -> None:
    alert = issue(ctx, [STREET])
    freeze(ctx, alert)
    volunteer = grid_volunteer(population)
    url = f"{stack.url}/v/{volunteer_token(ctx.secret, volunteer.id, alert.id)}/reports"
    report_id = send_report(url, {"request_id": "gas-000000001", "category": "gas", "text": "闻到燃气味"})[1]["report"][
        "id"
    ]
    add_user(ctx, "li.na", Role.approver, ["310115000000"])
    from broadcast.hearing.field_reports import TriageState, TriageUpdate, load_report, mark_report

    report = load_report(ctx.redis, ctx.keys, alert.id, report_id)
    assert report is not None
    mark_report(ctx, alert.id, report, TriageUpdate(state=TriageState.assigned, assignee="燃气公司抢修"), "li.na", "t")
    mark_report(ctx, alert.id, report, TriageUpdate(state=TriageState.resolved, note="已关阀"), "li.na", "t")
    seen = live_reports(stack, officer, alert.id)
    assert seen["open"] == 0 and seen["reports"][0]["state"] == "resolved"
    assert seen["reports"][0]["note"] == "已关阀"
    entries = [
        {k.decode(): v.decode() for k, v in fields.items()} for _, fields in ctx.redis.xrange(ctx.keys.audit, "-", "+")
    ]
    marks = [json.loads(e["detail"]) for e in entries if e["action"] == "field_report"]
    assert [m["state"] for m in marks] == ["assigned", "resolved"] and marks[0]["assignee"] == "燃气公司抢修"


@pytest.mark.parametrize(
    ("fields", "photo", "status", "field"),
    [
        ({"request_id": "bad-0000000001", "category": "volcano"}, None, 422, "category"),
        ({"request_id": "x", "category": "gas"}, None, 422, "request_id"),
        ({"request_id": "bad-0000000002", "category": "gas", "text": "长" * 501}, None, 422, "text"),
        ({"request_id": "bad-0000000003", "category": "gas", "place": "310115005001"}, None, 403, "place"),
        ({"request_id": "bad-0000000004", "category": "gas"}, b"not a picture at all", 422, "photo"),
        ({"request_id": "bad-0000000005", "category": "gas", "lat": "91"}, None, 422, "lat"),
    ],
)
def test_a_bad_report_is_refused_naming_the_field_and_stores_nothing(
    ctx: Context,
    population: Population,
    stack: Stack,
    fields: dict[str, str],
    photo: bytes | None,
    status: int,
    field: str,
) -> None:
    alert = issue(ctx, [STREET])
    freeze(ctx, alert)
    volunteer = next(
        v
        for v in population.volunteers
        if v.role is VolunteerRole.grid_worker and v.grids and v.community != "310115005001"
    )
    url = f"{stack.url}/v/{volunteer_token(ctx.secret, volunteer.id, alert.id)}/reports"
    answer = send_report(url, fields, photo)
    assert answer[0] == status, answer
    assert answer[1]["error"]["field"] == field
    assert not ctx.redis.exists(ctx.keys.alert_reports(alert.id))
    assert not (ctx.settings.files_root / "photos").exists()


def test_a_forged_link_reports_nothing(ctx: Context, population: Population, stack: Stack) -> None:
    alert = issue(ctx, [STREET])
    status, body = send_report(
        f"{stack.url}/v/{alert.id}.V001.forged/reports", {"request_id": "f-00000001", "category": "gas"}
    )
    assert status == 404 and body["error"]["field"] == "token"
    assert not ctx.redis.exists(ctx.keys.alert_reports(alert.id))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("报告 积水 地下车库", (Category.flooding, "地下车库")),
        ("报告积水地下车库", (Category.flooding, "地下车库")),
        ("上报：高空坠物 5号楼阳台花盆", (Category.falling_objects, "5号楼阳台花盆")),
        ("REPORT gas smell in hall", (Category.gas, "smell in hall")),
        ("报告 3楼有老人被困", (Category.trapped, "3楼有老人被困")),
        ("报告 楼下有车被砸", (Category.other, "楼下有车被砸")),
        ("1", None),
        ("救命 被困", None),
    ],
)
def test_sms_reports_are_read_by_keyword_then_category(body: str, expected: tuple[Category, str] | None) -> None:
    assert read_sms_report(body, ["报告", "上报", "report"]) == expected
