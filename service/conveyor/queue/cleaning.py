"""Cleaning finished jobs on demand, and retrying or purging dead jobs by filter, in bounded steps.

``clean_history`` is retention run now with a grace period of the caller's choosing: finished
jobs (completed, cancelled; or dead ones) older than the grace move from job_history (or
dead_jobs) to the run log, exactly as retention moves them (``queue.retention``), so the run
log still has a line for each. It works as retention does: every statement takes at most
about ``batch`` rows, oldest first, through the (queue, finish time) indexes, under the
schema's retention lock, and commits on its own; a call stops starting statements once its
time budget is spent (call again to go on). A worker acking meanwhile is never held up: no
step touches the jobs table, and finished rows are written once and never locked by acks.

Retry and purge by filter take the matching dead jobs a batch of ids at a time (lowest id
first), so no statement locks many rows for long. Between choosing the ids and acting on them
a job may have been retried and have died again (no longer matching a death-time range), or
have been retried or purged by someone else: ``retry`` and ``purge`` check each row against
the filters again as they take it, and a job that no longer matches is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from ..db.database import Database
from ..errors import ConveyorError, NotFoundError
from .filters import JobFilters
from .retention import BATCH, count_before_removing
from .search import dead_ids

log = logging.getLogger("conveyor.retention")

CLEANABLE_STATES = ("completed", "cancelled", "dead")


async def clean_history(
    db: Database,
    older_than: timedelta,
    *,
    queue: str | None,
    state: str | None,
    now: datetime | None,
    budget: float = 60.0,
    batch: int = BATCH,
) -> int:
    """Move finished jobs of ``queue`` (None: every queue) in ``state`` ('completed',
    'cancelled', 'dead'; None: completed and cancelled) that finished more than ``older_than``
    before ``now`` (None: the database's now) to the run log; returns how many moved."""
    deadline = time.monotonic() + budget
    before = await _before(db, older_than, now)
    # Only rows the metrics have counted may go (sql/migrations/0012: retention's rule), and
    # the queue_stats rollup counts what finished first, as retention does. The mark only
    # moves forward, so every row before the mark read here stays counted.
    await count_before_removing(db, now=now, deadline=deadline)
    [(counted_to, _)] = await db.fetch("metric_mark", {})
    before = min(before, counted_to)
    moved = 0
    if state == "dead":
        moved = await _steps(db, "clean_dead_step", {"queue": queue, "before": before}, batch, deadline)
    else:
        queues = [queue] if queue is not None else [name for (name,) in await db.fetch("queue_names")]
        for name in queues:
            params = {"queue": name, "state": state, "before": before}
            moved += await _steps(db, "clean_history_step", params, batch, deadline)
            if time.monotonic() > deadline:
                break
    if time.monotonic() > deadline:
        log.info("clean: time budget spent after %d jobs; call again for the rest", moved)
    if moved:
        log.info(
            "clean: %d finished jobs older than %s moved to the run log",
            moved,
            older_than,
            extra={"event": "history_cleaned", "jobs": moved, "queue": queue, "state": state},
        )
    return moved


async def _before(db: Database, older_than: timedelta, now: datetime | None) -> datetime:
    rows = await db.fetch("clock_minus", {"now": now, "older_than": older_than})
    at: datetime = rows[0][0]
    return at


async def _steps(db: Database, query: str, params: dict[str, object], batch: int, deadline: float) -> int:
    """Run one step query until it takes less than a batch or the time is spent; each step
    in a transaction of its own, after the retention lock."""
    total = 0
    while True:
        async with db.transaction() as tx:
            await tx.fetch("no_jit")
            await tx.fetch("retention_lock", {"schema": db.schema})
            rows = await tx.fetch(query, {**params, "schema": db.schema, "batch": batch}, prepare=False)
        taken = int(rows[0][0])
        total += taken
        if taken < batch or time.monotonic() > deadline:
            return total


async def retry_dead_matching(
    db: Database,
    filters: JobFilters,
    retry: Callable[[int], Awaitable[int | None]],
    *,
    limit: int | None,
) -> tuple[list[int], dict[int, str]]:
    """Put back the dead jobs matching the filters (at most ``limit``), one by one through
    ``retry`` (which returns None for a job that no longer matches them): the ids put back
    and, for each that could not go back, why."""
    retried: list[int] = []
    refused: dict[int, str] = {}
    after = 0
    while limit is None or len(retried) + len(refused) < limit:
        want = 1000 if limit is None else min(1000, limit - len(retried) - len(refused))
        ids = await dead_ids(db, filters, after_id=after, batch=want)
        for job_id in ids:
            try:
                revived = await retry(job_id)
            except NotFoundError:
                continue  # someone else retried or purged it meanwhile
            except ConveyorError as exc:
                refused[job_id] = str(exc)
                continue
            if revived is not None:  # None: it no longer matches (died again since, say)
                retried.append(revived)
        if len(ids) < want:
            break
        after = ids[-1]
    return retried, refused


async def purge_dead_matching(
    db: Database,
    filters: JobFilters,
    purge: Callable[[list[int]], Awaitable[int]],
    *,
    older_than: timedelta | None,
) -> int:
    """Delete the dead jobs matching the filters, a batch of ids at a time through ``purge``;
    returns how many went."""
    purged = 0
    after = 0
    while True:
        ids = await dead_ids(db, filters, older_than=older_than, after_id=after, batch=1000)
        if ids:
            purged += await purge(ids)
        if len(ids) < 1000:
            return purged
        after = ids[-1]
