"""Jobs queued by an earlier version of the service, under the paths their functions had then, still
run after an upgrade: a warning planned, sent or escalated before the upgrade is not lost."""

from __future__ import annotations

import pytest
from rq.job import Job
from rq.utils import import_attribute

from audiences.population import Population
from broadcast.core.context import CONTROL_QUEUE, Context
from broadcast.core.jobs import PLAN_JOB, RENAMED_JOBS
from broadcast.core.models import AlertStatus
from broadcast.issuing import alerts
from broadcast.running.worker import BroadcastJob, drain
from tests.conftest import STREET, Stack
from tests.helpers import issue, progress, texts_to


@pytest.mark.parametrize("old", sorted(RENAMED_JOBS))
def test_a_job_queued_under_its_old_name_runs_the_function_it_has_now(ctx: Context, old: str) -> None:
    job = BroadcastJob.create(old, args=("1",), connection=ctx.redis)
    job.save()
    fetched = BroadcastJob.fetch(job.id, connection=ctx.redis)
    assert fetched.func_name == old, "the job is stored as the earlier version queued it"
    assert callable(fetched.func) and fetched.func is import_attribute(RENAMED_JOBS[old])


def test_a_plan_queued_by_an_earlier_version_sends_the_warning(
    ctx: Context, population: Population, stack: Stack
) -> None:
    alert = issue(ctx, [STREET])
    queue = ctx.queue(CONTROL_QUEUE)
    assert [job.func_name for job in queue.get_jobs()] == [PLAN_JOB]
    queue.empty()
    queue.enqueue("broadcast.plan.plan_job", alert.id, job_id=f"{ctx.keys.ns}-plan-{alert.id}")
    assert Job.fetch(f"{ctx.keys.ns}-plan-{alert.id}", connection=ctx.redis).func_name == "broadcast.plan.plan_job"

    drain(ctx)
    stack.settle()

    phones = {r.phone for r in population.residents}
    assert texts_to(stack.sim, population) == dict.fromkeys(phones, 1), "each resident gets exactly one SMS"
    assert alerts.get_alert(ctx, alert.id).status is AlertStatus.sending
    assert progress(ctx, alert.id)["totals"]["sent"] == len(phones)
