"""Faults against real processes: a worker and its work horse killed, Redis shut down or killed and
started again, a ladder step or a help case whose worker died part way, a provider at its capacity.

Each test waits for an outcome with a generous deadline that fails with what was missing; none
asserts how fast recovery was (``broadcast bench faults`` measures that).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Worker
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from audiences.areas import AreaTree, read_divisions, store_areas
from audiences.population import Population, generate, store_population
from audiences.volunteers import VolunteerRole
from broadcast.core.context import FOLLOWUP_QUEUE, Context
from broadcast.core.models import ChannelKind, Level
from broadcast.core.settings import Settings
from broadcast.following.escalation import step_job_id
from broadcast.hearing.inbound import queue_help_case
from broadcast.running.benchmarks import faults
from broadcast.running.benchmarks.faults import RestartableRedis, children_of, kill_tree
from broadcast.running.services import start_services
from broadcast.running.worker import drain
from channels.simulators.twilio import Capacity, TwilioBehaviour
from tests.conftest import ROOT, STREET, LoopThread, Stack
from tests.helpers import issue, progress, texts_to

DEADLINE = 120.0  # seconds any one recovery may take before the test fails (a loaded machine is slow)


def wait_for(what: str, done: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll ``done`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.05)


class Workers:
    """``broadcast worker`` processes for a test's namespace; stopped (the whole group) at the end."""

    def __init__(self, ctx: Context, **settings: Any) -> None:
        self.env = {
            **os.environ,
            "REDIS_URL": ctx.redis_url,
            "BROADCAST_NAMESPACE": ctx.settings.namespace,
            "BROADCAST_PORT": str(ctx.settings.port),
            "BROADCAST_SIMULATOR_URL": ctx.settings.simulator_url,
            "BROADCAST_SECRET_KEY": "test-secret-key",
            "BROADCAST_JOB_MONITORING_INTERVAL": "2",
            "BROADCAST_WATCHDOG_SECONDS": "0.5",
            **{f"BROADCAST_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.started: list[subprocess.Popen[bytes]] = []
        self.log = Path(tempfile.mkstemp(prefix="broadcast-worker-", suffix=".log")[1])

    def start(self, processes: int = 1) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "broadcast", "worker"]
        if processes > 1:
            argv += ["--processes", str(processes)]
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                argv, env=self.env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log
            )
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def tail(self) -> str:
        """The end of what the workers logged (for a failure's message)."""
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def workers(ctx: Context) -> Iterator[Callable[..., Workers]]:
    made: list[Workers] = []

    def make(**settings: Any) -> Workers:
        made.append(Workers(ctx, **settings))
        return made[-1]

    yield make
    for group in made:
        group.stop()
        print(f"--- worker log ---\n{group.tail()}")
        group.log.unlink(missing_ok=True)


def test_a_killed_worker_s_batch_resumes_on_another_and_the_dead_worker_is_replaced(
    ctx: Context, population: Population, stack: Stack, workers: Callable[..., Workers]
) -> None:
    stack.sim.behaviour.latency = 0.02  # slow provider: the batch is still running when its worker dies
    stack.sim.behaviour.help_share = 0  # only the alert's own messages go to the provider
    pool = workers(send_concurrency=4, batch_size=600)
    supervisor = pool.start(processes=2)
    wait_for("two worker processes started", lambda: len(children_of(supervisor.pid)) == 2)
    alert = issue(ctx, [STREET])
    wait_for("the worker started sending", lambda: len(stack.sim.messages) >= 100)
    batch = f"{ctx.keys.ns}-{alert.id}-b0"
    busy = [w.pid for w in Worker.all(connection=ctx.redis) if w.get_current_job_id() == batch]
    assert len(busy) == 1, f"one worker runs the only batch, found {busy}"
    kill_tree(busy[0])
    sent_before = len(stack.sim.messages)
    assert sent_before < 600, "the batch finished before the kill; the test proves nothing"

    stack.sim.behaviour.latency = 0
    wait_for(
        "the abandoned batch was taken up by another worker", lambda: progress(ctx, alert.id)["totals"]["done_sending"]
    )
    wait_for(
        "the supervisor started a worker in place of the dead one",
        lambda: len([p for p in children_of(supervisor.pid) if p != busy[0]]) == 2,
    )
    stack.settle()
    phones = {r.phone for r in population.residents}
    received = texts_to(stack.sim, population)
    assert set(received) == phones, "nobody is missing"
    duplicates = sum(received.values()) - len(phones)
    totals = progress(ctx, alert.id)["totals"]
    assert duplicates <= totals["possible_duplicates"], "every real duplicate is counted"
    assert totals["possible_duplicates"] <= 50 + 50 + 4, "only what was in flight is suspect, not the whole batch"
    assert totals["stages"]["sent"] + totals["stages"]["delivered"] == 600


@pytest.fixture
def own_redis() -> Iterator[RestartableRedis]:
    """A redis-server of the test's own with AOF on, to shut down or kill and start again."""
    with faults.own_redis() as server:
        yield server


@pytest.mark.parametrize("how", ["shutdown", "kill"])
def test_a_redis_restart_costs_nobody_and_needs_nobody(
    how: str, own_redis: RestartableRedis, settings: Settings, workers: Callable[..., Workers]
) -> None:
    settings = settings.model_copy(update={"redis_url": own_redis.url})
    ctx = Context(settings=settings, redis_url=own_redis.url)
    store_areas(ctx.redis, ctx.keys, read_divisions())
    population = generate(AreaTree.load(ctx.redis, ctx.keys), STREET, 600, seed=3)
    store_population(ctx.redis, ctx.keys, population)
    behaviour = TwilioBehaviour(reply_share=0.5, help_share=0, reply_delay=(0, 0.5), status_delay=(0, 0.05))
    behaviour.latency = 0.01
    loop = LoopThread()
    services = loop.run(start_services(ctx, behaviour))
    sim = Stack(loop, services).sim
    try:
        pool = workers(send_concurrency=4, batch_size=150)
        pool.env["REDIS_URL"] = own_redis.url
        supervisor = pool.start(processes=2)
        alert = issue(ctx, [STREET])
        wait_for("sending began", lambda: len(sim.messages) >= 150)
        own_redis.stop(how)
        time.sleep(3)  # the outage: everyone keeps trying meanwhile
        own_redis.start()
        sim.behaviour.latency = 0

        def finished() -> bool:
            try:
                totals = progress(ctx, alert.id)["totals"]
            except redis.RedisError:
                return False
            return bool(totals["done_sending"]) and totals["stages"]["sent"] == 0

        wait_for("the alert finished by itself after Redis came back", finished)
        assert services.simulators is not None
        loop.run(services.simulators.settle(60), 70)
        assert supervisor.poll() is None, "the workers are still there"
        phones = {r.phone for r in population.residents}
        assert set(texts_to(sim, population)) == phones, "nobody is missing"
        totals = progress(ctx, alert.id)["totals"]
        confirmed = sum(1 for bodies in sim.replies.values() if "1" in bodies)
        assert totals["confirmed"] == confirmed, "every reply answered 200 is stored"
        assert totals["stages"]["delivered"] == 600
    finally:
        loop.run(services.stop())
        loop.stop()
        ctx.close()


def _grid_volunteers(population: Population) -> dict[str, str]:
    return {v.phone: v.id for v in population.volunteers if v.role is VolunteerRole.grid_worker}


@pytest.mark.parametrize("when", ["between marking and sending", "after sending part"])
def test_a_ladder_step_killed_part_way_finishes_on_its_next_run(
    when: str, ctx: Context, population: Population, stack: Stack, workers: Callable[..., Workers]
) -> None:
    stack.sim.behaviour.reply_share = 0  # nobody confirms: every grid volunteer is owed a list
    alert = issue(ctx, [STREET], level=Level.red)
    drain(ctx)
    stack.settle()
    volunteers = _grid_volunteers(population)
    before = len(stack.sim.messages)

    def notices() -> list[str]:
        return [m.to for m in stack.sim.messages[before:] if m.to in volunteers]

    # The lists step (+15 min for red) falls due now; the workers' watchdog queues it.
    step = Job.fetch(step_job_id(ctx.keys, alert.id, 1), connection=ctx.redis)
    ScheduledJobRegistry(queue=ctx.queue(FOLLOWUP_QUEUE)).schedule(step, datetime.now(UTC))
    stack.sim.behaviour.latency = 3.0 if when == "between marking and sending" else 0.3
    pool = workers(send_concurrency=1)
    first = pool.start()
    attempts = ctx.keys.alert_notice_attempts(alert.id)
    if when == "between marking and sending":
        wait_for("the step froze its list and handed a notice over", lambda: ctx.redis.hlen(attempts) >= 1)
        assert notices() == [], "nothing was accepted yet"
    else:
        wait_for("the step sent some of its notices", lambda: len(notices()) >= 3)
    kill_tree(first.pid)
    owed = len(ctx.redis.hkeys(ctx.keys.alert_work(alert.id, "e1"))) - 1
    assert owed > 3 and len(set(notices())) < owed, "the step was killed before it finished"
    assert not ctx.redis.hexists(ctx.keys.alert_steps(alert.id), "1"), "not done while notices are owed"

    stack.sim.behaviour.latency = 0
    pool.start()
    wait_for("the step finished on its next run", lambda: ctx.redis.hexists(ctx.keys.alert_steps(alert.id), "1"))
    stack.settle()
    told = notices()
    assert len(set(told)) == owed, "every volunteer it owed a list was told"
    suspects = int(ctx.redis.hget(ctx.keys.counts(alert.id), "notices:possible_duplicates") or 0)
    assert len(told) - owed <= suspects <= 1, "only the notice in flight at the kill may have gone twice"
    assert set(told) <= set(volunteers)


def test_a_help_case_whose_worker_died_still_reaches_the_volunteers(
    ctx: Context, population: Population, stack: Stack, workers: Callable[..., Workers]
) -> None:
    stack.sim.behaviour.reply_share = 0
    alert = issue(ctx, [STREET], level=Level.orange)
    drain(ctx)
    stack.settle()
    resident = population.residents[7]
    helpers = {v.phone for v in population.volunteers if resident.grid in v.grids or resident.building in v.buildings}
    assert helpers
    before = len(stack.sim.messages)
    queue_help_case(ctx, alert.id, 7)
    assert not queue_help_case(ctx, alert.id, 7), "asked twice, queued once"
    stack.sim.behaviour.latency = 3.0
    pool = workers(send_concurrency=1)
    first = pool.start()
    attempts = ctx.keys.alert_notice_attempts(alert.id)
    wait_for("the help case handed a notice over", lambda: ctx.redis.hlen(attempts) >= 1)
    kill_tree(first.pid)
    stack.sim.behaviour.latency = 0
    pool.start()
    sent = ctx.keys.alert_notices(alert.id)

    def all_told() -> bool:
        return {m.to for m in stack.sim.messages[before:]} >= helpers and ctx.redis.hlen(sent) >= len(helpers)

    wait_for("every helper was told of the call for help", all_told)
    stack.settle()
    told = [m.to for m in stack.sim.messages[before:]]
    assert all("求助" in m.body and resident.name in m.body for m in stack.sim.messages[before:])
    assert len(told) - len(set(told)) <= 1, "only the notice in flight at the kill may have gone twice"


def test_a_provider_at_capacity_is_refused_rarely_and_everyone_is_sent_once(
    ctx: Context, population: Population, stack: Stack
) -> None:
    capacity = 100.0  # a second: any machine offers more than that
    stack.sim.behaviour.reply_share = 0
    stack.sim.capacity = Capacity(capacity, queue_seconds=0.05)  # refuses what it cannot send within 50 ms
    ctx.settings.send_concurrency = 10
    alert = issue(ctx, [STREET], channels=[ChannelKind.sms])
    deadline = time.monotonic() + DEADLINE
    while not progress(ctx, alert.id)["totals"]["done_sending"]:
        assert time.monotonic() < deadline, "the alert was not sent"
        drain(ctx)
    accepted = stack.sim.created
    refused = stack.sim.rejected[20429]
    assert texts_to(stack.sim, population) == {r.phone: 1 for r in population.residents}, "everyone once"
    assert refused > 0, "the provider refused some: the test proves something"
    assert refused <= 0.1 * accepted, f"{refused} refusals for {accepted} messages accepted"


def test_fallback_totals_add_up_and_done_sending_is_a_state(ctx: Context, population: Population, stack: Stack) -> None:
    both = [
        r for r in population.residents if r.channels[0] is not ChannelKind.voice and ChannelKind.voice in r.channels
    ]
    lost = {r.phone for r in both[:5] if r.phone}
    assert len(lost) == 5
    stack.sim.behaviour.undeliverable_numbers |= lost  # the SMS is accepted, then undelivered; the call is not answered
    alert = issue(ctx, [STREET], channels=[ChannelKind.sms, ChannelKind.voice])
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + DEADLINE
    while True:
        drain(ctx)
        stack.settle()
        totals = progress(ctx, alert.id)["totals"]
        seen.append(totals)
        if totals["done_sending"] and totals["stages"]["rerouted"] == 0 and not stack.services.pending:
            break
        assert time.monotonic() < deadline, f"sending never finished: {totals['stages']}"
    for totals in seen:
        assert sum(totals["stages"].values()) == 600, totals["stages"]
    final = seen[-1]
    assert final["stages"]["failed"] == len(lost), "accepted, undelivered, unanswered: failed once"
    assert final["stages"]["delivered"] == 600 - len(lost)
    assert final["failed"] == len(lost) and final["sending"] == "done"
    report = progress(ctx, alert.id)
    assert report["channels"]["sms"].get("fallback") == len(lost), report["channels"]


def test_a_killed_embedded_redis_is_started_again_by_the_workers(tmp_path: Path) -> None:
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"BROADCAST_DATA_DIR": str(data), "BROADCAST_WATCHDOG_SECONDS": "0.5", "BROADCAST_SECRET_KEY": "test"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "broadcast", "worker"],
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_file = data / "redis" / "redis.pid"
    try:
        wait_for("the worker started the embedded Redis", pid_file.exists)
        url = (data / "redis" / "url").read_text().strip()
        client = redis.Redis.from_url(url)
        client.set("kept", "1")
        client.bgrewriteaof()
        wait_for("the AOF was written", lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0)
        first = int(pid_file.read_text())
        os.kill(first, signal.SIGKILL)

        def back() -> bool:
            try:
                return int(pid_file.read_text()) != first and bool(client.ping())
            except (OSError, ValueError, redis.RedisError):
                return False

        wait_for("the embedded Redis came back without anyone running a command", back)
        assert client.get("kept") == b"1", "its data came back with it (AOF)"
        assert worker.poll() is None, "the worker is still there"
    finally:
        kill_tree(worker.pid)
        worker.wait(10)
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
