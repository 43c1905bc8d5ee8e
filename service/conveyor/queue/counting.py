"""The counting step behind the metrics' counters and histograms, as housekeeping runs it.

``count_metrics_v1`` (sql/migrations/0012_metric_totals.up.sql) adds what happened since its
mark, up to the watermark and at most ``span`` of it, to the totals kept in the database,
and moves the mark; a call that finds another count under way returns at once. Who calls it:

- every ``/metrics`` read (``conveyor.ops.metrics``), once;
- retention, first, until caught up: it then takes from ``job_history`` and ``dead_jobs``
  only what the mark has passed (the SQL enforces that; counting first keeps it moving);
- the scheduler's leader every ``metrics_interval``, and each worker's hourly upkeep, so the
  totals keep up and ``attempt_ends`` stays small when nothing scrapes.

Never on the job hot path: claims and acks write nothing for the metrics.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from ..db.database import Database

SETTLE = timedelta(seconds=1)  # how far behind now the watermark stays at least
SPAN = timedelta(minutes=1)  # at most this much of the history per call


async def count_metrics(db: Database, *, budget: float = 10.0) -> datetime | None:
    """Count until caught up with the watermark, another process is counting, or ``budget``
    seconds are spent (at least one call); returns the mark reached (None: another process
    was counting)."""
    deadline = time.monotonic() + budget
    while True:
        [(counted_to, counted, caught_up)] = await db.fetch("count_metrics", {"settle": SETTLE, "span": SPAN})
        if not counted:
            return None
        if caught_up or time.monotonic() > deadline:
            return counted_to  # type: ignore[no-any-return]
