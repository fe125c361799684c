"""The whole catalogue, proofread: every event at every level it has, as a new warning, an update,
an upgrade, a downgrade and a cancel, on every channel and in every language, with the sample
parameters (all of them, and only the required ones). ``broadcast templates check`` runs it.

Besides what stops a message (missing layouts or translations, undefined values), it holds the
catalogue to its budgets: guidance short enough for SMS, a whole SMS within a few parts, a
voice text with nothing unspeakable, and push and screen within their limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from broadcast.composing.catalogue import Catalogue, CatalogueError, load_catalogue
from broadcast.composing.compose import render_problems, templates_dir
from broadcast.composing.screen import DEFAULT_COLUMNS, half_columns
from broadcast.composing.shapes import PUSH_ENVELOPE_BYTES, PUSH_LIMIT_BYTES, Rendered, push_bytes
from broadcast.core.models import AlertDraft, ChannelKind, EventType, Language, Level, MessageType, Target
from broadcast.core.settings import Settings

GUIDANCE_BUDGET = {Language.zh: 40, Language.en: 130}  # characters
SMS_PART_BUDGET = {Language.zh: 3, Language.en: 3}  # with every sample parameter, shelter and drill mark
# An English text naming a Chinese shelter is sent as UCS-2 and so costs more parts.
SMS_PART_BUDGET_UCS2_EN = 6
_SAMPLE_TARGET = Target(areas=["310000000000"])


@dataclass
class CatalogueReport:
    """How many messages were rendered, and every problem found, each naming where it is."""

    rendered: int = 0
    problems: list[str] = field(default_factory=list)
    most_sms_parts: dict[str, int] = field(default_factory=dict)  # language → most parts seen


def check_catalogue(settings: Settings) -> CatalogueReport:
    """Proofread every message the catalogue can produce."""
    report = CatalogueReport()
    try:
        catalogue = load_catalogue(templates_dir(settings))
    except CatalogueError as exc:
        report.problems.append(str(exc))
        return report
    for event in EventType:
        if event not in catalogue.events:
            report.problems.append(f"templates/catalogue.toml has no entry for {event.value}")
            continue
        report.problems += _guidance_problems(catalogue, event)
        for case, draft, referenced in _cases(catalogue, event):
            for channel in ChannelKind:
                for language in Language:
                    rendered, problems = render_problems(draft, language, channel, settings, referenced)
                    report.rendered += 1
                    where = f"{event.value} {draft.level.value} {case} {channel.value}/{language.value}"
                    report.problems += [f"{where}: {p}" for p in problems]
                    if rendered is not None:
                        report.problems += [
                            f"{where}: {p}" for p in _budget_problems(channel, language, rendered, report)
                        ]
    return report


def _guidance_problems(catalogue: Catalogue, event: EventType) -> list[str]:
    entry = catalogue.entry(event)
    problems: list[str] = []
    for language in Language:
        wording = entry.wording(language)
        if wording is None:
            continue  # reported by every rendering in this language
        texts = {f"{level.value} guidance": wording.guidance.get(level, "") for level in entry.levels}
        texts["lifted"] = wording.lifted
        for what, text in texts.items():
            if len(text) > GUIDANCE_BUDGET[language]:
                problems.append(
                    f"templates/catalogue.toml: {event.value} {language.value} {what} is {len(text)} characters; "
                    f"at most {GUIDANCE_BUDGET[language]} keep the SMS short"
                )
    return problems


def _cases(catalogue: Catalogue, event: EventType) -> Iterator[tuple[str, AlertDraft, AlertDraft | None]]:
    """(name, draft, referenced alert) for each kind of message at each level of ``event``."""
    levels = catalogue.entry(event).levels
    languages = list(Language)
    full = catalogue.sample_params(event, languages, optional=True)
    required = catalogue.sample_params(event, languages, optional=False)

    def draft(level: Level, params: dict[str, str], msg_type: MessageType, exercise: bool) -> AlertDraft:
        references = None if msg_type is MessageType.alert else "1"
        return AlertDraft(
            event=event,
            level=level,
            target=_SAMPLE_TARGET,
            channels=list(ChannelKind),
            languages=languages,
            params=params,
            exercise=exercise,
            composed_by="templates check",
            msg_type=msg_type,
            references=references,
        )

    for i, level in enumerate(levels):
        yield "alert (all parameters, drill)", draft(level, full, MessageType.alert, True), None
        yield "alert (required parameters)", draft(level, required, MessageType.alert, False), None
        yield "update", draft(level, full, MessageType.update, False), draft(level, full, MessageType.alert, False)
        if i > 0:
            lower = draft(levels[i - 1], full, MessageType.alert, False)
            yield "upgrade", draft(level, full, MessageType.update, False), lower
        if i + 1 < len(levels):
            higher = draft(levels[i + 1], full, MessageType.alert, False)
            yield "downgrade", draft(level, full, MessageType.update, False), higher
        yield "cancel", draft(level, {}, MessageType.cancel, False), draft(level, full, MessageType.alert, False)


def _budget_problems(
    channel: ChannelKind, language: Language, rendered: Rendered, report: CatalogueReport
) -> list[str]:
    if channel is ChannelKind.sms:
        key = f"{language.value} {rendered.encoding}"
        report.most_sms_parts[key] = max(report.most_sms_parts.get(key, 0), rendered.parts)
        budget = SMS_PART_BUDGET[language]
        if language is Language.en and rendered.encoding == "UCS-2":
            budget = SMS_PART_BUDGET_UCS2_EN
        if rendered.parts > budget:
            return [f"the SMS takes {rendered.parts} parts ({rendered.encoding}); the budget is {budget}"]
    if channel is ChannelKind.push:
        size = push_bytes(rendered.extra["title"], rendered.text, rendered.extra["data"])
        if size > PUSH_LIMIT_BYTES - PUSH_ENVELOPE_BYTES:
            return [f"the notification is {size} bytes"]
    if channel is ChannelKind.screen:
        wide = [line for page in rendered.extra["pages"] for line in page if half_columns(line) > DEFAULT_COLUMNS * 2]
        if wide:
            return [f"screen lines wider than {DEFAULT_COLUMNS} columns: {wide}"]
    return []
