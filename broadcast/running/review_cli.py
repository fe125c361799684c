"""``broadcast alert report ID`` (the after-action report) and ``broadcast drills …`` (drill scorecards).

Registered like every command module; nothing heavy is imported until a command runs (the report
brings numpy, matplotlib and WeasyPrint).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from broadcast.core.context import Context


class ReportError(Exception):
    """A report that cannot be made; printed without a traceback."""


def _review(ctx: Context, alert_id: str) -> dict[str, Any]:
    from broadcast.following.review import after_action
    from broadcast.following.scorecards import keep_scorecard, scorecard_of
    from broadcast.issuing.alerts import get_alert

    alert = get_alert(ctx, alert_id)
    if alert.issued_at is None:
        raise ReportError(f"alert {alert_id} was never issued: nothing to review")

    async def run() -> dict[str, Any]:
        client = ctx.async_redis()
        try:
            review = await after_action(client, ctx.keys, ctx.settings, alert, ctx.clock.now())
            if alert.exercise:
                await keep_scorecard(client, ctx.keys, scorecard_of(review))
            return review
        finally:
            await client.aclose()

    return asyncio.run(run())


def cmd_report(ctx: Context, args: argparse.Namespace) -> int:
    """Write the after-action report of one alert as HTML, PDF or JSON."""
    from broadcast.web.review_report import ReportUnavailable, review_html, review_pdf

    try:
        review = _review(ctx, args.id)
        if args.format == "json":
            data = json.dumps(review, ensure_ascii=False, indent=1).encode()
        elif args.format == "html":
            data = review_html(review, ctx.settings).encode()
        else:
            data = review_pdf(review, ctx.settings)
    except (ReportError, ReportUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output = args.output or (f"alert-{args.id}-review.pdf" if args.format == "pdf" else "-")
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(output).write_bytes(data)
        print(f"wrote {output} ({len(data):,} bytes)", file=sys.stderr)
    return 0


def _scorecards(ctx: Context, event: str) -> list[dict[str, Any]]:
    from broadcast.following.scorecards import drill_scorecards

    async def run() -> list[dict[str, Any]]:
        client = ctx.async_redis()
        try:
            return await drill_scorecards(client, ctx.keys, event)
        finally:
            await client.aclose()

    return asyncio.run(run())


def cmd_drills_list(ctx: Context, args: argparse.Namespace) -> int:
    cards = _scorecards(ctx, args.event)
    if args.json:
        print(json.dumps([{k: c[k] for k in ("alert", "issued_at", "areas", "targeted", "rate")} for c in cards]))
        return 0
    for c in cards:
        print(f"#{c['alert']:<6} {c['issued_at'][:16]}  {' '.join(c['areas'])}  {c['targeted']:>8,}  {c['rate']:.1%}")
    return 0


def cmd_drills_compare(ctx: Context, args: argparse.Namespace) -> int:
    from broadcast.following.scorecards import compare, compare_csv

    cards = {c["alert"]: c for c in _scorecards(ctx, args.event)}
    ids = list(cards)
    first, second = args.previous or (ids[-2] if len(ids) > 1 else None), args.latest or (ids[-1] if ids else None)
    if first not in cards or second not in cards:
        print(f"error: need two kept {args.event} drills (kept: {', '.join(ids) or 'none'})", file=sys.stderr)
        return 2
    if args.format == "csv":
        sys.stdout.write(compare_csv(cards[first], cards[second]))
        return 0
    rows = {level: compare(cards[first], cards[second], level) for level in ("streets", "committees")}
    if args.format == "json":
        print(json.dumps({"previous": first, "latest": second, **rows}, ensure_ascii=False))
        return 0
    for row in rows["streets"] + rows["committees"]:
        before, after = row["before"] or {}, row["after"] or {}
        rate = f"{before.get('rate', 0):.1%} → {after.get('rate', 0):.1%}"
        print(f"{row['code']}  {row['name']:<16} {rate:>17}  {row['verdict']}")
    return 0


def _nested(sub: argparse._SubParsersAction, command: str) -> argparse._SubParsersAction:
    """The subcommands of an existing command (``alert``), to add one more to them."""
    parser = sub.choices[command]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"`{command}` has no subcommands")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``broadcast alert report`` and ``broadcast drills …``."""
    report = _nested(sub, "alert").add_parser("report", help="the after-action report of an alert")
    report.add_argument("id")
    report.add_argument("--format", choices=["html", "pdf", "json"], default="html")
    report.add_argument("--output", "-o", help="file to write (default: stdout; a PDF: alert-ID-review.pdf)")
    report.set_defaults(handler=cmd_report)

    drills = sub.add_parser("drills", help="drill scorecards, compared over time").add_subparsers(
        dest="drills_command", required=True
    )
    listing = drills.add_parser("list", help="kept drills of one kind")
    listing.add_argument("--event", required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_drills_list)
    comparing = drills.add_parser("compare", help="two drills of one kind, per street and committee")
    comparing.add_argument("--event", required=True)
    comparing.add_argument("--previous", help="the earlier drill's alert id (default: the second latest)")
    comparing.add_argument("--latest", help="the later drill's alert id (default: the latest)")
    comparing.add_argument("--format", choices=["table", "csv", "json"], default="table")
    comparing.set_defaults(handler=cmd_drills_compare)
