"""Applying retention in bounded steps, so that no statement runs long or holds a lock long.

Every statement takes at most ``batch`` rows (oldest first, through an index) and commits on
its own; a run stops starting new statements once its time budget is spent, and the next
run resumes where it stopped (the row steps start from the oldest rows again; a day being
copied to the run log resumes from its mark). A run always makes at least one call of each
step, so a short budget slows retention down but never stops it.

In order: the metrics' counting step (``count_metrics_v1``, see ``counting``: retention takes
from ``job_history`` and ``dead_jobs`` only what it has counted, so no counter loses a job),
the rollup behind ``queue_stats`` (``count_finished_v1``), then each expired day
(copied to the run log in batches, then dropped: the drop locks its parent table for an
instant, waiting at most 500 ms, else the day goes next time), then the row steps
(``retention_batch_v2``). None of them touches the jobs table, so claims and acks never
wait on retention. Concurrent runs take turns one batch at a time (an advisory lock in
the database); a day another run dropped meanwhile is skipped.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import psycopg

from ..db.database import Database
from .counting import count_metrics

log = logging.getLogger("conveyor.retention")

BATCH = 5000  # rows per statement
SPANS = 12  # 5-minute buckets counted per statement

HISTORY_DROPPED = "history partitions dropped"
RUNS_DROPPED = "run log partitions dropped"
ROW_STEPS = (
    "finished jobs moved to the run log",
    "dead jobs moved to the run log",
    "run log rows deleted",
    "fire log rows deleted",
)


async def count_before_removing(db: Database, *, now: datetime | None, deadline: float) -> None:
    """What must run before finished rows leave ``job_history`` or ``dead_jobs``: the metrics'
    counting step (the SQL lets only counted rows go) and the ``queue_stats`` rollup's count
    of what finished (rows moved to the run log uncounted would drop out of it)."""
    await count_metrics(db, budget=max(deadline - time.monotonic(), 0.0))
    while (await db.fetch("count_finished", {"now": now, "spans": SPANS}))[0][0] >= SPANS:
        if time.monotonic() > deadline:
            break


async def apply_retention(
    db: Database, *, now: datetime | None, budget: float = 60.0, batch: int = BATCH
) -> dict[str, int]:
    """Apply retention; returns what each step removed (partitions dropped, rows moved)."""
    deadline = time.monotonic() + budget

    def spent() -> bool:
        return time.monotonic() > deadline

    done = {HISTORY_DROPPED: 0, **dict.fromkeys(ROW_STEPS, 0), RUNS_DROPPED: 0}
    await count_before_removing(db, now=now, deadline=deadline)

    copied = 0
    partitions = [partition for (partition,) in await db.fetch("expired_partitions", {"now": now})]
    for partition in partitions:
        dropped = False
        try:
            while True:
                rows = await db.fetch("drop_partition_step", {"partition": partition, "batch": batch})
                copied += int(rows[0][0])
                dropped = bool(rows[0][1])
                if not dropped and not rows[0][0]:
                    log.info("retention: %s is gone (another retention run dropped it)", partition)
                    break
                if dropped or spent():
                    break
        except psycopg.errors.LockNotAvailable:
            log.info("retention: %s is busy; it goes next time", partition)
        if dropped:
            done[HISTORY_DROPPED if partition.startswith("job_history_") else RUNS_DROPPED] += 1
        if spent():
            break

    while True:
        rows = await db.fetch("retention_batch", {"now": now, "batch": batch})
        for step, affected in rows:
            done[str(step)] += int(affected)
        if all(int(affected) < batch for _, affected in rows):
            break
        if spent():
            log.info("retention: time budget spent; the rest goes next time")
            break

    if copied:
        log.info("retention: %d finished jobs of expired days copied to the run log", copied)
    if any(done.values()):
        log.info("retention: %s", ", ".join(f"{step}: {n}" for step, n in done.items() if n))
    return done
