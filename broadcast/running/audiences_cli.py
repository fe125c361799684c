"""The audiences' commands: areas, seeding, imports, volunteer gaps, groups and target preview."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audiences.areas import BUNDLED_DIVISIONS, AreaFileError, AreaTree, read_divisions, store_areas
from audiences.census import area_report, describe
from audiences.csvfile import ImportRejected
from audiences.groups import DERIVED_GROUPS, custom_groups
from audiences.import_journal import describe_unfinished, unfinished_imports
from audiences.importers import (
    ImportReport,
    import_buildings,
    import_group,
    import_key_units,
    import_residents,
    import_screens,
    import_volunteers,
)
from audiences.preview import preview
from audiences.residents import PERSONAL_CHANNELS
from audiences.targeting import TargetError
from audiences.volunteers import grids_without_volunteers
from broadcast.core.context import Context
from broadcast.core.models import ChannelKind, Level, Target

CITY = "310000000000"
ENCODING_HELP = "the file's encoding when it is not UTF-8, GB18030 or UTF-16 with its BOM (e.g. big5, shift_jis)"


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
    elif isinstance(data, dict):
        for key, value in data.items():
            print(f"{key}: {value}")
    else:
        print(data)


def _fail(message: str, lines: list[str] | None = None) -> int:
    print(f"error: {message}", file=sys.stderr)
    for line in lines or []:
        print(f"  {line}", file=sys.stderr)
    return 2


def _tree(ctx: Context) -> AreaTree:
    tree = AreaTree.current(ctx.redis, ctx.keys)
    if not len(tree):
        raise LookupError("no areas are loaded; run `broadcast areas load` first")
    return tree


def _guarded(handler: Callable[[Context, argparse.Namespace], int]) -> Callable[[Context, argparse.Namespace], int]:
    """Turn the errors a user can cause into a message and exit code 2; nothing was changed."""

    def run(ctx: Context, args: argparse.Namespace) -> int:
        try:
            return handler(ctx, args)
        except ImportRejected as exc:
            return _fail(f"{exc.source}: {len(exc.problems)} problem(s); nothing was imported", exc.problems)
        except OSError as exc:
            return _fail(f"cannot read {exc.filename or 'the file'}: {exc.strerror or exc}")
        except (TargetError, LookupError, AreaFileError) as exc:
            return _fail(str(exc).strip("'\""))

    return run


# Areas
def cmd_areas_load(ctx: Context, args: argparse.Namespace) -> int:
    areas = read_divisions(Path(args.csv) if args.csv else BUNDLED_DIVISIONS)
    print(f"loaded {store_areas(ctx.redis, ctx.keys, areas)} areas")
    return 0


def cmd_areas_stats(ctx: Context, args: argparse.Namespace) -> int:
    _print(AreaTree.current(ctx.redis, ctx.keys).stats(), args.json)
    return 0


def cmd_areas_show(ctx: Context, args: argparse.Namespace) -> int:
    report = area_report(ctx.redis, ctx.keys, _tree(ctx), args.code)
    unfinished = unfinished_imports(ctx.redis, ctx.keys)
    if args.json:
        _print({**report, "interrupted_imports": unfinished}, True)
        return 0
    chain = " › ".join(a["name"] for a in [*report["parents"], report["area"]])
    print(f"{chain} ({report['area']['code']}, {report['area']['kind']})")
    print(
        f"residents {report['residents']}, key-unit contacts {report['key_unit_contacts']}, "
        f"volunteers {report['volunteers']}, screens {report['screens']}"
    )
    for child in report["children"]:
        print(f"  {child['code']}  {child['name']:<20} {child['residents']:>8}")
    for entry in unfinished:
        print(f"warning: {describe_unfinished(entry)}")
    return 0


# Seeding
def cmd_seed(ctx: Context, args: argparse.Namespace) -> int:
    from audiences.population import committees, store_population

    if not ctx.redis.exists(ctx.keys.areas):
        store_areas(ctx.redis, ctx.keys, read_divisions())
    tree = _tree(ctx)
    if args.area not in tree:
        raise LookupError(f"unknown area code {args.area}")
    if args.residents < 1:
        raise LookupError("--residents must be at least 1")
    try:
        people = committees(tree, args.area, args.residents, args.seed, args.key_units)
        result = store_population(ctx.redis, ctx.keys, people)
    except ValueError as exc:
        return _fail(str(exc))
    _print(result, args.json)
    return 0


# Imports
def _import(run: Callable[..., ImportReport], **extra: Any) -> Callable[[Context, argparse.Namespace], int]:
    def handler(ctx: Context, args: argparse.Namespace) -> int:
        path = Path(args.file)
        path.open("rb").close()  # a missing or unreadable file is named before anything else
        options = {name: getattr(args, name) for name in extra}
        report = run(
            ctx.redis,
            ctx.keys,
            _tree(ctx),
            path,
            source=path.name,
            dry_run=args.dry_run,
            encoding=args.encoding,
            **options,
        )
        if args.json:
            _print(report.as_dict(), True)
        else:
            verb = "would import" if report.dry_run else "imported"
            print(
                f"{verb} {report.rows} {report.kind} rows from {path.name} (read as {report.encoding}): "
                f"{report.created} new, {report.updated} updated"
                + (f", {report.removed} removed" if report.removed else "")
            )
        return 0

    return handler


def cmd_groups_import(ctx: Context, args: argparse.Namespace) -> int:
    path = Path(args.file)
    report = import_group(
        ctx.redis,
        ctx.keys,
        args.name,
        args.title or "",
        path.read_bytes(),
        source=path.name,
        dry_run=args.dry_run,
        encoding=args.encoding,
    )
    _print(report.as_dict(), args.json)
    return 0


def cmd_groups_list(ctx: Context, args: argparse.Namespace) -> int:
    groups = [{"name": name, "derived": True, "title": title} for name, (_, title) in DERIVED_GROUPS.items()]
    groups += [{**g.model_dump(), "derived": False} for g in custom_groups(ctx.redis, ctx.keys).values()]
    if args.json:
        _print(groups, True)
    else:
        for g in groups:
            print(f"{g['name']:<16} {'derived' if g['derived'] else str(g['size']) + ' members':<12} {g['title']}")
    return 0


def cmd_volunteer_gaps(ctx: Context, args: argparse.Namespace) -> int:
    tree = _tree(ctx)
    tree.get(args.area)
    gaps = [describe(g) for g in grids_without_volunteers(ctx.redis, ctx.keys, tree, args.area)]
    if args.json:
        _print({"area": args.area, "grids_without_volunteers": gaps}, True)
    else:
        print(f"{len(gaps)} grid(s) in {tree.get(args.area).name} have no volunteer")
        for g in gaps:
            print(f"  {g['code']}  {g['name']}")
    return 0


def cmd_target_preview(ctx: Context, args: argparse.Namespace) -> int:
    target = Target(areas=args.area, groups=args.group or [], exclude=args.exclude or [])
    channels = [ChannelKind(c) for c in args.channel] if args.channel else list(PERSONAL_CHANNELS)
    level = Level(args.level) if args.level else None
    counts = preview(ctx.redis, ctx.keys, _tree(ctx), target, channels, level, ctx.settings.opt_out_override_levels)
    if args.json:
        _print(counts, True)
        return 0
    print(f"targeted {counts['targeted']} ({counts['vulnerable']} vulnerable), screens {counts['screens']}")
    print("by channel: " + ", ".join(f"{k} {v}" for k, v in counts["channels"].items()))
    for row in counts["areas"]["street"]:
        print(f"  {row['code']}  {row['name']:<16} {row['targeted']:>8}")
    return 0


def cmd_screen_key(ctx: Context, args: argparse.Namespace) -> int:
    """Print a registered screen's key and topics, to provision the screen with."""
    from broadcast.delivering.displays import screen_key
    from channels.screens.display import ack_topic, status_topic

    raw = ctx.redis.hget(ctx.keys.screens, args.id)
    if raw is None:
        raise LookupError(f"no screen with id {args.id}")
    prefix = ctx.settings.screen_topic_prefix
    print(f"key: {screen_key(ctx.secret, args.id)}")
    print(f"show on: {json.loads(raw)['address']}")
    print(f"acknowledge on: {ack_topic(prefix, args.id)}")
    print(f"last will on: {status_topic(prefix, args.id)}")
    return 0


def register(sub: Any) -> None:
    """Add the audiences' commands to the ``broadcast`` parser."""
    areas = sub.add_parser("areas", help="the area hierarchy").add_subparsers(dest="areas_command", required=True)
    load = areas.add_parser("load", help="load division codes (default: the bundled Shanghai data)")
    load.add_argument("csv", nargs="?")
    load.set_defaults(handler=_guarded(cmd_areas_load))
    stats = areas.add_parser("stats", help="how many areas of each level and kind are loaded")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=_guarded(cmd_areas_stats))
    show = areas.add_parser("show", help="an area, its parents, its children and how many people each holds")
    show.add_argument("code")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_guarded(cmd_areas_show))

    seed = sub.add_parser("seed", help="generate a synthetic population (deterministic)")
    seed.add_argument("--residents", type=int, required=True)
    seed.add_argument("--area", default=CITY, help="area code (default: the whole city)")
    seed.add_argument("--seed", type=int, default=1)
    seed.add_argument("--key-units", action="store_true", help="also generate key units with contacts")
    seed.add_argument("--json", action="store_true")
    seed.set_defaults(handler=_guarded(cmd_seed))

    importers: list[tuple[str, str, Callable[..., ImportReport], dict[str, Any]]] = [
        ("residents", "residents", import_residents, {"replace_community": None}),
        ("buildings", "buildings (and their grids)", import_buildings, {}),
        ("volunteers", "volunteers and the grids or buildings they cover", import_volunteers, {}),
        ("screens", "building and lift screens", import_screens, {}),
        ("key-units", "key units (灾害防御重点单位), one row per contact person", import_key_units, {}),
    ]
    parsers: dict[str, Any] = {}
    for name, what, run, extra in importers:
        group = sub.add_parser(name, help=f"{what}").add_subparsers(dest=f"{name}_command", required=True)
        parsers[name] = group
        imp = group.add_parser("import", help=f"import {what} from CSV (UTF-8, GB18030 or UTF-16); all rows or none")
        imp.add_argument("file")
        imp.add_argument("--dry-run", action="store_true", help="validate and count, write nothing")
        imp.add_argument("--encoding", help=ENCODING_HELP)
        imp.add_argument("--json", action="store_true")
        if "replace_community" in extra:
            imp.add_argument(
                "--replace-community", metavar="CODE", help="residents of this committee missing from the file leave"
            )
        imp.set_defaults(handler=_guarded(_import(run, **extra)))
    key = parsers["screens"].add_parser("key", help="the key a screen signs its acknowledgements with")
    key.add_argument("id")
    key.set_defaults(handler=_guarded(cmd_screen_key))
    gaps = parsers["volunteers"].add_parser("gaps", help="grids that have no volunteer")
    gaps.add_argument("--area", default=CITY)
    gaps.add_argument("--json", action="store_true")
    gaps.set_defaults(handler=_guarded(cmd_volunteer_gaps))

    groups = sub.add_parser("groups", help="derived and custom groups").add_subparsers(
        dest="groups_command", required=True
    )
    listing = groups.add_parser("list", help="every group a target may name")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_guarded(cmd_groups_list))
    gimp = groups.add_parser("import", help="create or replace a custom group from a CSV of external ids")
    gimp.add_argument("name")
    gimp.add_argument("file")
    gimp.add_argument("--title")
    gimp.add_argument("--dry-run", action="store_true")
    gimp.add_argument("--encoding", help=ENCODING_HELP)
    gimp.add_argument("--json", action="store_true")
    gimp.set_defaults(handler=_guarded(cmd_groups_import))

    target = sub.add_parser("target", help="who a target reaches").add_subparsers(dest="target_command", required=True)
    prev = target.add_parser("preview", help="counts per area and channel before issuing; nothing is stored")
    prev.add_argument("--area", required=True, action="append", help="area code at any level (repeatable)")
    prev.add_argument("--group", action="append", help="only this group (repeatable; any of them)")
    prev.add_argument("--exclude", action="append", help="area code to leave out (repeatable)")
    prev.add_argument("--channel", action="append", choices=[c.value for c in ChannelKind])
    prev.add_argument("--level", choices=[lv.value for lv in Level], help="decides whether opt-outs hold")
    prev.add_argument("--json", action="store_true")
    prev.set_defaults(handler=_guarded(cmd_target_preview))
