"""``broadcast templates``: proofread the whole catalogue, or render one message from it.

    broadcast templates check [--json]
    broadcast templates render --event typhoon --level red --channel sms --lang zh --param k=v … [--json]

Neither needs Redis: they read only the templates.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from broadcast.composing.compose import SAMPLE_AREA, change_of, draft_problems, render_problems, templates_dir
from broadcast.composing.preview import rendered_json
from broadcast.composing.screen import DEFAULT_COLUMNS
from broadcast.composing.template_check import check_catalogue
from broadcast.core.context import Context
from broadcast.core.models import AlertDraft, ChannelKind, EventType, Language, Level, MessageType, Target
from broadcast.running.cli import UsageError, _params


def register(subparsers: Any) -> None:
    """Add ``templates check`` and ``templates render``."""
    templates = subparsers.add_parser("templates", help="the warning catalogue: check it, render from it")
    sub = templates.add_subparsers(dest="templates_command", required=True)

    check = sub.add_parser("check", help="render every event, level, channel and language; list each problem")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=cmd_check, needs_redis=False)

    render = sub.add_parser("render", help="render one message, as a resident would get it")
    render.add_argument("--event", required=True, choices=[e.value for e in EventType])
    render.add_argument("--level", required=True, choices=[lv.value for lv in Level])
    render.add_argument("--channel", default="sms", choices=[c.value for c in ChannelKind])
    render.add_argument("--lang", default="zh", choices=[lang.value for lang in Language])
    render.add_argument("--param", action="append", metavar="KEY=VALUE")
    render.add_argument("--msg-type", default="alert", choices=[m.value for m in MessageType])
    render.add_argument("--previous-level", choices=[lv.value for lv in Level], help="level of the alert changed")
    render.add_argument("--drill", action="store_true", help="mark it an exercise (【演练】)")
    render.add_argument("--shelter", help="the community's shelter (default: a sample)")
    render.add_argument("--hotline", help="the community's hotline")
    render.add_argument("--json", action="store_true")
    render.set_defaults(handler=cmd_render, needs_redis=False)


def cmd_check(ctx: Context, args: argparse.Namespace) -> int:
    """Proofread the whole catalogue; exit 1 when anything is wrong."""
    report = check_catalogue(ctx.settings)
    if args.json:
        print(json.dumps(report.__dict__, ensure_ascii=False))
    else:
        for problem in report.problems:
            print(f"problem: {problem}")
        most = ", ".join(f"{k} {v}" for k, v in sorted(report.most_sms_parts.items()))
        verdict = f"{len(report.problems)} problem(s)" if report.problems else "no problems"
        print(f"{templates_dir(ctx.settings)}: {report.rendered} messages rendered, {verdict}; most SMS parts: {most}")
    return 1 if report.problems else 0


def cmd_render(ctx: Context, args: argparse.Namespace) -> int:
    """Render one message; the same checks as issuing apply to the event, level and parameters."""
    msg_type = MessageType(args.msg_type)
    language = Language(args.lang)
    draft = AlertDraft(
        event=EventType(args.event),
        level=Level(args.level),
        target=Target(areas=["310000000000"]),
        channels=[ChannelKind(args.channel)],
        languages=[language],
        params=_params(args.param or []),
        exercise=args.drill,
        composed_by="templates render",
        msg_type=msg_type,
        references=None if msg_type is MessageType.alert else "0",
    )
    problems = draft_problems(draft, ctx.settings)
    if problems:
        raise UsageError("; ".join(problems))
    referenced = None
    if msg_type is not MessageType.alert:
        previous = Level(args.previous_level) if args.previous_level else draft.level
        referenced = draft.model_copy(update={"level": previous, "msg_type": MessageType.alert, "references": None})
    overrides = {k: v for k, v in (("shelter", args.shelter), ("hotline", args.hotline)) if v is not None}
    area = replace(SAMPLE_AREA, **overrides)
    channel = ChannelKind(args.channel)
    rendered, problems = render_problems(draft, language, channel, ctx.settings, referenced, area)
    if rendered is None or problems:
        raise UsageError("; ".join(problems))
    shown = {"channel": channel.value, "language": language.value, "change": change_of(draft, referenced).value}
    shown.update(rendered_json(channel, rendered))
    if args.json:
        print(json.dumps(shown, ensure_ascii=False))
    else:
        _print_message(channel, shown)
    return 0


def _print_message(channel: ChannelKind, shown: dict[str, Any]) -> None:
    if channel is ChannelKind.screen:
        for number, page in enumerate(shown["pages"], start=1):
            print(f"page {number} of {len(shown['pages'])} ({shown['colour']}, {DEFAULT_COLUMNS} columns):")
            print("\n".join(f"  |{line}" for line in page))
        return
    if channel is ChannelKind.push:
        print(shown["title"])
    print(shown["text"])
    if channel is ChannelKind.sms:
        print(f"({shown['segments']} part(s), {shown['encoding']}, {shown['characters']} characters)")
