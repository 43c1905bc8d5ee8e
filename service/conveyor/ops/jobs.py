"""Operations on jobs, with the role each needs: read, enqueue, control one job, await it.

Contract: every function checks the role first (before any read), then delegates to the
client. Reads (search, history, detail, result) need a viewer; enqueueing, cancelling,
aborting, running now and retrying a dead job need an operator; deleting a job and
cleaning the history need an admin.
Cancels and aborts record who asked (the principal's name) in the job's errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..deep_json import clipped
from ..errors import InvalidOptionError, JobCancelled, JobFailed
from ..queue.client import Conveyor
from ..queue.enqueue import JobRequest
from ..queue.pages import Page
from ..queue.timeline import timeline
from .queues import check_queue
from .roles import Principal, Role, require

# The longest a result may be awaited in one call (seconds): a long-poll, not a hold.
MAX_RESULT_WAIT = 30.0
MAX_CLEAN_BUDGET = 30.0  # seconds one clean_history call may spend


async def search_jobs(client: Conveyor, principal: Principal, **filters: Any) -> Page:
    """Jobs wherever they are, highest id first, a page at a time (``Conveyor.search_jobs``:
    its filters and cursor). A queue named as a filter must exist (UnknownQueueError), so a
    typo is not an empty page."""
    require(principal, Role.VIEWER, "listing jobs")
    if filters.get("queue") is not None:
        await check_queue(client, filters["queue"])
    return await client.search_jobs(**filters)


async def history(client: Conveyor, principal: Principal, **filters: Any) -> Page:
    """Finished jobs, most recently finished first, a page at a time (``Conveyor.history``)."""
    require(principal, Role.VIEWER, "reading the history")
    if filters.get("queue") is not None:
        await check_queue(client, filters["queue"])
    return await client.history(**filters)


async def clean_history(
    client: Conveyor,
    principal: Principal,
    older_than: timedelta,
    *,
    queue: str | None = None,
    state: str | None = None,
    budget: float = 10.0,
) -> int:
    """Move jobs finished more than ``older_than`` ago to the run log now, within ``budget``
    seconds (at most MAX_CLEAN_BUDGET); how many moved (call again for the rest)."""
    require(principal, Role.ADMIN, "cleaning the history")
    if not 0 < budget <= MAX_CLEAN_BUDGET:
        raise InvalidOptionError(f"budget must be more than 0 and at most {MAX_CLEAN_BUDGET:g} seconds")
    return await client.clean_history(older_than, queue=queue, state=state, budget=budget)


# What a job holds from its callers: shown clipped (a value stored by SQL may be nested
# deeper than the API's encoder, the CLI's and the dashboard's templates can recurse).
_CALLER_VALUES = ("args", "result", "meta")


def shown(job: dict[str, Any]) -> dict[str, Any]:
    """A job's row as the entry points show it: its callers' values clipped (deep_json)."""
    return {**job, **{name: clipped(job[name]) for name in _CALLER_VALUES if name in job}}


async def get_job(client: Conveyor, principal: Principal, job_id: int) -> dict[str, Any]:
    """One job wherever it is, with its ``timeline``: (time, event) pairs in time order."""
    require(principal, Role.VIEWER, "reading a job")
    job = await client.get_job(job_id)
    return {**shown(job), "timeline": timeline(job)}


async def enqueue(client: Conveyor, principal: Principal, request: JobRequest) -> int:
    """Enqueue one job; its id (or that of the live job holding its unique key)."""
    require(principal, Role.OPERATOR, "enqueueing a job")
    return await client.enqueue(
        request.task,
        request.args,
        queue=request.queue,
        priority=request.priority,
        delay=request.delay,
        run_at=request.run_at,
        unique_key=request.unique_key,
        max_attempts=request.max_attempts,
        key=request.key,
        meta=request.meta,
    )


async def enqueue_many(client: Conveyor, principal: Principal, requests: Sequence[JobRequest]) -> list[int]:
    """Enqueue jobs in one transaction: all or none. Their ids, in order."""
    require(principal, Role.OPERATOR, "enqueueing jobs")
    return await client.enqueue_many(requests)


async def cancel(client: Conveyor, principal: Principal, job_id: int, reason: str | None = None) -> str:
    require(principal, Role.OPERATOR, "cancelling a job")
    return await client.cancel(job_id, reason=reason, by=principal.name)


async def abort(client: Conveyor, principal: Principal, job_id: int, reason: str | None = None) -> str:
    require(principal, Role.OPERATOR, "aborting a job")
    return await client.abort(job_id, reason=reason, by=principal.name)


async def run_now(client: Conveyor, principal: Principal, job_id: int) -> str:
    require(principal, Role.OPERATOR, "running a job now")
    return await client.run_now(job_id)


async def delete_job(client: Conveyor, principal: Principal, job_id: int) -> str:
    require(principal, Role.ADMIN, "deleting a job")
    return await client.delete_job(job_id)


async def retry_job(client: Conveyor, principal: Principal, job_id: int) -> int:
    """Put a dead job back with a fresh attempt budget (same id); NotFoundError unless dead."""
    require(principal, Role.OPERATOR, "retrying a job")
    return await client.retry_dead(job_id)


@dataclass(frozen=True)
class Outcome:
    """A job's result if it completed (``finished``), else the state it is in now."""

    job_id: int
    state: str
    finished: bool
    result: Any = None


async def await_result(client: Conveyor, principal: Principal, job_id: int, timeout: float) -> Outcome:  # noqa: ASYNC109 - a bounded long-poll's own timeout
    """Wait at most ``timeout`` seconds (capped at MAX_RESULT_WAIT) for the job to end.

    Completed: its result. Still going: its state now (``finished`` False). Dead or
    cancelled: JobFailed or JobCancelled, with the error that ended it; unknown: NotFoundError.
    """
    require(principal, Role.VIEWER, "awaiting a job's result")
    try:
        result = await client.result(job_id, timeout=min(timeout, MAX_RESULT_WAIT))
    except TimeoutError:
        job = await client.get_job(job_id)
        # It may have ended between the wait's end and this read.
        errors = job.get("errors") or []
        last = errors[-1] if errors else None
        if job["state"] == "completed":
            return Outcome(job_id, "completed", True, job.get("result"))
        if job["state"] == "dead":
            raise JobFailed(job_id, last) from None
        if job["state"] == "cancelled":
            raise JobCancelled(job_id, last) from None
        return Outcome(job_id, job["state"], False)
    return Outcome(job_id, "completed", True, result)
