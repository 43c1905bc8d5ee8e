"""Applying retention in short steps, so that no lock is held for long.

Rows first (one statement), then each expired day in its own transaction: dropping a
partition locks its parent table exclusively for an instant, and acks insert into that
table. A day whose lock cannot be had within 500 ms is left for the next run; a run stops
taking on more days once its time budget is spent.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import psycopg

from ..db.database import Database

log = logging.getLogger("conveyor.retention")


async def apply_retention(db: Database, *, now: datetime | None, budget: float = 60.0) -> dict[str, int]:
    """Apply retention; returns what each step removed (partitions dropped, rows moved)."""
    deadline = time.monotonic() + budget
    done = {str(step): int(affected) for step, affected in await db.fetch("retention_rows", {"now": now})}
    done["history partitions dropped"] = done["run log partitions dropped"] = 0
    copied = 0
    for (partition,) in await db.fetch("expired_partitions", {"now": now}):
        if time.monotonic() > deadline:
            log.info("retention: time budget spent; the other expired days go next time")
            break
        try:
            rows = await db.fetch("drop_partition", {"partition": partition})
        except psycopg.errors.LockNotAvailable:
            log.info("retention: %s is busy; it goes next time", partition)
            continue
        step = (
            "history partitions dropped"
            if partition.startswith("job_history_")
            else "run log partitions dropped"
        )
        done[step] += 1
        copied += int(rows[0][0])
    if copied:
        log.info("retention: %d finished jobs of dropped days kept in the run log", copied)
    if any(done.values()):
        log.info("retention: %s", ", ".join(f"{step}: {n}" for step, n in done.items() if n))
    return done
