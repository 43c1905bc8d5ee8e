"""The dead-letter queue: list, show, retry one, many or by filter, purge (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from ...ops import dead_jobs as ops
from ...ops.roles import Role
from ...queue import pages
from ...queue.client import MAX_RETRY
from ...queue.pages import MAX_PAGE
from ..fields import Cursor, DurationIn, Int, JobId, QueueName, TaskName, Time, check_cursor
from ..routing import Call, Group, Input, Output, Params
from .jobs import JobPath, JobStateOut

group = Group("dead letters", "Jobs that ran out of attempts or were discarded, with their errors.")

MAX_IDS = 1000  # ids per retry or purge request


class DeadSummary(Output):
    id: int
    queue: str
    task: str
    priority: int
    attempt: int
    max_attempts: int
    run_at: datetime | None
    enqueued_at: datetime
    started_at: datetime | None
    died_at: datetime
    key: str | None
    unique_key: str | None
    last_error: str | None


class DeadList(Output):
    """Dead jobs, most recent death first."""

    dead_jobs: list[DeadSummary]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class DeadQuery(Params):
    queue: QueueName | None = None
    task: TaskName | None = None
    died_after: Time | None = Field(default=None, description="Died at or after (RFC 3339).")
    died_before: Time | None = Field(default=None, description="Died before.")
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: Cursor | None = None

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        return check_cursor(pages.DEAD, value)


@group.route("GET", "/dead-jobs", role=Role.VIEWER, summary="List dead jobs")
async def list_dead_jobs(call: Call, query: DeadQuery) -> DeadList:
    """Most recent death first, filtered by queue, task and death time; pages by keyset."""
    page = await ops.dead_letters(call.client, call.principal, **query.model_dump(exclude_none=True))
    return DeadList(
        dead_jobs=[DeadSummary.model_validate(row) for row in page.items], next_cursor=page.next_cursor
    )


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
    """Which dead jobs to retry: ``ids``, or those matching every filter given (queue, task,
    death time; an empty body: every dead job), at most ``limit``."""

    ids: list[JobId] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    queue: QueueName | None = None
    task: TaskName | None = None
    died_after: Time | None = None
    died_before: Time | None = None
    limit: Int | None = Field(default=None, ge=1, le=MAX_RETRY)


class RetriedOut(Output):
    """The ids put back, and each dead job that could not go back with why."""

    retried: list[int]
    refused: dict[str, str] = Field(description="Job id: why it could not go back.")


@group.route("POST", "/dead-jobs/retry", role=Role.OPERATOR, summary="Retry dead jobs", body_optional=True)
async def retry_dead_jobs(call: Call, body: RetryIn) -> RetriedOut:
    """Job by job: one that cannot go back (its unique key is taken, or it is not dead) is
    listed in ``refused`` and the others go back."""
    done = await ops.retry_many(call.client, call.principal, **body.model_dump(exclude_none=True))
    return RetriedOut(retried=done.retried, refused={str(k): v for k, v in done.refused.items()})


class PurgeIn(Input):
    """Which dead jobs to delete: those matching every filter given, or ``everything``."""

    ids: list[JobId] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    queue: QueueName | None = None
    task: TaskName | None = None
    older_than: DurationIn | None = Field(default=None, description="Died longer ago than this.")
    died_after: Time | None = None
    died_before: Time | None = None
    everything: bool = Field(default=False, description="Purge every dead job (and give no filter).")


class Purged(Output):
    purged: int


@group.route("POST", "/dead-jobs/purge", role=Role.ADMIN, summary="Purge dead jobs")
async def purge_dead_jobs(call: Call, body: PurgeIn) -> Purged:
    """Deletes the dead jobs matching every filter given. No filter is refused unless
    ``everything`` is true, so an empty request purges nothing."""
    count = await ops.purge(call.client, call.principal, **body.model_dump(exclude_none=True))
    return Purged(purged=count)
