"""Finding jobs, a page at a time: every job by id, the finished ones by finish time, and the
dead letters (the queries are in sql/queries/browse.sql).

- :func:`search_jobs`: jobs wherever they are (live, finished, dead), highest id first.
  Ids only grow and a job keeps its id when it moves between tables, and each page is one
  statement (one snapshot), so paging while jobs are enqueued and finished shows every job
  that existed at the start exactly once (with the state it had when its page was read);
  jobs enqueued meanwhile have higher ids and are not shown.
- :func:`history`: finished jobs (completed, cancelled, dead), most recently finished first.
  A finished job never changes, so paging shows each once; jobs finishing meanwhile finish
  later than the first page's first row and are not shown.
- :func:`dead_letters`: the dead-letter table, most recent death first.

Every call is planned for its own values (``Database.fetch_planned``): the filters given decide the
index, and a finish-time range decides which days of job_history are read at all.

Cost: a page reads about ``limit`` index entries per table (history: per queue) when the
filters match often among the newest jobs. A filter that matches few rows (a rare task, an
old enqueue-time range, a unique key among finished jobs) makes a page read every row
newer than its matches: the tables have no index on task, key or unique key beyond the live
jobs' unique keys. In history, a filter one queue never matches (a task living in another
queue) reads that queue's whole history. bench/RESULTS.md, "The listings on a large
history", has the figures.
"""

from __future__ import annotations

from typing import Any

from ..db.database import Database
from ..errors import UnknownQueueError
from .filters import (
    DEAD_STATES,
    FINISHED_STATES,
    LIVE_STATES,
    MAX_ID,
    MIN_ID,
    JobFilters,
    id_ranges,
)
from .pages import DEAD, HISTORY, JOBS, Page, Position, check_limit, decode, page_of

# The columns of a dead letter, in order (finished_jobs' finished_at is its died_at).
DEAD_COLUMNS = (
    "id",
    "queue",
    "task",
    "priority",
    "attempt",
    "max_attempts",
    "run_at",
    "enqueued_at",
    "started_at",
    "died_at",
    "key",
    "unique_key",
    "last_error",
)


async def search_jobs(
    db: Database, filters: JobFilters, *, id_search: object, limit: object, cursor: object
) -> Page:
    limit = check_limit(limit)
    after = decode(JOBS, cursor)
    ranges = [(MIN_ID, MAX_ID)] if id_search is None else id_ranges(id_search)
    await _check_queue(db, filters)
    if id_search is not None and ranges:
        # Ranges above the highest id hold nothing: skip them rather than ask.
        top = (await db.fetch("highest_job_id"))[0][0]
        ranges = [(low, high) for low, high in ranges if top is not None and low <= top]
    before = None if after is None else after.id
    params = {
        **filters.params(),
        "from_live": filters.reads(LIVE_STATES),
        "from_history": filters.reads(FINISHED_STATES),
        "from_dead": filters.reads(DEAD_STATES),
    }
    rows: list[dict[str, Any]] = []
    # Ranges come highest first and each is read highest id first, so the rows gathered are in
    # the listing's order: stop once they make a page and one more.
    for low, high in ranges:
        if before is not None and low >= before:
            continue
        want = limit + 1 - len(rows)
        rows += await db.fetch_planned(
            "search_jobs",
            {**params, "id_lo": low, "id_hi": high, "before_id": before, "limit": want},
        )
        if len(rows) > limit:
            break
    return page_of(JOBS, rows, limit)


async def history(db: Database, filters: JobFilters, *, limit: object, cursor: object) -> Page:
    limit = check_limit(limit)
    after = decode(HISTORY, cursor)
    await _check_queue(db, filters)
    rows = await _finished(db, filters, limit, after)
    return page_of(HISTORY, rows, limit, time_key="finished_at")


async def dead_letters(db: Database, filters: JobFilters, *, limit: object, cursor: object) -> Page:
    limit = check_limit(limit)
    after = decode(DEAD, cursor)
    await _check_queue(db, filters)
    rows = await _finished(db, filters, limit, after, dead_only=True)
    letters = [
        {name: row["finished_at" if name == "died_at" else name] for name in DEAD_COLUMNS} for row in rows
    ]
    return page_of(DEAD, letters, limit, time_key="died_at")


async def dead_ids(
    db: Database,
    filters: JobFilters,
    *,
    older_than: Any = None,
    after_id: int = 0,
    batch: int = 1000,
) -> list[int]:
    """The ids above ``after_id`` of the dead jobs matching the filters (queue, task, death time,
    ``older_than`` the database's now()), lowest first, at most ``batch``."""
    params = {
        "queue": filters.queue,
        "task": filters.task,
        "died_after": filters.finished_after,
        "died_before": filters.finished_before,
        "older_than": older_than,
        "after_id": after_id,
        "batch": batch,
    }
    return [row["id"] for row in await db.fetch_planned("dead_ids_matching", params)]


async def _finished(
    db: Database, filters: JobFilters, limit: int, after: Position | None, *, dead_only: bool = False
) -> list[dict[str, Any]]:
    return await db.fetch_planned(
        "finished_jobs",
        {
            **filters.params(),
            "from_history": not dead_only and filters.reads(FINISHED_STATES),
            "from_dead": filters.reads(DEAD_STATES),
            "before_at": None if after is None else after.at,
            "before_id": None if after is None else after.id,
            "limit": limit + 1,
        },
    )


async def _check_queue(db: Database, filters: JobFilters) -> None:
    """A queue filter must name a queue (a typo would otherwise list nothing, silently)."""
    if filters.queue is not None and not (await db.fetch("queue_exists", {"queue": filters.queue}))[0][0]:
        raise UnknownQueueError(f"no queue named {filters.queue!r}")
