"""Operations on the dead-letter queue, with the role each needs.

Contract: every function checks the role first, then delegates to the client. Reading
needs a viewer; retrying (one, several by id, or every one matching a filter) an operator;
purging an admin. A bulk retry goes job by job and reports each job it could not put back
and why; a purge needs at least one filter or ``everything`` (so an empty request cannot
empty the table by accident). A queue named as a filter must exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..errors import ConveyorError, InvalidOptionError
from ..queue.client import Conveyor
from ..queue.pages import Page
from .jobs import shown
from .queues import check_queue
from .roles import Principal, Role, require


async def dead_letters(client: Conveyor, principal: Principal, **filters: Any) -> Page:
    """Dead jobs, most recent death first, a page at a time (``Conveyor.dead_letters``)."""
    require(principal, Role.VIEWER, "listing dead jobs")
    if filters.get("queue") is not None:
        await check_queue(client, filters["queue"])
    return await client.dead_letters(**filters)


async def count_dead(
    client: Conveyor,
    principal: Principal,
    *,
    queue: str | None = None,
    task: str | None = None,
    died_after: datetime | None = None,
    died_before: datetime | None = None,
) -> int:
    """How many dead jobs match the filters (none: every dead job): what a retry or purge
    by those filters would take now."""
    require(principal, Role.VIEWER, "counting dead jobs")
    if queue is not None:
        await check_queue(client, queue)
    return await client.count_dead(queue=queue, task=task, died_after=died_after, died_before=died_before)


async def get_dead(client: Conveyor, principal: Principal, job_id: int) -> dict[str, Any]:
    """One dead job with every error; NotFoundError unless it is dead."""
    require(principal, Role.VIEWER, "reading a dead job")
    return shown(await client.dead_job(job_id))


async def retry_dead(
    client: Conveyor, principal: Principal, job_id: int, *, died_at: datetime | None = None
) -> int:
    """Put a dead job back with a fresh attempt budget (same id). With ``died_at``, only if
    it is still dead of that death (ConflictError otherwise): a retry asked twice of the death
    the asker saw runs the job once."""
    require(principal, Role.OPERATOR, "retrying a dead job")
    if died_at is not None:
        return await client.retry_dead_if(job_id, died_at)
    return await client.retry_dead(job_id)


@dataclass(frozen=True)
class Retried:
    """The ids put back, and for each job that could not go back, why."""

    retried: list[int]
    refused: dict[int, str] = field(default_factory=dict)


async def retry_many(
    client: Conveyor,
    principal: Principal,
    *,
    ids: Sequence[int] | None = None,
    queue: str | None = None,
    task: str | None = None,
    died_after: datetime | None = None,
    died_before: datetime | None = None,
    limit: int | None = None,
) -> Retried:
    """Retry the dead jobs named by ``ids``, or else every one matching the filters (queue,
    task, died in ``[died_after, died_before)``; none: every dead job), at most ``limit``.
    Ids that are not dead jobs are refused, not an error."""
    require(principal, Role.OPERATOR, "retrying dead jobs")
    if ids is not None:
        if any(v is not None for v in (queue, task, died_after, died_before, limit)):
            raise InvalidOptionError(
                "give ids, or filters to match (queue, task, death time, limit), not both"
            )
        retried: list[int] = []
        refused: dict[int, str] = {}
        for job_id in dict.fromkeys(ids):  # each once, in the order given
            try:
                retried.append(await client.retry_dead(job_id))
            except ConveyorError as exc:  # not dead (any more), or its unique key is taken
                refused[job_id] = str(exc)
        return Retried(retried, refused)
    if queue is not None:
        await check_queue(client, queue)
    done, refused = await client.retry_dead_matching(
        queue=queue, task=task, died_after=died_after, died_before=died_before, limit=limit
    )
    return Retried(done, refused)


async def purge(
    client: Conveyor,
    principal: Principal,
    *,
    ids: Sequence[int] | None = None,
    queue: str | None = None,
    task: str | None = None,
    older_than: timedelta | None = None,
    died_after: datetime | None = None,
    died_before: datetime | None = None,
    everything: bool = False,
) -> int:
    """Delete the dead jobs matching every filter given; how many. No filter at all is
    refused unless ``everything`` (and ``everything`` with a filter is refused too)."""
    require(principal, Role.ADMIN, "purging dead jobs")
    filtered = any(value is not None for value in (ids, queue, task, older_than, died_after, died_before))
    if filtered == everything:
        raise InvalidOptionError(
            "name what to purge (ids, queue, task, older_than, died_after, died_before) or say everything=true, not both"
            if everything
            else "name what to purge (ids, queue, task, older_than, died_after, died_before), or say everything=true"
        )
    if older_than is not None and older_than < timedelta(0):
        raise InvalidOptionError("older_than must not be negative")
    if queue is not None:
        await check_queue(client, queue)
    return await client.purge_dead(
        ids=None if ids is None else list(ids),
        queue=queue,
        task=task,
        older_than=older_than,
        died_after=died_after,
        died_before=died_before,
    )
