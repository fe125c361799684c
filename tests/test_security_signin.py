"""Attacks on signing in: parallel guesses racing the lockout, a flood of argon2 work, and sessions
that outlive a password change or a disabled account."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from audiences.areas import AreaTree
from broadcast.core.context import Context
from broadcast.running.cli import main
from broadcast.web.console import signin
from broadcast.web.console.sessions import LOGIN_CSRF_COOKIE
from broadcast.web.console.users import Role
from tests.conftest import Stack
from tests.helpers import PASSWORD, add_user
from tests.test_console_access import PUDONG, Visitor

DEADLINE = 60.0


class Verifications:
    """Stands in the console's password check: counts evaluations, the most at once, and can hold them."""

    def __init__(self, real: Callable[..., bool]) -> None:
        self.real = real
        self.lock = threading.Lock()
        self.evaluated = 0
        self.running = 0
        self.most = 0
        self.released = threading.Event()
        self.released.set()

    def __call__(self, *args: Any) -> bool:
        with self.lock:
            self.evaluated += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.released.wait(DEADLINE)
            return self.real(*args)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Verifications:
    counter = Verifications(signin.verify_password)
    monkeypatch.setattr(signin, "verify_password", counter)
    return counter


def login_poster(stack: Stack) -> Callable[[str, str], int]:
    """Post the sign-in form with one valid double-submitted CSRF pair (as a script would, not
    taking the cookies the answers set), returning the status."""
    visitor = Visitor(stack.url)
    csrf = re.search(r'name="csrf" value="([^"]+)"', visitor.send("/login").text)
    assert csrf
    token = csrf.group(1)
    cookie = {"Cookie": f"{LOGIN_CSRF_COOKIE}={token}"}

    def post(name: str, password: str) -> int:
        form = {"csrf": token, "name": name, "password": password, "next": "/console"}
        return int(Visitor(stack.url).send("/login", form, cookie).status)

    return post


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_parallel_guesses_cannot_outrun_the_lockout(
    ctx: Context, tree: AreaTree, stack: Stack, verifications: Verifications
) -> None:
    add_user(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    post = login_poster(stack)
    limit = ctx.settings.login_attempts
    verifications.released.clear()  # every password check waits until the guesses are all in
    with ThreadPoolExecutor(max_workers=48) as pool:
        guesses = [pool.submit(post, "zhang.wei", f"guess number {i}") for i in range(39)]

        def answered() -> list[Future[int]]:
            return [g for g in guesses if g.done()]

        wait_for(lambda: len(answered()) == 39 - limit, "every guess beyond the limit is refused at once")
        assert {g.result() for g in answered()} == {429}
        right = pool.submit(post, "zhang.wei", PASSWORD)
        assert right.result(DEADLINE) == 429, "the right password, sent last, is refused too"
        verifications.released.set()
        assert sorted(g.result(DEADLINE) for g in guesses) == [401] * limit + [429] * (39 - limit)
    assert verifications.evaluated == limit


def test_a_flood_of_sign_ins_is_evaluated_only_up_to_the_limits(
    ctx: Context, tree: AreaTree, stack: Stack, verifications: Verifications
) -> None:
    names = [f"officer.{i:02d}" for i in range(40)]
    for name in names:
        add_user(ctx, name, Role.duty_officer, [PUDONG])
    post = login_poster(stack)
    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(lambda i: post(names[i % len(names)], f"wrong password {i}"), range(200)))
    per_address = ctx.settings.login_attempts * 4
    assert statuses.count(401) == per_address and statuses.count(429) == 200 - per_address
    assert verifications.evaluated == per_address
    assert verifications.most <= ctx.settings.login_concurrency


def test_a_password_change_or_disabling_ends_every_session(
    ctx: Context, tree: AreaTree, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", ctx.redis_url)
    monkeypatch.setenv("BROADCAST_NAMESPACE", ctx.keys.ns)
    add_user(ctx, "zhang.wei", Role.duty_officer, [PUDONG])
    browser, phone = Visitor(stack.url), Visitor(stack.url)
    for visitor in (browser, phone):
        assert visitor.sign_in("zhang.wei").status == 303
        assert visitor.send("/console").status == 200
    new_password = "a new long password"
    monkeypatch.setattr("sys.stdin", io.StringIO(new_password + "\n"))
    assert main(["users", "password", "zhang.wei", "--password-stdin"]) == 0
    for visitor in (browser, phone):
        answer = visitor.send("/console")
        assert answer.status == 303 and visitor.headers["Location"].startswith("/login"), "the old session ended"
    assert browser.sign_in("zhang.wei", new_password).status == 303
    assert browser.send("/console").status == 200

    assert main(["users", "disable", "zhang.wei"]) == 0
    assert main(["users", "disable", "zhang.wei", "--enable"]) == 0
    assert browser.send("/console").status == 303, "enabling the account again does not bring a session back"
    assert browser.sign_in("zhang.wei", new_password).status == 303
