"""The dead-letter queue: list, show, retry one, many or by filter, purge (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ...ops import dead_jobs as ops
from ...ops.roles import Role
from ...queue.client import MAX_PAGE
from ..fields import DurationIn, JobId, QueueName, TaskName
from ..routing import Call, Group, Input, Output, Params
from .jobs import JobPath, JobStateOut

group = Group("dead letters", "Jobs that ran out of attempts or were discarded, with their errors.")

MAX_IDS = 1000  # ids per retry or purge request


class DeadSummary(Output):
    id: int
    queue: str
    task: str
    attempt: int
    max_attempts: int
    died_at: datetime
    last_error: str | None


class DeadList(Output):
    """Dead jobs, newest first."""

    dead_jobs: list[DeadSummary]


class DeadQuery(Params):
    queue: QueueName | None = None
    task: TaskName | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)


@group.route("GET", "/dead-jobs", role=Role.VIEWER, summary="List dead jobs")
async def list_dead_jobs(call: Call, query: DeadQuery) -> DeadList:
    rows = await ops.list_dead(
        call.client, call.principal, queue=query.queue, task=query.task, limit=query.limit
    )
    return DeadList(dead_jobs=[DeadSummary.model_validate(row) for row in rows])


class DeadDetail(Output):
    """A dead job with every error."""

    id: int
    queue: str
    task: str
    priority: int
    attempt: int
    max_attempts: int
    enqueued_at: datetime
    started_at: datetime | None
    died_at: datetime
    unique_key: str | None
    args: dict[str, Any]
    errors: list[Any]


@group.route("GET", "/dead-jobs/{job_id}", role=Role.VIEWER, summary="Show a dead job")
async def get_dead_job(call: Call, path: JobPath) -> DeadDetail:
    row = await ops.get_dead(call.client, call.principal, path.job_id)
    return DeadDetail.model_validate({**row, "errors": row.get("errors") or []})


@group.route(
    "POST", "/dead-jobs/{job_id}/retry", role=Role.OPERATOR, summary="Retry a dead job", problems=(409,)
)
async def retry_dead_job(call: Call, path: JobPath) -> JobStateOut:
    """Back with a fresh attempt budget, under the same id; 409 when a live job holds its
    unique key."""
    job_id = await ops.retry_dead(call.client, call.principal, path.job_id)
    return JobStateOut(id=job_id, state="available")


class RetryIn(Input):
    """Which dead jobs to retry: ``ids``, or those matching ``queue`` and/or ``task`` (an empty
    body: every dead job)."""

    ids: list[JobId] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    queue: QueueName | None = None
    task: TaskName | None = None


class RetriedOut(Output):
    """The ids put back, and each dead job that could not go back with why."""

    retried: list[int]
    refused: dict[str, str] = Field(description="Job id: why it could not go back.")


@group.route("POST", "/dead-jobs/retry", role=Role.OPERATOR, summary="Retry dead jobs", body_optional=True)
async def retry_dead_jobs(call: Call, body: RetryIn) -> RetriedOut:
    """Job by job: one that cannot go back (its unique key is taken, or it is not dead) is
    listed in ``refused`` and the others go back."""
    done = await ops.retry_many(call.client, call.principal, ids=body.ids, queue=body.queue, task=body.task)
    return RetriedOut(retried=done.retried, refused={str(k): v for k, v in done.refused.items()})


class PurgeIn(Input):
    """Which dead jobs to delete: those matching every filter given, or ``everything``."""

    ids: list[JobId] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    queue: QueueName | None = None
    task: TaskName | None = None
    older_than: DurationIn | None = Field(default=None, description="Died longer ago than this.")
    everything: bool = Field(default=False, description="Purge every dead job (and give no filter).")


class Purged(Output):
    purged: int


@group.route("POST", "/dead-jobs/purge", role=Role.ADMIN, summary="Purge dead jobs")
async def purge_dead_jobs(call: Call, body: PurgeIn) -> Purged:
    """Deletes the dead jobs matching every filter given. No filter is refused unless
    ``everything`` is true, so an empty request purges nothing."""
    count = await ops.purge(
        call.client,
        call.principal,
        ids=body.ids,
        queue=body.queue,
        task=body.task,
        older_than=body.older_than,
        everything=body.everything,
    )
    return Purged(purged=count)
