"""The catalogue: the levels each warning really has, its parameters, and what a broken or
incomplete catalogue tells the officer (never an empty or blank message)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from audiences.areas import AreaTree, read_divisions
from broadcast import lifecycle
from broadcast.composing.compose import SAMPLE_AREA, TEMPLATES_DIR, check_templates, render
from broadcast.core.context import QUEUE_ORDER, Context
from broadcast.core.models import ChannelKind, EventType, Language, Level, MessageType
from broadcast.core.settings import Settings
from broadcast.issuing import alerts
from broadcast.running.cli import main
from tests.samples import edit, sample_draft, templates_copy

BLUE, YELLOW, ORANGE, RED = Level.blue, Level.yellow, Level.orange, Level.red

# The colour levels each signal really has (see templates/SOURCE.md for the sources).
LEVELS = {
    EventType.typhoon: [BLUE, YELLOW, ORANGE, RED],
    EventType.rainstorm: [BLUE, YELLOW, ORANGE, RED],
    EventType.snowstorm: [BLUE, YELLOW, ORANGE, RED],
    EventType.cold_wave: [BLUE, YELLOW, ORANGE, RED],
    EventType.gale: [BLUE, YELLOW, ORANGE, RED],
    EventType.fog: [YELLOW, ORANGE, RED],
    EventType.lightning: [YELLOW, ORANGE, RED],
    EventType.hail: [ORANGE, RED],
    EventType.heat: [YELLOW, ORANGE, RED],
    EventType.haze: [YELLOW, ORANGE, RED],
    EventType.road_icing: [YELLOW, ORANGE, RED],
    EventType.drought: [ORANGE, RED],
    EventType.frost: [BLUE, YELLOW, ORANGE],
    EventType.flood: [BLUE, YELLOW, ORANGE, RED],
    EventType.storm_tide: [BLUE, YELLOW, ORANGE, RED],
    EventType.geological: [YELLOW, ORANGE, RED],
    EventType.general: [BLUE, YELLOW, ORANGE, RED],
}
CASES = [(event, level) for event in EventType for level in Level]


@pytest.fixture(scope="module")
def divisions() -> AreaTree:
    """The area hierarchy in memory: issuing checks the target against it without loading Redis."""
    return AreaTree({area.code: area for area in read_divisions()})


@pytest.mark.parametrize(("event", "level"), CASES, ids=[f"{e.value}-{lv.value}" for e, lv in CASES])
def test_each_event_is_issued_only_at_the_levels_it_has(
    ctx: Context, divisions: AreaTree, event: EventType, level: Level
) -> None:
    draft = sample_draft(event, level, exercise=True)
    if level in LEVELS[event]:
        alert = lifecycle.compose(ctx, draft, tree=divisions)
        assert alert.level is level and alert.event is event
        return
    with pytest.raises(alerts.AlertError) as caught:
        lifecycle.compose(ctx, draft, tree=divisions)
    names = ", ".join(lv.value for lv in LEVELS[event])
    assert caught.value.status == 422 and caught.value.field == "level"
    assert caught.value.message == f"{event.value} has no {level.value} level; its levels are {names}"
    assert ctx.redis.get(ctx.keys.alert_next) is None, "a refused alert is not stored"
    assert all(ctx.queue(name).count == 0 for name in QUEUE_ORDER)


@pytest.mark.parametrize(
    ("level", "severity"),
    [(BLUE, "Minor"), (YELLOW, "Moderate"), (ORANGE, "Severe"), (RED, "Extreme")],
    ids=lambda v: str(v),
)
def test_levels_map_to_cap_severity(level: Level, severity: str) -> None:
    assert level.cap_severity == severity


def test_the_whole_catalogue_passes_its_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "check"]) == 0
    out = capsys.readouterr().out
    rendered = int(re.search(r"(\d+) messages rendered", out).group(1))  # type: ignore[union-attr]
    assert "no problems" in out and rendered > 2000, out


PARAM_CASES = [
    # label, event, params changed (None removes), languages, expected problem
    (
        "a required parameter is missing",
        EventType.typhoon,
        {"wind_force": None},
        None,
        "typhoon needs parameter wind_force",
    ),
    (
        "the English value of a required text is missing",
        EventType.typhoon,
        {"typhoon_name_en": None},
        None,
        "typhoon needs parameter typhoon_name_en (typhoon name, in English)",
    ),
    (
        "an optional time given in Chinese only leaves English residents without it",
        EventType.rainstorm,
        {"eta_en": None},
        None,
        "rainstorm needs parameter eta_en (expected time, in English) because eta is given",
    ),
    (
        "an unknown parameter is named",
        EventType.rainstorm,
        {"rainfal": "100"},
        None,
        "rainstorm takes no parameter rainfal",
    ),
    (
        "a malformed number is refused with an example",
        EventType.typhoon,
        {"wind_force": "very strong"},
        None,
        "parameter wind_force='very strong' is not a valid gust force (Beaufort) (for example 10-12)",
    ),
    (
        "a value too long for a message",
        EventType.rainstorm,
        {"place": "浦东新区" * 6},
        None,
        "parameter place is 24 characters long; at most 20 fit a message",
    ),
    (
        "a line break would break the SMS layout",
        EventType.rainstorm,
        {"place": "浦东\n金山"},
        None,
        "parameter place may not contain line breaks or control characters",
    ),
]


@pytest.mark.parametrize(
    ("label", "event", "change", "languages", "problem"), PARAM_CASES, ids=[c[0] for c in PARAM_CASES]
)
def test_parameter_problems_are_named_and_nothing_is_stored(
    ctx: Context,
    divisions: AreaTree,
    label: str,
    event: EventType,
    change: dict[str, str | None],
    languages: list[Language] | None,
    problem: str,
) -> None:
    params = sample_draft(event, Level.orange).params
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    with pytest.raises(alerts.AlertError) as caught:
        lifecycle.compose(ctx, sample_draft(event, Level.orange, params=params), tree=divisions)
    assert caught.value.status == 422 and caught.value.field == "params"
    assert problem in caught.value.message, label
    assert ctx.redis.get(ctx.keys.alert_next) is None


def test_a_chinese_only_alert_needs_no_english_values(ctx: Context, divisions: AreaTree) -> None:
    params = {"typhoon_number": "6", "typhoon_name": "烟花", "wind_force": "12"}
    draft = sample_draft(EventType.typhoon, Level.red, params=params, languages=[Language.zh])
    assert lifecycle.compose(ctx, draft, tree=divisions).status.value == "pending_approval"


def test_a_cancel_need_not_restate_the_situation(ctx: Context, divisions: AreaTree) -> None:
    first = lifecycle.compose(ctx, sample_draft(EventType.typhoon, Level.blue), tree=divisions)
    cancel = sample_draft(EventType.typhoon, Level.blue, params={}, msg_type=MessageType.cancel, references=first.id)
    assert lifecycle.compose(ctx, cancel, tree=divisions).msg_type is MessageType.cancel


def _settings_with(settings: Settings, directory: Path) -> Settings:
    return settings.model_copy(update={"templates_dir": directory})


def test_a_missing_translation_fails_the_issue_naming_it(ctx: Context, divisions: AreaTree, tmp_path: Path) -> None:
    directory = templates_copy(tmp_path)
    catalogue = directory / "catalogue.toml"
    text = catalogue.read_text(encoding="utf-8")
    start = text.index("[events.hail.en]")
    catalogue.write_text(text[:start] + text[text.index("[events.heat]") :], encoding="utf-8")
    ctx.settings = _settings_with(ctx.settings, directory)

    with pytest.raises(alerts.AlertError) as caught:
        lifecycle.compose(ctx, sample_draft(EventType.hail, Level.red), tree=divisions)
    assert caught.value.status == 422
    assert caught.value.message == "templates/catalogue.toml: hail has no en translation ([events.hail.en])"
    assert ctx.redis.get(ctx.keys.alert_next) is None

    chinese_only = sample_draft(EventType.hail, Level.red, languages=[Language.zh])
    assert lifecycle.compose(ctx, chinese_only, tree=divisions).event is EventType.hail


def test_a_missing_layout_is_named_by_the_check(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = templates_copy(tmp_path)
    (directory / "push" / "en.j2").unlink()
    draft = sample_draft(EventType.typhoon, Level.red, channels=[ChannelKind.sms, ChannelKind.push])
    assert check_templates(draft, _settings_with(settings, directory)) == ["template push/en.j2 is missing"]

    monkeypatch.setenv("BROADCAST_TEMPLATES_DIR", str(directory))
    assert main(["templates", "check"]) == 1
    out = capsys.readouterr().out
    assert "problem: typhoon red alert (all parameters, drill) push/en: template push/en.j2 is missing" in out


def test_an_undefined_variable_in_a_layout_is_an_error_never_a_blank(settings: Settings, tmp_path: Path) -> None:
    directory = templates_copy(tmp_path)
    edit(directory / "sms" / "zh.j2", "{{ guidance }}", "{{ guidance }}{{ evacuation_route }}")
    broken = _settings_with(settings, directory)
    draft = sample_draft(EventType.typhoon, Level.red)
    assert check_templates(draft, broken) == ["template sms/zh.j2: 'evacuation_route' is undefined"]
    with pytest.raises(Exception, match="evacuation_route"):
        render(draft, Language.zh, ChannelKind.sms, SAMPLE_AREA, broken)


def test_an_undefined_parameter_in_the_catalogue_wording_is_an_error(settings: Settings, tmp_path: Path) -> None:
    directory = templates_copy(tmp_path)
    edit(directory / "catalogue.toml", "阵风可达{{ wind_force }}级", "阵风可达{{ wind_forse }}级")
    problems = check_templates(sample_draft(EventType.typhoon, Level.red), _settings_with(settings, directory))
    assert problems == ["templates/catalogue.toml: typhoon zh situation: 'wind_forse' is undefined"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'levels = ["orange", "red"]\noptional = ["eta", "place"]',
            'levels = ["orange", "purple"]\noptional = ["eta", "place"]',
            "events.hail.levels.1",
        ),
        (
            'guidance.orange = "请留在室内，把车辆',
            'guidance.blue = "x"\nguidance.orange = "请留在室内，把车辆',
            "guidance for levels the event does not have: blue",
        ),
        (
            'issuer = "meteorological"\nlevels = ["orange", "red"]',
            'issuer = "weather"\nlevels = ["orange", "red"]',
            "unknown issuer 'weather'",
        ),
    ],
    ids=["unknown level", "guidance for a missing level", "unknown issuer"],
)
def test_a_malformed_catalogue_is_refused_naming_the_entry(
    settings: Settings, tmp_path: Path, old: str, new: str, message: str
) -> None:
    directory = templates_copy(tmp_path)
    edit(directory / "catalogue.toml", old, new)
    problems = check_templates(sample_draft(EventType.typhoon, Level.red), _settings_with(settings, directory))
    assert len(problems) == 1 and message in problems[0] and "catalogue.toml" in problems[0], problems


def test_the_bundled_templates_are_where_the_settings_point_by_default(settings: Settings) -> None:
    assert settings.templates_dir is None and (TEMPLATES_DIR / "catalogue.toml").exists()
