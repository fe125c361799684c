"""How jobs that people depend on are queued: once (a job id of their own), and retried until done.

A batch, a retry of part of one, a ladder step, a help case and the plan that queues the batches
each leave somebody uninformed if they are lost. Each is queued under an id derived from what it
does, so queuing it again (a webhook retried, a step run again after a crash) finds the job that
exists instead of adding a second one; and each is retried until it has done its work, backing
off to a retry a minute, for longer than any alert lives. The job itself is idempotent: a retry
skips what an earlier run finished.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus

from broadcast.core.keys import as_text

# The jobs workers run, by the dotted path RQ stores with each job: a stage queues another stage's
# job by its name here, without importing it.
PLAN_JOB = "broadcast.lifecycle.plan_job"
BATCH_JOB = "broadcast.delivering.deliver.deliver_job"
SHOW_SCREENS_JOB = "broadcast.delivering.displays.show_job"
CLEAR_SCREENS_JOB = "broadcast.delivering.displays.clear_job"
DELIVERY_REPORT_JOB = "broadcast.hearing.reports.delivery_report_job"
LADDER_STEP_JOB = "broadcast.following.escalation.step_job"
HELP_CASE_JOB = "broadcast.following.escalation.help_case_job"
SCORECARD_JOB = "broadcast.following.scorecards.keep_job"

# Jobs queued (or scheduled: ladder steps, screen clearing) by an earlier version, under the path
# each function had then. Workers run them as the job named here now (``resolve_job``).
RENAMED_JOBS = {
    "broadcast.plan.plan_job": PLAN_JOB,
    "broadcast.deliver.deliver_job": BATCH_JOB,
    "broadcast.displays.show_job": SHOW_SCREENS_JOB,
    "broadcast.displays.clear_job": CLEAR_SCREENS_JOB,
    "broadcast.deliver.delivery_report_job": DELIVERY_REPORT_JOB,
    "broadcast.escalation.step_job": LADDER_STEP_JOB,
    "broadcast.escalation.help_case_job": HELP_CASE_JOB,
}


def resolve_job(func_name: str) -> str:
    """The dotted path a queued job's function has now, for a job queued under an earlier one."""
    return RENAMED_JOBS.get(func_name, func_name)


# Retries (2 s, 5 s, 10 s, 30 s, then a minute apart) for about 16 hours: longer than any alert lives.
UNTIL_DONE_ATTEMPTS = 1000
UNTIL_DONE_INTERVALS = [2, 5, 10, 30, 60]


def until_done() -> Retry:
    """The retry policy of jobs whose loss would leave a person uninformed."""
    return Retry(max=UNTIL_DONE_ATTEMPTS, interval=UNTIL_DONE_INTERVALS)


# A job in one of these states will still run (or is running): queuing it again would run it twice.
_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def job_pending(connection: Redis, job_id: str) -> bool:
    """True when a job with this id is queued, scheduled or running."""
    raw = connection.hget(Job.key_for(job_id), "status")
    return raw is not None and JobStatus(as_text(raw)) in _PENDING


def enqueue_once(queue: Queue, func: str, *args: Any, job_id: str, at: datetime | None = None, **options: Any) -> bool:
    """Queue ``func(*args)`` as ``job_id`` (at ``at``, if given) unless that job is still to run or
    running; returns whether it was queued now. A finished or failed job of that id is queued again:
    the caller asks because its work is not done."""
    if job_pending(queue.connection, job_id):
        return False
    if at is not None:
        queue.enqueue_at(at, func, *args, job_id=job_id, **options)
    else:
        queue.enqueue(func, *args, job_id=job_id, **options)
    return True
