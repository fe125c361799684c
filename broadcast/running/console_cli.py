"""``broadcast users …``: console accounts and API tokens from the command line.

Passwords are typed at a prompt (twice) or piped with ``--password-stdin``; never given as an
argument, where shell history and the process list would keep them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import Callable

from audiences.areas import AreaTree
from broadcast.core.context import Context
from broadcast.issuing.alerts import audit
from broadcast.web.console.api_tokens import LABEL, create_token, revoke_token, token_labels
from broadcast.web.console.users import (
    USER_NAME,
    Role,
    User,
    UserError,
    list_users,
    load_user,
    new_user,
    public_view,
    store_user,
    with_disabled,
    with_password,
)


class CommandError(Exception):
    """Bad input to a users command; printed without a traceback."""


def _name(value: str) -> str:
    if not re.fullmatch(USER_NAME, value):
        raise argparse.ArgumentTypeError("user names are 2–64 lower-case letters, digits, '.', '_' or '-'")
    return value


def _label(value: str) -> str:
    if not re.fullmatch(LABEL, value):
        raise argparse.ArgumentTypeError("a label is 1–40 letters, digits, '.', '_', ':' or '-'")
    return value


def read_password(from_stdin: bool) -> str:
    """A new password from standard input or, interactively, typed twice."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for the password; pipe it with --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise CommandError("the two passwords differ; nothing was changed")
    return first


def _existing(ctx: Context, name: str) -> User:
    user = load_user(ctx.redis, ctx.keys, name)
    if user is None:
        raise CommandError(f"no user named {name}")
    return user


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    password = read_password(args.password_stdin)
    tree = AreaTree.current(ctx.redis, ctx.keys)
    if len(tree) == 0:
        raise CommandError("no areas are loaded; run `broadcast areas load` first")
    user = new_user(
        args.name,
        Role(args.role),
        password,
        tree,
        now=ctx.clock.now(),
        areas=args.area or [],
        display_name=args.display_name,
        volunteer_id=args.volunteer,
    )
    store_user(ctx.redis, ctx.keys, user)
    audit(ctx, "cli", "user_add", origin="cli", user=user.name, role=user.role.value, areas=user.areas)
    areas = ", ".join(f"{code} {tree.get(code).name}" for code in user.areas) or "all (admin)"
    print(f"added {user.name} ({user.role.value}); areas: {areas}")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    users = list_users(ctx.redis, ctx.keys)
    if args.json:
        print(json.dumps([public_view(u) for u in users], ensure_ascii=False))
        return 0
    for user in users:
        state = " (disabled)" if user.disabled else ""
        print(f"{user.name:<20} {user.role.value:<17} {' '.join(user.areas) or '-'}{state}")
    return 0


def cmd_password(ctx: Context, args: argparse.Namespace) -> int:
    user = _existing(ctx, args.name)
    password = read_password(args.password_stdin)
    store_user(ctx.redis, ctx.keys, with_password(user, password), replace=True)
    audit(ctx, "cli", "user_password", origin="cli", user=args.name)
    print(f"password of {args.name} changed; their sessions have ended")
    return 0


def cmd_disable(ctx: Context, args: argparse.Namespace) -> int:
    user = _existing(ctx, args.name)
    store_user(ctx.redis, ctx.keys, with_disabled(user, not args.enable), replace=True)
    audit(ctx, "cli", "user_enable" if args.enable else "user_disable", origin="cli", user=args.name)
    print(f"{args.name} {'enabled' if args.enable else 'disabled: their sessions and tokens stop working now'}")
    return 0


def cmd_token(ctx: Context, args: argparse.Namespace) -> int:
    _existing(ctx, args.name)
    if args.revoke:
        if not revoke_token(ctx.redis, ctx.keys, args.name, args.label):
            raise CommandError(f"{args.name} has no token labelled {args.label}")
        audit(ctx, "cli", "token_revoke", origin="cli", user=args.name, label=args.label)
        print(f"token {args.label} of {args.name} revoked")
        return 0
    token = create_token(ctx.redis, ctx.keys, args.name, args.label, ctx.clock.now())
    audit(ctx, "cli", "token_create", origin="cli", user=args.name, label=args.label)
    print(token)
    labels = ", ".join(token_labels(ctx.redis, ctx.keys, args.name))
    print(f"(shown once; send it as 'Authorization: Bearer <token>'; {args.name}'s tokens: {labels})", file=sys.stderr)
    return 0


Handler = Callable[[Context, argparse.Namespace], int]


def _guarded(handler: Handler) -> Handler:
    def run(ctx: Context, args: argparse.Namespace) -> int:
        try:
            return handler(ctx, args)
        except UserError as exc:
            print(f"error: {exc} (field: {exc.field})", file=sys.stderr)
        except CommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
        return 2

    return run


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``broadcast users …``."""
    users = sub.add_parser("users", help="console accounts and API tokens").add_subparsers(
        dest="users_command", required=True
    )
    add = users.add_parser("add", help="create an account (asks for the password)")
    add.add_argument("name", type=_name)
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--area", action="append", help="an area code the user answers for (repeatable)")
    add.add_argument("--display-name", help="the name pages show (default: the user name)")
    add.add_argument("--volunteer", help="for a volunteer: their id in the registry")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(handler=_guarded(cmd_add))
    listing = users.add_parser("list", help="every account")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_guarded(cmd_list))
    password = users.add_parser("password", help="set a new password (asks for it)")
    password.add_argument("name", type=_name)
    password.add_argument("--password-stdin", action="store_true")
    password.set_defaults(handler=_guarded(cmd_password))
    disable = users.add_parser("disable", help="stop an account from signing in (and its tokens)")
    disable.add_argument("name", type=_name)
    disable.add_argument("--enable", action="store_true", help="let it sign in again")
    disable.set_defaults(handler=_guarded(cmd_disable))
    token = users.add_parser("token", help="make (or --revoke) a bearer token for a machine client")
    token.add_argument("name", type=_name)
    token.add_argument("--label", required=True, type=_label, help="what the token is for, e.g. ci-bot")
    token.add_argument("--revoke", action="store_true")
    token.set_defaults(handler=_guarded(cmd_token))
