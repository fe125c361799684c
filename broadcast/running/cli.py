"""The ``broadcast`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from audiences.areas import AreaFileError
from broadcast.core.context import Context, open_context
from broadcast.core.embedded_redis import EmbeddedRedisError, stop_embedded_redis
from broadcast.core.models import AlertDraft, ChannelKind, EventType, Language, Level, Target
from broadcast.core.settings import Settings
from broadcast.issuing import alerts
from broadcast.web.console.access import Forbidden
from broadcast.web.console.actions import account, approve_as, cancel_as, compose_as


class UsageError(Exception):
    """Bad command-line input; printed without a traceback."""


# Commands that sign links or talk to providers (or their simulators): they make the deployment's
# secret if there is none yet; the rest only read it.
SIGNING_COMMANDS = frozenset({"serve", "worker", "demo", "bench", "alert", "screens"})

# Modules that add subcommands: each has register(subparsers) setting handler(ctx, args) -> int.
COMMAND_MODULES: list[str] = [
    "broadcast.running.templates_cli",
    "broadcast.running.audiences_cli",
    "broadcast.running.bench",
    "broadcast.running.console_cli",
    "broadcast.running.review_cli",
]


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least one."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _params(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--param expects key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def cmd_demo(ctx: Context, args: argparse.Namespace) -> int:
    from broadcast.running.demo import DEMO_STREET, run_demo

    code = run_demo(
        ctx, once=args.once, as_json=args.json, area=args.area or DEMO_STREET, residents=args.residents, seed=args.seed
    )
    if args.once and ctx.embedded is not None and ctx.embedded.started_here:
        ctx.embedded.stop()
    return code


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    from broadcast.running.services import start_services
    from channels.twilio.account import loopback_only

    async def serve() -> None:
        services = await start_services(ctx)
        simulated = f" (simulated providers at {ctx.settings.simulator_url})" if services.simulators else ""
        print(f"broadcast serving at {services.url}{simulated}")
        if services.simulators and not (ctx.settings.simulator_webhooks_public or loopback_only(ctx.settings)):
            print("simulated providers' webhooks are refused beyond loopback (BROADCAST_SIMULATOR_WEBHOOKS_PUBLIC)")
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await services.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def cmd_worker(ctx: Context, args: argparse.Namespace) -> int:
    from broadcast.running.worker import run_worker, supervise, worker_command

    if args.processes > 1:
        return supervise(worker_command(args.burst), args.processes, burst=args.burst)
    run_worker(ctx, burst=args.burst)
    return 0


def _print(data: object, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False, default=str))
    elif isinstance(data, dict):
        for key, value in data.items():
            print(f"{key}: {value}")
    else:
        print(data)


def cmd_alert_issue(ctx: Context, args: argparse.Namespace) -> int:
    draft = AlertDraft(
        event=EventType(args.event),
        level=Level(args.level),
        target=Target(areas=args.area, groups=args.group or [], exclude=args.exclude or []),
        channels=[ChannelKind(c) for c in (args.channel or ["sms"])],
        languages=[Language(lang) for lang in (args.lang or ["zh", "en"])],
        params=_params(args.param or []),
        exercise=args.drill,
        valid_minutes=args.valid_minutes,
        composed_by=args.by,
        request_id=args.request_id,
    )
    user = account(ctx, args.by)
    alert = compose_as(ctx, user, draft.model_copy(update={"composed_by": user.name}), "cli")
    _print(alert.model_dump(mode="json"), args.json)
    if alert.status.value == "pending_approval" and not args.json:
        print(f"Alert {alert.id} waits for a second officer: broadcast alert approve {alert.id} --by NAME")
    return 0


def cmd_alert_approve(ctx: Context, args: argparse.Namespace) -> int:
    alert = approve_as(ctx, account(ctx, args.by), args.id, "cli")
    _print(alert.model_dump(mode="json"), args.json)
    return 0


def cmd_alert_cancel(ctx: Context, args: argparse.Namespace) -> int:
    alert, lift = cancel_as(ctx, account(ctx, args.by), args.id, "cli", notify=args.notify)
    _print(alert.model_dump(mode="json"), args.json)
    if lift is not None and not args.json:
        print(f"cancel message {lift.id} ({lift.status.value}) tells the same people it is lifted")
    return 0


def cmd_alert_status(ctx: Context, args: argparse.Namespace) -> int:
    from broadcast.following.progress import alert_progress

    alert = alerts.get_alert(ctx, args.id)

    async def fetch() -> dict[str, object]:
        client = ctx.async_redis()
        try:
            return await alert_progress(client, ctx.keys, alert)
        finally:
            await client.aclose()

    progress = asyncio.run(fetch())
    if args.json:
        _print(progress, True)
    else:
        _print({"alert": alert.id, "status": alert.status.value, **progress["totals"]}, False)  # type: ignore[dict-item]
    return 0


def cmd_redis_stop(ctx_settings: Settings) -> int:
    stopped = stop_embedded_redis(ctx_settings.data_dir)
    print("embedded Redis stopped" if stopped else "no embedded Redis was running")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broadcast", description="Multi-channel public warning broadcast service")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="issue a typhoon drill to one street, end to end, on this machine")
    demo.add_argument("--once", action="store_true", help="exit after the summary instead of serving on")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    demo.add_argument("--area", help="area code to target (default: 浦东新区 陆家嘴街道)")
    demo.add_argument("--residents", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(handler=cmd_demo)

    sub.add_parser("serve", help="run the web app (and simulators for providers without credentials)").set_defaults(
        handler=cmd_serve
    )
    worker = sub.add_parser("worker", help="run a worker for batches and timers")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument(
        "--processes", type=_positive, default=1, help="run N worker processes, starting again any that dies"
    )
    worker.set_defaults(handler=cmd_worker)

    alert = sub.add_parser("alert", help="issue, approve, cancel and follow alerts").add_subparsers(
        dest="alert_command", required=True
    )
    issue = alert.add_parser("issue", help="compose and issue an alert")
    issue.add_argument("--event", required=True, choices=[e.value for e in EventType])
    issue.add_argument("--level", required=True, choices=[lv.value for lv in Level])
    issue.add_argument("--area", required=True, action="append", help="area code (repeatable)")
    issue.add_argument("--exclude", action="append", help="area code to leave out (repeatable)")
    issue.add_argument("--group", action="append", help="only residents of this group (repeatable)")
    issue.add_argument("--channel", action="append", choices=[c.value for c in ChannelKind])
    issue.add_argument("--lang", action="append", choices=[lang.value for lang in Language])
    issue.add_argument("--param", action="append", metavar="KEY=VALUE")
    issue.add_argument("--drill", action="store_true", help="mark it an exercise (【演练】)")
    issue.add_argument("--valid-minutes", type=int, default=12 * 60)
    issue.add_argument("--by", required=True, help="the composing officer's account")
    issue.add_argument("--request-id", help="idempotency key: the same key twice issues one alert")
    issue.add_argument("--json", action="store_true")
    issue.set_defaults(handler=cmd_alert_issue)
    for name, handler, helptext in (
        ("approve", cmd_alert_approve, "approve as the second officer"),
        ("cancel", cmd_alert_cancel, "cancel an alert"),
    ):
        p = alert.add_parser(name, help=helptext)
        p.add_argument("id")
        p.add_argument("--by", required=True, help="the account acting (its role and areas are checked)")
        if name == "cancel":
            p.add_argument("--notify", action="store_true", help="first tell the same people it is lifted (解除)")
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=handler)
    status = alert.add_parser("status", help="progress of an alert")
    status.add_argument("id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_alert_status)

    redis_cmd = sub.add_parser("redis", help="the embedded Redis").add_subparsers(dest="redis_command", required=True)
    redis_cmd.add_parser("stop", help="stop the embedded Redis (its data stays)").set_defaults(handler=None)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command == "redis":
        return cmd_redis_stop(settings)
    handler: Callable[[Context, argparse.Namespace], int] = args.handler
    try:
        # Commands that only read files (templates) get a context that never connects.
        ctx = (
            open_context(settings, make_secret=args.command in SIGNING_COMMANDS)
            if getattr(args, "needs_redis", True)
            else Context(settings, redis_url="")
        )
    except EmbeddedRedisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return handler(ctx, args)
    except alerts.AlertError as exc:
        print(f"error: {exc.message}" + (f" (field: {exc.field})" if exc.field else ""), file=sys.stderr)
        return 2
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "input"
            print(f"error: {where}: {e['msg']}", file=sys.stderr)
        return 2
    except Forbidden as exc:
        print(f"error: {exc.message}" + (f" (field: {exc.field})" if exc.field else ""), file=sys.stderr)
        return 2
    except (UsageError, AreaFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from broadcast.running.services import PortInUse

        if isinstance(exc, PortInUse):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
