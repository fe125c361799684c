"""``broadcast bench faults``: faults injected into a running service, and what each cost.

Every scenario runs real processes on a Redis of its own with AOF on (``appendfsync everysec``, as
the embedded Redis runs): ``broadcast serve`` (the web app, and the Twilio simulator it starts,
its knobs given in ``BROADCAST_SIMULATOR_TWILIO`` and its counts read at ``/_simulator/twilio``),
and ``broadcast worker --processes 2``. A red warning goes to N residents (``--fault-residents``,
20,000) of one street, in batches of 500; the simulated provider answers after a pause, so that
sending lasts long enough to be hit. Nothing of the service is called in-process but the issuing.

* ``worker_kill``: at about half of the alert, SIGKILL the worker running a batch and its work horse.
  *Recovery*: from the kill until another worker runs that batch again.
* ``step_kill``: after the alert, the volunteers' lists step falls due and the worker sending it
  is SIGKILLed part way. *Recovery*: from the step's due time until every notice it owed is sent.
* ``redis_shutdown`` / ``redis_kill``: at about 45 %, Redis is shut down (AOF written) or SIGKILLed,
  and started again 5 s later; replies flow throughout. *Recovery*: from Redis back until the
  provider accepts messages again; and until sending is done.
* ``web_kill``: the web process is SIGKILLed while replies pour in, and started again 2 s later
  (the simulator runs as a process of its own here, or it would die with the web app).
* ``capacity``: a provider that refuses (429) what it cannot send within 50 ms, at C a second
  (``--fault-capacity``); no rate is configured, so the workers learn its pace from refusals.

For each: recipients missed (never accepted by the provider), real duplicates (the provider's
count of messages to a phone beyond the first) beside those counted as possible (in flight when a
process died), replies the web app answered 200 but did not store, replies the provider gave up on
(Twilio retries for 15 s at most), seconds to recover, refusals per message accepted. Targets: no
one missed, duplicates no more than were in flight, no reply lost after a 200, recovery within
30 s, refusals at most 10 % of accepted, and after the first 10 s every 5 s window within 10 % of C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from rq import Worker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.worker import BaseWorker

from audiences.areas import AreaTree, read_divisions, store_areas
from audiences.population import generate, store_population
from audiences.volunteers import VolunteerRole
from broadcast.core.context import FOLLOWUP_QUEUE, Context
from broadcast.core.daemons import free_port
from broadcast.core.embedded_redis import server_binary
from broadcast.core.models import Alert, Level
from broadcast.core.settings import Settings
from broadcast.following.escalation import step_job_id
from broadcast.following.progress import alert_progress
from broadcast.running.benchmarks.common import Figure, issue, result
from broadcast.running.benchmarks.environment import BENCH_SIMULATOR_TOKEN, BenchProcess
from channels.simulators.twilio import TIMELINE_BUCKETS_PER_SECOND
from channels.twilio.account import SIMULATOR_ACCOUNT_SID, SIMULATOR_FROM

STREET = "310115005000"  # 浦东新区 陆家嘴街道
NAMESPACE = "faults"
SECRET = "faults-bench-secret-not-secret"
RECOVERY_TARGET_SECONDS = 30.0
OUTAGE_SECONDS = 5.0
DEADLINE_SECONDS = 600.0  # any one wait of a scenario; a run that needs longer has failed


def children_of(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (RQ's work horse runs in a session of its own)."""
    doomed, stack = [], [pid]
    while stack:
        current = stack.pop()
        doomed.append(current)
        stack += children_of(current)
    for victim in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def wait_for(what: str, done: Callable[[], bool], timeout: float = DEADLINE_SECONDS, every: float = 0.1) -> float:
    """Poll ``done`` until it holds; the time.monotonic() when it did. RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if done():
                return time.monotonic()
        except (redis.RedisError, OSError):
            pass  # what is being waited for may be down for now
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


@dataclass
class RestartableRedis:
    """A redis-server of its own, with AOF on, that can be shut down or killed and started again."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--hash-max-ziplist-value", "512"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        try:
            wait_for("redis-server answered", lambda: bool(client.ping()), 60)
        finally:
            client.close()

    def stop(self, how: str) -> None:
        """``shutdown`` (clean, AOF written) or ``kill`` (SIGKILL: the AOF as last synced)."""
        assert self.process is not None
        if how == "shutdown":
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis.from_url(self.url).shutdown()
        else:
            self.process.kill()
        self.process.wait(60)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def own_redis() -> Iterator[RestartableRedis]:
    server = RestartableRedis(Path(tempfile.mkdtemp(prefix="broadcast-faults-redis-")), free_port())
    server.start()
    try:
        yield server
    finally:
        server.close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@dataclass
class Rig:
    """One scenario's processes: Redis, the web app (and simulator), the workers; all stopped at the end."""

    server: RestartableRedis
    workdir: Path
    residents: int
    knobs: dict[str, Any]
    separate_simulator: bool = False
    web_port: int = field(default_factory=free_port)
    sim_port: int = field(default_factory=free_port)
    push_port: int = field(default_factory=free_port)
    processes: list[BenchProcess] = field(default_factory=list)
    ctx: Context | None = None
    phones: set[str] = field(default_factory=set)
    volunteers: set[str] = field(default_factory=set)
    settings: dict[str, str] = field(default_factory=dict)  # more BROADCAST_… settings of the processes

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def env(self) -> dict[str, str]:
        values = {
            **os.environ,
            "REDIS_URL": self.server.url,
            "BROADCAST_NAMESPACE": NAMESPACE,
            "BROADCAST_PORT": str(self.web_port),
            "BROADCAST_SECRET_KEY": SECRET,
            "BROADCAST_DATA_DIR": str(self.workdir / "var"),
            "BROADCAST_BATCH_SIZE": "500",
            "BROADCAST_SEND_CONCURRENCY": "50",
            "PYTHONUNBUFFERED": "1",
            **{f"BROADCAST_{name.upper()}": value for name, value in self.settings.items()},
        }
        if self.separate_simulator:
            # The web app and the workers take the simulator for a real account at its own address.
            values |= {
                "BROADCAST_TWILIO_ACCOUNT_SID": SIMULATOR_ACCOUNT_SID,
                "BROADCAST_TWILIO_AUTH_TOKEN": BENCH_SIMULATOR_TOKEN,
                "BROADCAST_TWILIO_FROM": SIMULATOR_FROM,
                "BROADCAST_TWILIO_API_BASE": self.sim_url,
                "BROADCAST_SIMULATOR_URL": f"http://127.0.0.1:{self.push_port}",
            }
        else:
            values |= {"BROADCAST_SIMULATOR_URL": self.sim_url, "BROADCAST_SIMULATOR_TWILIO": json.dumps(self.knobs)}
        return values

    def context(self) -> Context:
        if self.ctx is None:
            settings = Settings(
                redis_url=self.server.url,
                namespace=NAMESPACE,
                port=self.web_port,
                secret_key=SECRET,
                data_dir=self.workdir,
            )
            self.ctx = Context(settings=settings, redis_url=self.server.url)
        return self.ctx

    def seed(self) -> None:
        ctx = self.context()
        ctx.redis.flushall()
        store_areas(ctx.redis, ctx.keys, read_divisions())
        population = generate(AreaTree.load(ctx.redis, ctx.keys), STREET, self.residents, seed=11)
        store_population(ctx.redis, ctx.keys, population)
        self.phones = {r.phone for r in population.residents if r.phone}
        self.volunteers = {v.phone for v in population.volunteers if v.role is VolunteerRole.grid_worker}

    def start(self, name: str, argv: list[str]) -> BenchProcess:
        process = BenchProcess(name, argv, self.env(), self.workdir / f"{name}-{len(self.processes)}.log")
        self.processes.append(process)
        return process

    def start_web(self) -> BenchProcess:
        web = self.start("web", [sys.executable, "-m", "broadcast", "serve"])
        web.ready_line("broadcast serving at ", timeout=60)
        return web

    def start_simulator(self) -> BenchProcess:
        webhook = f"http://127.0.0.1:{self.web_port}/hooks/twilio/sms/inbound#rc=5&rp=all"
        argv = [sys.executable, "-m", "broadcast.running.benchmarks.simulator", "--port", str(self.sim_port)]
        argv += ["--webhook", webhook, "--knobs", json.dumps(self.knobs)]
        simulator = self.start("simulator", argv)
        simulator.ready_line("ready ")
        return simulator

    def start_workers(self) -> BenchProcess:
        return self.start("workers", [sys.executable, "-m", "broadcast", "worker", "--processes", "2"])

    def counts(self, timeline: bool = False) -> dict[str, Any]:
        counts: dict[str, Any] = _get(f"{self.sim_url}/_simulator/twilio" + ("?timeline=1" if timeline else ""))
        return counts

    def received(self) -> dict[str, Any]:
        """Per phone: {"messages": accepted for it, "replies": its replies our webhook answered 2xx}."""
        received: dict[str, Any] = _get(f"{self.sim_url}/_simulator/twilio/received")
        return received

    def set_knobs(self, **knobs: Any) -> None:
        _post(f"{self.sim_url}/_simulator/twilio/knobs", knobs)

    def issue(self) -> Alert:
        return issue(self.context(), [STREET], level=Level.red)

    def totals(self, alert: Alert) -> dict[str, Any]:
        ctx = self.context()

        async def fetch() -> dict[str, Any]:
            client = ctx.async_redis()
            try:
                return dict((await alert_progress(client, ctx.keys, alert, levels=()))["totals"])
            finally:
                await client.aclose()

        return asyncio.run(fetch())

    def done_sending(self, alert: Alert) -> bool:
        return bool(self.totals(alert)["done_sending"])

    def settled(self) -> bool:
        return self.counts()["pending"] == 0

    def outcome(self, alert: Alert) -> dict[str, Any]:
        """Who was missed and who got a message twice, against what the ledger counted."""
        wait_for("the simulated network settled", self.settled)
        seen = self.received()
        received: dict[str, int] = seen["messages"]
        totals = self.totals(alert)
        counts = self.counts()
        # Residents' phones that confirmed (a phone that got two messages and replied twice confirms once;
        # volunteers' answers to their notices are no one's confirmation)
        confirming = sum(1 for phone, answers in seen["replies"].items() if phone in self.phones and "1" in answers)
        return {
            "missed": len(self.phones - set(received)),
            "duplicates": sum(n - 1 for phone, n in received.items() if phone in self.phones and n > 1),
            "possible_duplicates": totals["possible_duplicates"],
            "phones_confirming_answered_200": confirming,
            "replies_stored": totals["acknowledged"],
            "replies_lost_after_200": max(0, confirming - totals["acknowledged"]),
            "replies_given_up_by_provider": counts["replies_failed"],
            "stages": totals["stages"],
        }

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self.ctx is not None:
            self.ctx.close()


@contextlib.contextmanager
def rig(
    server: RestartableRedis, workdir: Path, residents: int, knobs: dict[str, Any], separate: bool = False
) -> Iterator[Rig]:
    made = Rig(server, workdir, residents, {"keep_messages": True, **knobs}, separate_simulator=separate)
    made.seed()
    try:
        yield made
    finally:
        made.close()


def _busy_worker(ctx: Context, job_prefix: str) -> tuple[BaseWorker, str]:
    """A worker running a job whose id starts with ``job_prefix``, and that job's id."""
    for worker in Worker.all(connection=ctx.redis):
        job_id = worker.get_current_job_id()
        if job_id and job_id.startswith(job_prefix):
            return worker, job_id
    raise LookupError(job_prefix)


def _taken_up_again(ctx: Context, job_id: str, dead: str) -> bool:
    job = Job.fetch(job_id, connection=ctx.redis)
    return job.worker_name not in (None, dead) and job.get_status() in ("started", "finished")


def worker_kill(r: Rig) -> dict[str, Any]:
    r.start_web()
    r.start_workers()
    alert = r.issue()
    ctx = r.context()
    wait_for("half the alert sent", lambda: r.counts()["created"] >= r.residents // 2)
    worker, job_id = _busy_worker(ctx, f"{NAMESPACE}-{alert.id}-b")
    assert worker.pid is not None
    kill_tree(worker.pid)
    killed = time.monotonic()
    resumed = wait_for("the killed batch was taken up again", lambda: _taken_up_again(ctx, job_id, worker.name))
    done = wait_for("sending finished", lambda: r.done_sending(alert))
    return {"seconds_to_recover": resumed - killed, "seconds_kill_to_done": done - killed, **r.outcome(alert)}


def step_kill(r: Rig) -> dict[str, Any]:
    r.knobs["reply_share"] = 0  # nobody confirms: every grid volunteer is owed their list
    r.settings["send_concurrency"] = "5"  # notices go five at a time: the step is long enough to be hit
    r.start_web()
    workers = r.start_workers()
    alert = r.issue()
    ctx = r.context()
    wait_for("the alert sent", lambda: r.done_sending(alert))
    r.set_knobs(latency=0.5)  # each notice takes half a second: the step is still sending when it is hit
    step = Job.fetch(step_job_id(ctx.keys, alert.id, 1), connection=ctx.redis)
    due_at = datetime.now(UTC)
    ScheduledJobRegistry(queue=ctx.queue(FOLLOWUP_QUEUE)).schedule(step, due_at)
    due = time.monotonic()
    notices, work = ctx.keys.alert_notices(alert.id), ctx.keys.alert_work(alert.id, "e1")
    wait_for("the step froze its work", lambda: bool(ctx.redis.exists(work)))
    owed = ctx.redis.hlen(work) - 1
    wait_for("the step sent part of its notices", lambda: ctx.redis.hlen(notices) >= owed // 3)
    worker, _ = _busy_worker(ctx, step.id)
    assert worker.pid is not None
    kill_tree(worker.pid)
    r.set_knobs(latency=0.0)
    done = wait_for("the step finished", lambda: bool(ctx.redis.hexists(ctx.keys.alert_steps(alert.id), "1")))
    wait_for("the simulated network settled", r.settled)
    received: dict[str, int] = r.received()["messages"]
    told = {phone: n for phone, n in received.items() if phone in r.volunteers}
    suspects = int(ctx.redis.hget(ctx.keys.counts(alert.id), "notices:possible_duplicates") or 0)
    assert workers.process.poll() is None
    return {
        "seconds_due_to_done": done - due,
        "notices_owed": owed,
        "notices_missed": owed - len(told),
        "notices_duplicated": sum(n - 1 for n in told.values()),
        "notices_possible_duplicates": suspects,
    }


def redis_outage(r: Rig, how: str) -> dict[str, Any]:
    r.start_web()
    workers = r.start_workers()
    alert = r.issue()
    wait_for("45 % of the alert sent", lambda: r.counts()["created"] >= r.residents * 0.45)
    r.server.stop(how)
    time.sleep(OUTAGE_SECONDS)
    r.server.start()
    back = time.monotonic()
    before = r.counts()["created"]
    resumed = wait_for("the provider accepted messages again", lambda: r.counts()["created"] > before, every=0.05)
    done = wait_for("sending finished", lambda: r.done_sending(alert))
    alive = workers.process.poll() is None
    return {
        "seconds_back_to_sending": resumed - back,
        "seconds_back_to_done": done - back,
        "workers_alive": alive,
        **r.outcome(alert),
    }


def web_kill(r: Rig) -> dict[str, Any]:
    r.start_simulator()
    web = r.start_web()
    r.start_workers()
    alert = r.issue()
    wait_for("replies pouring in", lambda: r.counts()["replies"] >= r.residents * 0.1)
    kill_tree(web.process.pid)
    time.sleep(2)
    r.start_web()
    wait_for("sending finished", lambda: r.done_sending(alert))
    return r.outcome(alert)


def capacity(r: Rig, rate: float) -> dict[str, Any]:
    r.start_web()
    r.start_workers()
    alert = r.issue()
    wait_for("sending finished", lambda: r.done_sending(alert))
    counts = r.counts(timeline=True)
    timeline = dict(counts["timeline"])
    first = min(timeline)
    window = 5 * TIMELINE_BUCKETS_PER_SECOND
    skip = 10 * TIMELINE_BUCKETS_PER_SECOND
    last = max(timeline)
    rates = [
        sum(timeline.get(b, 0) for b in range(start, start + window)) / 5
        for start in range(first + skip, last - window + 1, window)
    ]
    refused = int(counts["rejected"].get("20429", 0))
    return {
        "capacity_per_second": rate,
        "accepted": counts["created"],
        "refused": refused,
        "refusals_per_accepted": refused / max(1, counts["created"]),
        "window_rates": [round(x, 1) for x in rates],
        "window_ratio_min": min(rates) / rate if rates else None,
        "window_ratio_max": max(rates) / rate if rates else None,
        "seconds": (last - first) / TIMELINE_BUCKETS_PER_SECOND,
        **r.outcome(alert),
    }


def run(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """The faults benchmark: each scenario on fresh processes and a freshly seeded Redis."""
    residents = args.fault_residents
    workdir = Path(tempfile.mkdtemp(prefix="broadcast-faults-"))
    slow: dict[str, Any] = {"latency": 0.05, "reply_share": 0.0, "send_status_callbacks": False}
    replying: dict[str, Any] = {"latency": 0.05, "reply_share": 0.3, "send_status_callbacks": False}
    scenarios: dict[str, Any] = {}
    try:
        with own_redis() as server:
            with rig(server, workdir, residents, slow) as r:
                scenarios["worker_kill"] = worker_kill(r)
            with rig(server, workdir, residents, slow) as r:
                scenarios["step_kill"] = step_kill(r)
            for how in ("shutdown", "kill"):
                with rig(server, workdir, residents, replying) as r:
                    scenarios[f"redis_{how}"] = redis_outage(r, how)
            with rig(server, workdir, residents, replying, separate=True) as r:
                scenarios["web_kill"] = web_kill(r)
            refusing = {**slow, "latency": 0.0, "capacity": args.fault_capacity, "capacity_queue_seconds": 0.05}
            with rig(server, workdir, residents, refusing) as r:
                scenarios["capacity"] = capacity(r, args.fault_capacity)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result("faults", "broadcast bench faults", _figures(scenarios), residents=residents, scenarios=scenarios)


def _figures(s: dict[str, Any]) -> dict[str, Figure]:
    """The targets, scenario by scenario."""
    sending = ("worker_kill", "redis_shutdown", "redis_kill", "web_kill", "capacity")
    replying = ("redis_shutdown", "redis_kill", "web_kill")
    recover = RECOVERY_TARGET_SECONDS
    figures = {
        "worker_kill_seconds_to_recover": _at_most(s["worker_kill"]["seconds_to_recover"], recover, "s"),
        "step_kill_seconds_due_to_done": _at_most(s["step_kill"]["seconds_due_to_done"], recover, "s"),
        "redis_shutdown_seconds_back_to_sending": _at_most(
            s["redis_shutdown"]["seconds_back_to_sending"], recover, "s"
        ),
        "redis_kill_seconds_back_to_sending": _at_most(s["redis_kill"]["seconds_back_to_sending"], recover, "s"),
        "recipients_missed": _at_most(sum(s[name]["missed"] for name in sending), 0, "people"),
        "step_notices_missed": _at_most(s["step_kill"]["notices_missed"], 0, "notices"),
        "replies_lost_after_200": _at_most(
            sum(s[name]["replies_lost_after_200"] for name in replying),
            0,
            "replies",
        ),
        "refusals_per_accepted": _at_most(s["capacity"]["refusals_per_accepted"], 0.10, ""),
    }
    for name in sending:
        figures[f"{name}_duplicates"] = _at_most(s[name]["duplicates"], s[name]["possible_duplicates"], "messages")
    lo, hi = s["capacity"]["window_ratio_min"], s["capacity"]["window_ratio_max"]
    within = lo is not None and hi is not None and lo >= 0.9 and hi <= 1.1
    figures["capacity_5s_windows_min_ratio"] = Figure(round(lo or 0, 3), "× C", ">= 0.90 after 10 s", within)
    figures["capacity_5s_windows_max_ratio"] = Figure(round(hi or 0, 3), "× C", "<= 1.10 after 10 s", within)
    return figures


def _at_most(value: float, bound: float, unit: str) -> Figure:
    return Figure(round(value, 3), unit, f"<= {bound:g}", value <= bound)
