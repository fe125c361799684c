"""The page behind the link in a resident's SMS: the warning, and two big buttons, "I'm safe" and "I need help".

Opening the link records nothing (phones and chat apps fetch links to preview them); only a tap on a
button, a POST, does. The link's token names the alert and the recipient and is signed, so a forged
or mistyped link shows an error page and records nothing; so does a tap after the alert has ended.
"""

from __future__ import annotations

from aiohttp import web

from audiences.residents import load_residents
from broadcast.composing.compose import render
from broadcast.composing.facts import area_facts
from broadcast.core.models import AckMethod, Alert, ChannelKind, EventKind, Language, RecipientEvent
from broadcast.core.tokens import read_link_token
from broadcast.delivering.deliver import read_rids
from broadcast.delivering.ledger import Ledger, roster_index
from broadcast.issuing.alerts import load_alert_async
from broadcast.web.base import CTX, INBOX, REDIS
from broadcast.web.pages import page
from broadcast.web.pages.display import display

WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "drill": "演练",
        "safe": "收到，我很安全",
        "help": "我需要帮助",
        "confirmed": "已收到您的确认，谢谢。请继续注意安全。",
        "helping": "已收到您的求助，社区工作人员会尽快联系您。紧急情况请拨打110、119或120。",
        "closed": "这条预警已经结束。",
        "hotline": "咨询电话",
        "emergency": "紧急求救",
        "police": "报警",
        "fire": "火警",
        "ambulance": "急救",
        "chosen": "✓ 您已选择",
        "issued": "发布于",
        "other_lang": "English",
        "invalid": "这个链接无效",
        "invalid_text": "请核对短信中的链接。如需帮助，请拨打12345。",
    },
    "en": {
        "drill": "DRILL",
        "safe": "Received, I'm safe",
        "help": "I need help",
        "confirmed": "Thank you, your confirmation is recorded. Stay safe.",
        "helping": (
            "Your call for help is recorded; your community will contact you soon. "
            "In an emergency call 110, 119 or 120."
        ),
        "closed": "This warning has ended.",
        "hotline": "Hotline",
        "emergency": "Emergency",
        "police": "Police",
        "fire": "Fire",
        "ambulance": "Ambulance",
        "chosen": "✓ Your answer",
        "issued": "Issued",
        "other_lang": "中文",
        "invalid": "This link is not valid",
        "invalid_text": "Please check the link in your SMS. For help call 12345.",
    },
}
ACTIONS = {"confirm": EventKind.acknowledged, "help": EventKind.needs_help}


def _invalid(language: str) -> web.Response:
    words = WORDS[language]
    return page("message.html", status=404, lang=language, heading=words["invalid"], text=words["invalid_text"])


async def _recipient(request: web.Request) -> tuple[Alert, int, str] | web.Response:
    """The alert and ordinal a link names, and the language to speak; or an error page."""
    ctx, client = request.app[CTX], request.app[REDIS]
    asked = request.query.get("lang")
    found = read_link_token(ctx.secret, request.match_info["token"])
    if found is None:
        return _invalid(asked if asked in WORDS else "zh")
    alert_id, ordinal = found
    alert = await load_alert_async(client, ctx.keys, alert_id)
    index = await roster_index(client, ctx.keys, alert_id)
    if alert is None or index is None or not 0 <= ordinal < index.size:
        return _invalid(asked if asked in WORDS else "zh")
    (rid,) = await read_rids(client, ctx.keys, alert_id, [ordinal])
    resident = (await load_residents(client, ctx.keys, [rid])).get(rid)
    language = asked if asked in WORDS else (resident.language.value if resident else "zh")
    return alert, ordinal, language


async def show(request: web.Request) -> web.Response:
    found = await _recipient(request)
    if isinstance(found, web.Response):
        return found
    alert, ordinal, language = found
    ctx, client = request.app[CTX], request.app[REDIS]
    index = await roster_index(client, ctx.keys, alert.id)
    assert index is not None
    community = index.community_of(ordinal)
    facts = (await area_facts(client, ctx.keys, [community], ctx.settings.hotline))[community]
    referenced = await load_alert_async(client, ctx.keys, alert.references) if alert.references else None
    lang = Language(language) if Language(language) in alert.languages else alert.languages[0]
    message = render(alert, lang, ChannelKind.push, facts, ctx.settings, referenced=referenced)
    ledger = Ledger(client, ctx.keys, alert.id)
    acknowledged = (await ledger.bits("acknowledged", [ordinal]))[0]
    needs_help = (await ledger.bits("needs_help", [ordinal]))[0]
    state = "needs_help" if needs_help else "acknowledged" if acknowledged else ""
    title = str(message.extra.get("title", ""))
    show = display(ctx.settings)
    return page(
        "confirm.html",
        lang=language,
        words=WORDS[language],
        other_lang="en" if language == "zh" else "zh",
        title=title,
        body=message.text,
        level=alert.level.value,
        # The title of a drill already says so; the banner does not say it twice.
        exercise=alert.exercise and "演练" not in title and "DRILL" not in title.upper(),
        issued=show.time(alert.issued_at or alert.created_at, "%m-%d %H:%M") + f" {show.zone_label()}",
        state=state,
        open=alert.is_active(ctx.clock.now()),
        hotline=facts.hotline,
    )


async def answer(request: web.Request) -> web.Response:
    found = await _recipient(request)
    if isinstance(found, web.Response):
        return found
    alert, ordinal, language = found
    ctx = request.app[CTX]
    form = await request.post()
    kind = ACTIONS.get(str(form.get("action", "")))
    if kind is None:
        return page("message.html", status=400, lang=language, heading=WORDS[language]["invalid"], text="")
    if not alert.is_active(ctx.clock.now()):
        return page("message.html", status=410, lang=language, heading=WORDS[language]["closed"], text="")
    event = RecipientEvent(
        alert_id=alert.id, ordinal=ordinal, kind=kind, channel=ChannelKind.sms, method=AckMethod.link
    )
    await request.app[INBOX].record_recipient_event(event)
    raise web.HTTPSeeOther(f"{request.path}?lang={language}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/c/{token}", show)
    app.router.add_post("/c/{token}", answer)
