"""Jobs: list, show, enqueue one or many, control one (cancel, abort, run now, retry, delete),
and await its result with a bounded long-poll."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field, field_validator

from ...ops import jobs as ops
from ...ops.roles import Role
from ...queue import pages
from ...queue.enqueue import MAX_KEY, MAX_UNIQUE_KEY, JobRequest
from ...queue.pages import MAX_PAGE
from ..fields import (
    Cursor,
    DurationIn,
    EndedStates,
    JobId,
    MaxAttempts,
    Priority,
    QueueName,
    States,
    TaskName,
    Text,
    Time,
    check_cursor,
    split_states,
)
from ..routing import Call, Group, Input, Output, Params

group = Group("jobs", "Jobs wherever they are: waiting, running, finished or dead.")

MAX_BULK = 1000  # jobs per bulk enqueue request


class JobSummary(Output):
    id: int
    queue: str
    task: str
    state: str
    priority: int
    attempt: int
    max_attempts: int
    run_at: datetime | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None = Field(description="When it completed, was cancelled, or died.")
    key: str | None
    unique_key: str | None
    worker_id: UUID | None
    progress: int | None = None
    last_error: str | None


class JobPage(Output):
    """A page of jobs."""

    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class Filters(Params):
    """What the job listings filter by (every filter given must hold)."""

    queue: QueueName | None = None
    task: TaskName | None = None
    key: Annotated[str, Field(min_length=1, max_length=MAX_KEY, description="The limit key.")] | None = None
    unique_key: Annotated[str, Field(min_length=1, max_length=MAX_UNIQUE_KEY)] | None = None
    enqueued_after: Time | None = Field(default=None, description="Enqueued at or after (RFC 3339).")
    enqueued_before: Time | None = Field(default=None, description="Enqueued before.")
    finished_after: Time | None = Field(default=None, description="Finished (or died) at or after.")
    finished_before: Time | None = Field(default=None, description="Finished (or died) before.")
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)

    def filters(self) -> dict[str, Any]:
        return self.model_dump(exclude={"cursor", "state", "id"}, exclude_none=True)


class JobQuery(Filters):
    state: States | None = None
    id: (
        Annotated[str, Field(pattern=r"^[0-9]{1,19}$", description="The digits a job's id starts with.")]
        | None
    ) = None
    cursor: Cursor | None = None

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        return check_cursor(pages.JOBS, value)


@group.route("GET", "/jobs", role=Role.VIEWER, summary="Search jobs")
async def list_jobs(call: Call, query: JobQuery) -> JobPage:
    """Jobs wherever they are (waiting, running, finished, dead), highest id first, filtered
    by queue, state(s) (comma-separated), task, limit key, unique key, the digits an id starts
    with, and enqueue and finish time ranges; pages by keyset (``next_cursor``), never by
    offset."""
    page = await ops.search_jobs(
        call.client,
        call.principal,
        **query.filters(),
        state=split_states(query.state),
        id_prefix=query.id,
        cursor=query.cursor,
    )
    return JobPage(jobs=[JobSummary.model_validate(row) for row in page.items], next_cursor=page.next_cursor)


class HistoryQuery(Filters):
    state: EndedStates | None = None
    cursor: Cursor | None = None

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        return check_cursor(pages.HISTORY, value)


@group.route("GET", "/history", role=Role.VIEWER, summary="List finished jobs")
async def list_history(call: Call, query: HistoryQuery) -> JobPage:
    """Finished jobs (completed, cancelled, dead), most recently finished first, with the
    filters of ``GET /jobs``; pages by keyset."""
    page = await ops.history(
        call.client, call.principal, **query.filters(), state=split_states(query.state), cursor=query.cursor
    )
    return JobPage(jobs=[JobSummary.model_validate(row) for row in page.items], next_cursor=page.next_cursor)


class CleanIn(Input):
    """Which finished jobs to move to the run log now."""

    older_than: DurationIn = Field(description="Finished longer ago than this.")
    queue: QueueName | None = None
    state: Literal["completed", "cancelled", "dead"] | None = Field(
        default=None, description="completed or cancelled (null: both), or dead for the dead-letter table."
    )
    budget: float = Field(
        default=10.0, gt=0, le=ops.MAX_CLEAN_BUDGET, description="Seconds to spend at most."
    )


class Cleaned(Output):
    """How many jobs moved; a call that ran out of budget leaves the rest for the next."""

    moved: int


@group.route("POST", "/history/clean", role=Role.ADMIN, summary="Clean finished jobs")
async def clean_history(call: Call, body: CleanIn) -> Cleaned:
    """Moves jobs that finished more than ``older_than`` ago to the run log, as retention
    does, in bounded batches within ``budget`` seconds: call again for the rest (0 when
    nothing is left)."""
    moved = await ops.clean_history(
        call.client, call.principal, body.older_than, queue=body.queue, state=body.state, budget=body.budget
    )
    return Cleaned(moved=moved)


class JobPath(Params):
    job_id: JobId


class TimelineEvent(Output):
    at: datetime
    event: str


class JobDetail(Output):
    """A job wherever it is; the fields that do not apply where it is are null."""

    id: int
    queue: str
    task: str
    state: str
    priority: int
    attempt: int
    max_attempts: int
    run_at: datetime | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    died_at: datetime | None
    lease_expires_at: datetime | None
    worker_id: str | None
    unique_key: str | None
    key: str | None
    progress: int | None
    progress_message: str | None
    args: dict[str, Any]
    result: Any = Field(description="The task's return value (completed jobs).")
    errors: list[Any] = Field(description="One entry per failed attempt (and a cancel's reason).")
    meta: dict[str, Any] | None
    after_id: int | None
    batch_id: int | None
    timeline: list[TimelineEvent]

    @classmethod
    def of(cls, job: dict[str, Any]) -> JobDetail:
        return cls.model_validate(
            {
                **job,
                "worker_id": None if job.get("worker_id") is None else str(job["worker_id"]),
                "errors": job.get("errors") or [],
                "timeline": [{"at": at, "event": event} for at, event in job["timeline"]],
            }
        )


@group.route("GET", "/jobs/{job_id}", role=Role.VIEWER, summary="Show a job")
async def get_job(call: Call, path: JobPath) -> JobDetail:
    """Its arguments, state, attempts with their errors, progress, result and timeline."""
    return JobDetail.of(await ops.get_job(call.client, call.principal, path.job_id))


class EnqueueIn(Input):
    """One job. ``task`` may name a task only workers know: it is checked against what they
    recorded, and its arguments by the worker that runs it."""

    task: TaskName
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the task.")
    queue: QueueName | None = Field(default=None, description="Default: the task's queue.")
    priority: Priority | None = Field(default=None, description="0 (critical) to 3 (low), or its name.")
    delay: DurationIn | None = Field(default=None, description="Run no sooner than this from now.")
    run_at: Time | None = Field(default=None, description="Run no sooner than this (with an offset).")
    unique_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_UNIQUE_KEY, description="At most one live job holds it."
    )
    max_attempts: MaxAttempts | None = None
    key: str | None = Field(
        default=None, min_length=1, max_length=MAX_KEY, description="The job's key for per-key limits."
    )
    meta: dict[str, Any] | None = Field(default=None, description="Your own tags, stored with the job.")

    def request(self) -> JobRequest:
        return JobRequest(
            self.task,
            self.args,
            self.queue,
            self.priority,
            self.delay,
            self.run_at,
            self.unique_key,
            self.max_attempts,
            self.key,
            self.meta,
        )


class Enqueued(Output):
    """The job's id (with a unique key a live job holds: that job's)."""

    status_code: ClassVar[int | None] = 201
    id: int


@group.route("POST", "/jobs", role=Role.OPERATOR, summary="Enqueue a job", status=201, problems=(409,))
async def enqueue(call: Call, body: EnqueueIn) -> Enqueued:
    return Enqueued(id=await ops.enqueue(call.client, call.principal, body.request()))


class BulkIn(Input):
    """Jobs to enqueue in one transaction: all of them, or none if one is refused."""

    jobs: list[EnqueueIn] = Field(min_length=1, max_length=MAX_BULK)


class EnqueuedMany(Output):
    """The jobs' ids, in the order given."""

    status_code: ClassVar[int | None] = 201
    ids: list[int]


@group.route("POST", "/jobs/bulk", role=Role.OPERATOR, summary="Enqueue many jobs", status=201)
async def enqueue_many(call: Call, body: BulkIn) -> EnqueuedMany:
    """One transaction: if one job is refused (unknown task, arguments that do not fit, ...)
    none is enqueued, and the problem says why."""
    ids = await ops.enqueue_many(call.client, call.principal, [job.request() for job in body.jobs])
    return EnqueuedMany(ids=ids)


class ReasonIn(Input):
    reason: Text | None = Field(default=None, description="Recorded in the job's errors.")


class JobStateOut(Output):
    """The job's state after the request."""

    id: int
    state: str


@group.route(
    "POST",
    "/jobs/{job_id}/cancel",
    role=Role.OPERATOR,
    summary="Cancel a job",
    body_optional=True,
    problems=(409,),
)
async def cancel_job(call: Call, path: JobPath, body: ReasonIn) -> JobStateOut:
    """Waiting, scheduled or blocked: it ends as cancelled and never runs (state
    ``cancelled``). Running: it is aborted (``aborting``). A job that ended is a 409."""
    state = await ops.cancel(call.client, call.principal, path.job_id, body.reason)
    return JobStateOut(id=path.job_id, state=state)


@group.route(
    "POST",
    "/jobs/{job_id}/abort",
    role=Role.OPERATOR,
    summary="Abort a running job",
    body_optional=True,
    problems=(409,),
)
async def abort_job(call: Call, path: JobPath, body: ReasonIn) -> JobStateOut:
    """The worker holding it stops it; it ends as cancelled ("aborted"). ``aborting``: the
    worker was told; ``cancelled``: done at once (its worker had stopped, or it was not running)."""
    state = await ops.abort(call.client, call.principal, path.job_id, body.reason)
    return JobStateOut(id=path.job_id, state=state)


@group.route("POST", "/jobs/{job_id}/run-now", role=Role.OPERATOR, summary="Run a job now", problems=(409,))
async def run_job_now(call: Call, path: JobPath) -> JobStateOut:
    """A scheduled job (or a retry waiting out its backoff) becomes available now."""
    return JobStateOut(id=path.job_id, state=await ops.run_now(call.client, call.principal, path.job_id))


@group.route("POST", "/jobs/{job_id}/retry", role=Role.OPERATOR, summary="Retry a dead job", problems=(409,))
async def retry_job(call: Call, path: JobPath) -> JobStateOut:
    """Puts a dead job back with a fresh attempt budget, under the same id. 404 unless the
    job is dead; 409 when a live job holds its unique key."""
    job_id = await ops.retry_job(call.client, call.principal, path.job_id)
    return JobStateOut(id=job_id, state="available")


@group.route("DELETE", "/jobs/{job_id}", role=Role.ADMIN, summary="Delete a job", problems=(409,))
async def delete_job(call: Call, path: JobPath) -> JobStateOut:
    """Removes a waiting or scheduled job, leaving no history. A running job, or one in a
    chain or a batch, is a 409 (cancel or abort it instead)."""
    return JobStateOut(id=path.job_id, state=await ops.delete_job(call.client, call.principal, path.job_id))


class ResultQuery(Params):
    timeout: float = Field(
        default=10.0,
        ge=0,
        le=ops.MAX_RESULT_WAIT,
        description="Seconds to wait for the job to end (0: look once).",
    )


class JobResult(Output):
    """The job completed: its result."""

    id: int
    state: str
    result: Any


class JobPending(Output):
    """The job has not ended within the timeout: ask again."""

    status_code: ClassVar[int | None] = 202
    id: int
    state: str


@group.route(
    "GET", "/jobs/{job_id}/result", role=Role.VIEWER, summary="Await a job's result", problems=(409,)
)
async def job_result(call: Call, path: JobPath, query: ResultQuery) -> JobResult | JobPending:
    """A long-poll of at most 30 s: 200 with the result once the job completed; 202 with its
    state when it has not ended within ``timeout`` (ask again); a 409 problem
    (``job-failed`` or ``job-cancelled``, with the error that ended it) when it died or was
    cancelled."""
    outcome = await ops.await_result(call.client, call.principal, path.job_id, query.timeout)
    if outcome.finished:
        return JobResult(id=outcome.job_id, state=outcome.state, result=outcome.result)
    return JobPending(id=outcome.job_id, state=outcome.state)
