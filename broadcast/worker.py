"""RQ workers: the ``broadcast worker`` process, and an in-process worker for the demo and tests."""

from __future__ import annotations

import logging
import threading
from typing import Any

from rq import SimpleWorker, Worker
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty

from broadcast.context import Context, set_current


class BroadcastWorker(Worker):
    """A forking worker whose abandoned jobs are noticed within seconds, not minutes.

    RQ adds a fixed 60 s to each job's heartbeat; a killed worker's batch would wait that long
    before being retried. Warnings cannot, so the margin is three monitoring intervals.
    """

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(self.job_monitoring_interval * 3)


class InProcessWorker(SimpleWorker):
    """Runs jobs in the calling thread (any thread): no signals, timeouts by timer."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        return None


def worker_options(ctx: Context) -> dict[str, Any]:
    return {
        "connection": ctx.redis,
        "job_monitoring_interval": ctx.settings.job_monitoring_interval,
        "maintenance_interval": ctx.settings.maintenance_interval,
    }


def run_worker(ctx: Context, *, burst: bool = False) -> bool:
    """Work the namespace's queues in priority order, with RQ's scheduler for timers and retries."""
    from broadcast.deliver import prepare_worker

    set_current(ctx)
    prepare_worker(ctx.settings)
    worker = BroadcastWorker(ctx.queues(), **worker_options(ctx))
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))


def drain(ctx: Context) -> int:
    """Run every job that is due now in this thread, including scheduled ones; returns how many rounds worked."""
    set_current(ctx)
    rounds = 0
    while InProcessWorker(ctx.queues(), **worker_options(ctx)).work(
        burst=True, with_scheduler=True, logging_level="WARNING"
    ):
        rounds += 1
    return rounds


def recover_abandoned(ctx: Context, now: float | None = None) -> int:
    """Requeue (or fail) jobs whose worker died; ``now`` in the future forces it for tests."""
    count = 0
    for queue in ctx.queues():
        registry = StartedJobRegistry(queue=queue)
        count += len(registry.get_expired_job_ids(now))
        registry.cleanup(now)
    return count


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
        log = logging.getLogger("broadcast.worker")
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
