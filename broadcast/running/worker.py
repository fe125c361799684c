"""RQ workers: the ``broadcast worker`` process (or N of them under a supervisor), and an in-process
worker for the demo and tests.

Faults cost seconds, not minutes or a person:

- **A worker dies** (killed, its machine gone). Its running job stays in RQ's started registry under
  a heartbeat that lapses ``3 × job_monitoring_interval`` (15 s) after the last beat. RQ itself
  looks for such jobs only between jobs and on a 15-minute lock, so every worker process runs a
  *watchdog* thread: every ``watchdog_seconds`` (2 s), whichever live worker takes a short lock in
  Redis first retries the jobs whose heartbeat lapsed (RQ's own registry cleanup) and queues the
  scheduled jobs that are due (ladder steps, retries, "later" batches). No lock of a dead process
  holds anything up longer than ``WATCHDOG_LOCK_SECONDS``. RQ's scheduler process is not used.
- **Redis goes away.** While a horse runs, a failed heartbeat or status read no longer ends the
  worker; an idle worker retries its dequeue every two seconds at most; anything else that makes
  ``work()`` give up is met by a supervising loop that waits for Redis with back-off and starts
  working again. Each process says so in its log once when Redis goes and once when it is back.
  A job whose horse ended while Redis was away is retried by the watchdog when it is back.
- **A worker process exits anyway**: ``broadcast worker --processes N`` starts it again.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import redis
from redis import Redis
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry, clean_registries
from rq.timeouts import TimerDeathPenalty
from rq.utils import import_attribute
from rq.utils import now as rq_now
from rq.worker_registration import clean_worker_registry

from broadcast.core.context import QUEUE_ORDER, Context, set_current
from broadcast.core.embedded_redis import ensure_embedded_redis
from broadcast.core.jobs import resolve_job

log = logging.getLogger("broadcast.worker")

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
WATCHDOG_LOCK_SECONDS = 10  # a watchdog pass holds its lock at most this long (a dead holder's lapses)
RESTART_BACKOFF = (0.5, 1.0, 2.0, 2.0)  # seconds between attempts to reach Redis again: resume within 2 s


class Outage:
    """Whether this process can reach Redis: logged once when it goes and once when it is back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None

    def down(self, where: str, exc: BaseException) -> None:
        with self._lock:
            if self.since is None:
                self.since = time.monotonic()
                log.warning("Redis unreachable (%s: %s); retrying until it is back", where, exc)

    def up(self) -> None:
        with self._lock:
            if self.since is not None:
                log.warning("Redis reachable again after %.0f s; carrying on", time.monotonic() - self.since)
                self.since = None


OUTAGE = Outage()


class _OncePerOutage(logging.Filter):
    """Drops RQ's own line per reconnection attempt: the outage is logged once, by Outage."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "could not connect to Redis" not in str(record.msg)


class BroadcastWorker(Worker):
    """A forking worker whose abandoned jobs are noticed within seconds, and that rides out Redis outages.

    RQ adds a fixed 60 s to each job's heartbeat; a killed worker's batch would wait that long
    before being retried. Warnings cannot, so the margin is three monitoring intervals.
    """

    # RQ doubles its wait between dequeue attempts while Redis is away, up to a minute; two seconds
    # at most means an idle worker takes work again within two seconds of Redis returning.
    max_connection_wait_time = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_asked = False

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(self.job_monitoring_interval * 3)

    def run_maintenance_tasks(self) -> None:
        # The watchdog looks after the registries, under a lock that lapses in seconds (RQ's lasts 15 minutes).
        self.last_cleaned_at = rq_now()  # type: ignore[assignment]

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        try:
            super().heartbeat(timeout)
        except REDIS_DOWN as exc:
            OUTAGE.down("worker heartbeat", exc)

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_DOWN as exc:
            # The horse goes on; if the outage outlasts the job's heartbeat, the watchdog retries the job.
            OUTAGE.down("job heartbeat", exc)

    def monitor_work_horse(self, job: Job, queue: Queue, execution: Any) -> None:
        try:
            super().monitor_work_horse(job, queue, execution)
        except REDIS_DOWN as exc:
            # The horse has ended, but what became of its job cannot be read or written now. The job
            # stays in the started registry; its heartbeat lapses and the watchdog retries it.
            OUTAGE.down("recording the end of a job", exc)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline=pipeline)
            return
        try:
            super().set_state(state)
        except REDIS_DOWN as exc:
            self._state = state  # what the dashboards show is written again on the next change
            OUTAGE.down("worker state", exc)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_DOWN as exc:
            OUTAGE.down("worker", exc)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_asked = True
        with contextlib.suppress(*REDIS_DOWN):  # the stop is recorded locally; the worker stops after its job
            super().request_stop(signum, frame)


class BroadcastJob(Job):
    """A job whose function is found where it is now, also when an earlier version queued it (or
    scheduled it: a ladder step, a screen's clearing) under the path it had then (``RENAMED_JOBS``)."""

    @property
    def func(self) -> Any:
        if self.func_name is None or self.instance is not None:
            return super().func
        return import_attribute(resolve_job(self.func_name))


class InProcessWorker(SimpleWorker):
    """Runs jobs in the calling thread (any thread): no signals, timeouts by timer."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        return None


def worker_options(ctx: Context) -> dict[str, Any]:
    return {
        "connection": ctx.redis,
        "job_class": BroadcastJob,
        "job_monitoring_interval": ctx.settings.job_monitoring_interval,
        "maintenance_interval": ctx.settings.maintenance_interval,
    }


def enqueue_due(queue: Queue, now: float | None = None) -> int:
    """Move the queue's scheduled jobs that are due onto the queue (what RQ's scheduler does); how many."""
    registry = ScheduledJobRegistry(queue=queue)
    job_ids = registry.get_jobs_to_schedule(int(now if now is not None else time.time()))
    if not job_ids:
        return 0
    jobs = Job.fetch_many(job_ids, connection=queue.connection, serializer=queue.serializer)
    with queue.connection.pipeline() as pipe:
        for job_id, job in zip(job_ids, jobs, strict=True):
            if job is not None:
                queue.enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
            registry.remove(job_id, pipeline=pipe)
        pipe.execute()
    return sum(job is not None for job in jobs)


def look_after_jobs(
    ctx: Context, client: Redis, worker: Worker | None = None, full: bool = False, wait: float = 0.0
) -> dict[str, int] | None:
    """One watchdog pass, under a lock that lapses in ``WATCHDOG_LOCK_SECONDS``: retry the jobs whose
    worker died (heartbeat lapsed), queue the scheduled jobs that are due, and with ``full`` clean
    RQ's other registries. None when another process holds the lock (it is doing the pass now)."""
    lock = client.lock(ctx.keys.watchdog, timeout=WATCHDOG_LOCK_SECONDS, blocking=wait > 0, blocking_timeout=wait)
    if not lock.acquire():
        return None
    try:
        queues = [Queue(ctx.keys.queue(name), connection=client) for name in QUEUE_ORDER]
        abandoned = due = 0
        for queue in queues:
            started = StartedJobRegistry(queue=queue)
            expired = started.get_expired_job_ids()
            if expired:
                abandoned += len(expired)
                started.cleanup()
            due += enqueue_due(queue)
        if abandoned:
            log.warning("retrying %d job(s) whose heartbeat lapsed (their worker died, or Redis was away)", abandoned)
        if full:
            for queue in queues:
                clean_registries(queue)
                clean_worker_registry(queue)
                if worker is not None:
                    queue.intermediate_queue.cleanup(worker, queue)
        return {"abandoned": abandoned, "due": due}
    finally:
        try:
            lock.release()
        except (redis.exceptions.LockError, *REDIS_DOWN):
            pass  # it lapsed (the pass took longer than the lock), or Redis went; either way it is gone


class Watchdog:
    """A thread in every worker process that runs ``look_after_jobs`` every ``watchdog_seconds``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.interval = ctx.settings.watchdog_seconds
        self.client = Redis.from_url(ctx.redis_url, socket_timeout=10, socket_connect_timeout=3)
        self.worker: Worker | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broadcast-watchdog", daemon=True)
        self._last_full = 0.0

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            full = time.monotonic() - self._last_full >= self.ctx.settings.maintenance_interval
            try:
                done = look_after_jobs(self.ctx, self.client, self.worker, full=full)
            except REDIS_DOWN as exc:
                OUTAGE.down("watchdog", exc)
                self._revive_embedded()
                continue
            except Exception:  # keep watching: one bad pass must not end retries for everyone
                log.exception("watchdog pass failed; trying again")
                continue
            OUTAGE.up()
            if done is not None and full:
                self._last_full = time.monotonic()

    def _revive_embedded(self) -> None:
        """The embedded Redis (no ``REDIS_URL``) died: start it again on its data (AOF), as the CLI would.
        One process at a time starts it (a file lock); the others find it running."""
        if self.ctx.embedded is None:
            return
        try:
            again = ensure_embedded_redis(self.ctx.settings.data_dir)
        except Exception:  # its log says why; the next pass tries again
            log.exception("could not start the embedded Redis again")
            return
        if again.url != self.ctx.redis_url:
            log.warning(
                "the embedded Redis came back at %s, not %s: restart the workers", again.url, self.ctx.redis_url
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()


def _wait_for_redis(ctx: Context, stop: threading.Event) -> None:
    """Block until Redis answers (or a stop is asked), trying at RESTART_BACKOFF intervals."""
    attempt = 0
    while not stop.is_set():
        try:
            ctx.redis.ping()
            return
        except REDIS_DOWN as exc:
            OUTAGE.down("worker", exc)
        stop.wait(RESTART_BACKOFF[min(attempt, len(RESTART_BACKOFF) - 1)])
        attempt += 1


def run_worker(ctx: Context, *, burst: bool = False) -> bool:
    """Work the namespace's queues in priority order until stopped, starting again after any failure."""
    from broadcast.delivering.deliver import prepare_worker

    set_current(ctx)
    prepare_worker(ctx.settings)
    logging.getLogger("rq.worker").addFilter(_OncePerOutage())
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s worker %(process)d: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    stop = threading.Event()

    def asked_to_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()
        raise StopRequested()

    watchdog = Watchdog(ctx).start() if not burst else None
    worked = False
    try:
        while not stop.is_set():
            if burst:
                look_after_jobs(ctx, ctx.redis, wait=WATCHDOG_LOCK_SECONDS)  # due work first: burst runs once
            worker = BroadcastWorker(ctx.queues(), **worker_options(ctx))
            if watchdog is not None:
                watchdog.worker = worker
            try:
                worked |= bool(worker.work(burst=burst, with_scheduler=False, logging_level="WARNING"))
            except REDIS_DOWN as exc:
                OUTAGE.down("worker", exc)
            except StopRequested:
                stop.set()
            except Exception:
                log.exception("the worker loop failed; starting it again")
            if burst or worker.stop_asked:
                break
            _stop_subscription(worker)
            # work() gave up without being asked to stop: wait for Redis, then work again.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, asked_to_stop)
            try:
                _wait_for_redis(ctx, stop)
                if not stop.is_set():
                    OUTAGE.up()
                    stop.wait(RESTART_BACKOFF[0])
            except StopRequested:
                break
    finally:
        if watchdog is not None:
            watchdog.stop()
    return worked


def _stop_subscription(worker: Worker) -> None:
    """A worker that gave up could not unsubscribe from its command channel; its thread must not linger."""
    thread = getattr(worker, "pubsub_thread", None)
    if thread is not None:
        with contextlib.suppress(Exception):  # a dead connection has nothing left to close
            thread.stop()


def supervise(argv: Sequence[str], processes: int, *, burst: bool = False) -> int:
    """Run ``processes`` worker processes (``argv`` each) and start again any that dies, until stopped.

    A process that exits of its own accord in burst mode (the queues are empty) is not restarted;
    one that dies (killed, crashed) always is, with a back-off while it keeps dying at once.
    """
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(argv))

    children = [start() for _ in range(processes)]
    started = [time.monotonic()] * processes
    failures = [0] * processes
    finished = [False] * processes
    while not stopping.is_set() and not all(finished):
        for i, child in enumerate(children):
            code = child.poll()
            if code is None or finished[i]:
                continue
            if burst and code == 0:
                finished[i] = True
                continue
            failures[i] = failures[i] + 1 if time.monotonic() - started[i] < 10 else 1
            delay = min(10.0, 0.5 * 2 ** (failures[i] - 1)) if failures[i] > 1 else 0.0
            log.warning("worker process %d exited with %s; starting another in %.1f s", child.pid, code, delay)
            if stopping.wait(delay):
                break
            children[i], started[i] = start(), time.monotonic()
        stopping.wait(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0


def worker_command(burst: bool) -> list[str]:
    """The command line of one worker process (the same Python, the same package)."""
    return [sys.executable, "-m", "broadcast", "worker", *(["--burst"] if burst else [])]


def drain(ctx: Context) -> int:
    """Run every job that is due now in this thread, including scheduled ones; returns how many rounds worked."""
    set_current(ctx)
    rounds = 0
    while True:
        look_after_jobs(ctx, ctx.redis, wait=WATCHDOG_LOCK_SECONDS)
        if not InProcessWorker(ctx.queues(), **worker_options(ctx)).work(
            burst=True, with_scheduler=False, logging_level="WARNING"
        ):
            return rounds
        rounds += 1


class BackgroundWorker:
    """An in-process worker on a thread: drains the queues every ``interval`` seconds until stopped."""

    def __init__(self, ctx: Context, interval: float = 0.1) -> None:
        self.ctx = ctx
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broadcast-worker", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> BackgroundWorker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                drain(self.ctx)
            except Exception as exc:  # keep working: one bad cycle must not stop the demo's sending
                self.errors.append(exc)
                log.exception("worker cycle failed")
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
