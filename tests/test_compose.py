"""Rendering: what residents read, hear and see on each channel, in each language."""

from __future__ import annotations

import json

import pytest

from broadcast.composing.compose import (
    LINK_TOKEN_LENGTH,
    SAMPLE_AREA,
    AreaFacts,
    Rendered,
    confirmation_link,
    render,
    with_link,
)
from broadcast.composing.screen import clusters, half_columns
from broadcast.composing.shapes import PUSH_ENVELOPE_BYTES, PUSH_LIMIT_BYTES, push, push_bytes, unspeakable
from broadcast.core.models import AlertDraft, ChannelKind, EventType, Language, Level, MessageType
from broadcast.core.segments import sms_cost
from broadcast.core.settings import Settings
from broadcast.core.tokens import link_token
from tests.samples import sample_draft

BLUE, YELLOW, ORANGE, RED = Level.blue, Level.yellow, Level.orange, Level.red
ZH, EN = Language.zh, Language.en
SMS, VOICE, PUSH, SCREEN = ChannelKind.sms, ChannelKind.voice, ChannelKind.push, ChannelKind.screen


def rendered(
    draft: AlertDraft,
    language: Language,
    channel: ChannelKind,
    settings: Settings,
    referenced: AlertDraft | None = None,
    area: AreaFacts = SAMPLE_AREA,
) -> Rendered:
    return render(draft, language, channel, area, settings, referenced=referenced)


CHANGES = [
    # label, msg_type, previous level, level, Chinese SMS says, English SMS says, Chinese push title
    (
        "a new warning",
        MessageType.alert,
        None,
        ORANGE,
        "上海中心气象台发布台风橙色预警：",
        "Typhoon ORANGE warning:",
        "台风橙色预警",
    ),
    (
        "a red after an orange is an upgrade",
        MessageType.update,
        ORANGE,
        RED,
        "上海中心气象台将台风橙色预警升级为红色预警：",
        "Typhoon warning raised to RED:",
        "台风预警升级为红色",
    ),
    (
        "a yellow after an orange is a downgrade",
        MessageType.update,
        ORANGE,
        YELLOW,
        "上海中心气象台将台风橙色预警降级为黄色预警：",
        "Typhoon warning lowered to YELLOW:",
        "台风预警降级为黄色",
    ),
    (
        "the same level again is an update",
        MessageType.update,
        ORANGE,
        ORANGE,
        "上海中心气象台更新台风橙色预警：",
        "Typhoon ORANGE warning updated:",
        "台风橙色预警更新",
    ),
    (
        "a cancel lifts the referenced warning at its level",
        MessageType.cancel,
        RED,
        RED,
        "上海中心气象台解除台风红色预警：台风影响减弱",
        "Typhoon RED warning lifted: The typhoon is easing",
        "台风红色预警解除",
    ),
]


@pytest.mark.parametrize(
    ("label", "msg_type", "previous", "level", "zh", "en", "title"), CHANGES, ids=[c[0] for c in CHANGES]
)
def test_updates_and_cancels_are_worded_from_the_alert_they_reference(
    settings: Settings,
    label: str,
    msg_type: MessageType,
    previous: Level | None,
    level: Level,
    zh: str,
    en: str,
    title: str,
) -> None:
    draft = sample_draft(EventType.typhoon, level, msg_type=msg_type)
    referenced = sample_draft(EventType.typhoon, previous) if previous else None
    assert zh in rendered(draft, ZH, SMS, settings, referenced).text, label
    assert en in rendered(draft, EN, SMS, settings, referenced).text, label
    assert rendered(draft, ZH, PUSH, settings, referenced).extra["title"] == title


def test_an_upgrade_whose_reference_is_gone_still_says_what_the_warning_is_now(settings: Settings) -> None:
    draft = sample_draft(EventType.typhoon, RED, msg_type=MessageType.update)
    assert "上海中心气象台更新台风红色预警：" in rendered(draft, ZH, SMS, settings).text


def test_a_cancel_says_what_to_do_now_not_the_old_situation(settings: Settings) -> None:
    cancel = sample_draft(EventType.rainstorm, RED, params={}, msg_type=MessageType.cancel)
    text = rendered(cancel, ZH, SMS, settings, sample_draft(EventType.rainstorm, RED)).text
    assert "强降雨已减弱" in text and "将出现强降水" not in text and "避难场所" not in text


SHELTERS = [
    # label, event, level, named?
    ("a typhoon orange names the shelter", EventType.typhoon, ORANGE, True),
    ("a typhoon red names the shelter", EventType.typhoon, RED, True),
    ("a typhoon yellow does not", EventType.typhoon, YELLOW, False),
    ("fog sends nobody to a shelter", EventType.fog, RED, False),
    ("a storm tide red names the shelter", EventType.storm_tide, RED, True),
]


@pytest.mark.parametrize(("label", "event", "level", "named"), SHELTERS, ids=[c[0] for c in SHELTERS])
def test_the_shelter_is_named_when_people_may_have_to_move(
    settings: Settings, label: str, event: EventType, level: Level, named: bool
) -> None:
    for channel in (SMS, VOICE, PUSH, SCREEN):
        text = rendered(sample_draft(event, level), ZH, channel, settings).text
        assert ("梅园一村社区活动中心" in text) is named, f"{label} ({channel.value})"


def test_english_sms_is_gsm7_unless_a_chinese_name_makes_it_ucs2(settings: Settings) -> None:
    draft = sample_draft(EventType.typhoon, RED)
    chinese_shelter = rendered(draft, EN, SMS, settings)
    assert "Shelter: 梅园一村社区活动中心." in chinese_shelter.text
    assert (chinese_shelter.encoding, chinese_shelter.parts) == ("UCS-2", sms_cost(chinese_shelter.text).parts)
    english_shelter = rendered(draft, EN, SMS, settings, area=AreaFacts(shelter="梅园", shelter_en="Meiyuan Hall"))
    assert "Shelter: Meiyuan Hall." in english_shelter.text and english_shelter.encoding == "GSM-7"
    assert english_shelter.parts < chinese_shelter.parts


def _general(message: str, message_en: str, level: Level = BLUE) -> AlertDraft:
    return sample_draft(EventType.general, level, params={"message": message, "message_en": message_en})


@pytest.mark.parametrize(
    ("language", "units", "encoding", "parts"),
    [(ZH, 134, "UCS-2", 2), (ZH, 135, "UCS-2", 3), (EN, 306, "GSM-7", 2), (EN, 307, "GSM-7", 3)],
    ids=["zh 134 characters: 2 parts", "zh 135: 3 parts", "en 306 septets: 2 parts", "en 307: 3 parts"],
)
def test_a_rendered_sms_reports_its_parts_at_the_edges(
    settings: Settings, language: Language, units: int, encoding: str, parts: int
) -> None:
    filler = "风" if language is ZH else "a"
    base = sms_cost(rendered(_general(filler, filler), language, SMS, settings).text).units - 1
    message = filler * (units - base)
    sms = rendered(_general(message, message), language, SMS, settings)
    assert sms_cost(sms.text).units == units  # the English signature's [ ] take two septets each
    assert (sms.encoding, sms.parts) == (encoding, parts)


def test_one_emoji_in_english_makes_the_whole_sms_ucs2(settings: Settings) -> None:
    plain = rendered(_general("停水", "Water is off in your building tonight"), EN, SMS, settings)
    emoji = rendered(_general("停水", "Water is off in your building tonight 🚱"), EN, SMS, settings)
    assert plain.encoding == "GSM-7" and emoji.encoding == "UCS-2"
    assert (plain.parts, emoji.parts) == (sms_cost(plain.text).parts, sms_cost(emoji.text).parts)
    assert emoji.parts > plain.parts


def test_each_recipient_gets_their_own_link_and_the_counted_parts_stay_true(settings: Settings) -> None:
    for language in Language:
        sms = rendered(sample_draft(EventType.typhoon, RED, exercise=True), language, SMS, settings)
        links = {with_link(sms, confirmation_link(settings, link_token(b"k", "7", o))).text for o in range(50)}
        assert len(links) == 50, "one link per recipient"
        for text in links:
            assert text.endswith(tuple(f"{settings.public_url}/c/{link_token(b'k', '7', o)}" for o in range(50)))
            assert "#" not in text
            assert (sms_cost(text).parts, sms_cost(text).encoding) == (sms.parts, sms.encoding)


def test_a_link_of_another_length_is_refused(settings: Settings) -> None:
    sms = rendered(sample_draft(EventType.typhoon, RED), ZH, SMS, settings)
    with pytest.raises(ValueError, match="confirmation link"):
        with_link(sms, settings.public_url + "/c/short")
    with pytest.raises(ValueError, match="URL-safe"):
        confirmation_link(settings, "x" * (LINK_TOKEN_LENGTH + 1))


def test_the_short_link_base_is_a_setting(settings: Settings) -> None:
    short = settings.model_copy(update={"link_base": "https://t.sh.cn"})
    sms = rendered(sample_draft(EventType.typhoon, RED), ZH, SMS, short)
    assert with_link(sms, confirmation_link(short, "A" * LINK_TOKEN_LENGTH)).text.endswith(
        " https://t.sh.cn/c/" + "A" * LINK_TOKEN_LENGTH
    )


def test_the_drill_mark_and_signatures(settings: Settings) -> None:
    drill = sample_draft(EventType.typhoon, ORANGE, exercise=True)
    assert rendered(drill, ZH, SMS, settings).text.startswith("【上海应急】【演练】上海中心气象台发布台风橙色预警")
    assert rendered(drill, EN, SMS, settings).text.startswith("[Shanghai EMA] [DRILL] Typhoon ORANGE warning:")
    real = sample_draft(EventType.typhoon, ORANGE)
    assert "演练" not in rendered(real, ZH, SMS, settings).text
    assert "DRILL" not in rendered(real, EN, SMS, settings).text


VOICES = [
    (EventType.typhoon, RED, ZH, "阵风可达10到12级", "zh-CN"),
    (EventType.typhoon, RED, EN, "Typhoon number 6 In-fa", "en-US"),
    (EventType.cold_wave, ORANGE, ZH, "最低气温零下3摄氏度", "zh-CN"),
    (EventType.cold_wave, ORANGE, EN, "lows of minus 3 degrees", "en-US"),
    (EventType.fog, RED, EN, "visibility below 200 metres", "en-US"),
    (EventType.storm_tide, RED, ZH, "最高潮位可达5.2米", "zh-CN"),
]


@pytest.mark.parametrize(("event", "level", "language", "spoken", "voice"), VOICES, ids=lambda v: str(v))
def test_voice_text_is_words_only_and_ends_with_the_keys(
    settings: Settings, event: EventType, level: Level, language: Language, spoken: str, voice: str
) -> None:
    said = rendered(sample_draft(event, level, exercise=True), language, VOICE, settings)
    assert spoken in said.text
    assert unspeakable(said.text) == set(), said.text
    assert said.text.endswith("按1确认收到，按9求助。" if language is ZH else "Press 1 to confirm, 9 for help.")
    assert ("这是一次演练。" if language is ZH else "This is a drill.") in said.text
    assert said.extra == {"language": voice}
    assert "http" not in said.text


def test_an_english_voice_does_not_read_a_chinese_shelter_name(settings: Settings) -> None:
    draft = sample_draft(EventType.typhoon, RED)
    assert "shelter" not in rendered(draft, EN, VOICE, settings).text
    named = rendered(draft, EN, VOICE, settings, area=AreaFacts(shelter="梅园", shelter_en="Meiyuan Hall"))
    assert "Your nearest shelter: Meiyuan Hall." in named.text


def test_push_has_a_title_a_body_and_a_small_data_payload(settings: Settings) -> None:
    note = rendered(sample_draft(EventType.rainstorm, RED, exercise=True), ZH, PUSH, settings)
    assert note.extra["title"] == "【演练】暴雨红色预警"
    assert note.extra["data"] == {"event": "rainstorm", "level": "red", "exercise": True, "msg_type": "alert"}
    assert note.text.startswith("上海中心气象台发布暴雨红色预警。")
    assert "求助电话：12345。" in note.text
    assert push_bytes(note.extra["title"], note.text, note.extra["data"]) <= PUSH_LIMIT_BYTES - PUSH_ENVELOPE_BYTES
    json.dumps(note.extra["data"])  # JSON-able as the push services need


def test_a_push_body_too_long_loses_its_end_never_half_a_character() -> None:
    family = "👨‍👩‍👧"
    data = {"event": "general", "level": "red", "exercise": False, "msg_type": "alert"}
    note = push(["突发事件红色预警", family * 400], data)
    budget = PUSH_LIMIT_BYTES - PUSH_ENVELOPE_BYTES
    assert push_bytes(note.extra["title"], note.text, data) <= budget
    assert push_bytes(note.extra["title"], note.text + family, data) > budget, "as much as fits is kept"
    assert note.text.endswith("…")
    assert set(clusters(note.text[:-1])) == {family}, "every family emoji is whole"


def test_screen_pages_fit_the_default_grid_and_carry_the_level_colour(settings: Settings) -> None:
    for language in Language:
        shown = rendered(sample_draft(EventType.typhoon, RED, exercise=True), language, SCREEN, settings)
        assert shown.extra["colour"] == "red"
        pages = shown.extra["pages"]
        assert len(pages) > 1 and all(1 <= len(page) <= 4 for page in pages)
        assert all(half_columns(line) <= 32 for page in pages for line in page)
    zh = rendered(sample_draft(EventType.typhoon, RED, exercise=True), ZH, SCREEN, settings).extra["pages"]
    assert zh[0][0] == "【演练】台风红色预警"
    cancel = sample_draft(EventType.typhoon, YELLOW, params={}, msg_type=MessageType.cancel)
    lifted = rendered(cancel, ZH, SCREEN, settings, sample_draft(EventType.typhoon, ORANGE))
    assert lifted.extra["colour"] == "orange" and lifted.extra["pages"][0][0] == "台风橙色预警解除"


def test_push_and_screen_say_until_when_the_warning_holds(settings: Settings) -> None:
    from datetime import UTC, datetime

    draft = sample_draft(EventType.heat, RED, valid_minutes=6 * 60)
    when = datetime(2025, 7, 24, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    note = render(draft, ZH, PUSH, SAMPLE_AREA, settings, issued_at=when)
    assert "有效至7月24日16:00。" in note.text
    shown = render(draft, EN, SCREEN, SAMPLE_AREA, settings, issued_at=when)
    assert "Valid until 24 Jul 16:00" in shown.text
