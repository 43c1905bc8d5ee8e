"""Each queue at a glance: its jobs by state, how long the oldest has waited, its throughput,
and whether it is paused or limited, in one call.

The counts are the ``queue_stats`` view's (so they agree with it and with ``conveyor
status``), plus the jobs blocked behind another job; the throughput counts jobs completed in
the last minute and hour and jobs that died in the last hour. Each costs index reads of the
rows finished since the rollup behind ``queue_stats`` last counted (retention counts every
10 minutes), not of the whole history: see the ``queue_overview`` query. The limits and
their use now are the ``queue_limits`` query's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..db.database import Database
from ..limits import LimitsInUse, limits_in_use


@dataclass(frozen=True)
class QueueOverview:
    queue: str
    paused: bool
    all_paused: bool  # everything is paused (Conveyor.pause_all)
    paused_tasks: tuple[str, ...]  # paused tasks with jobs waiting in this queue
    waiting: int  # available: due now, not yet started
    scheduled: int  # due later (delayed, or a retry waiting out its backoff)
    running: int
    blocked: int  # waiting for the job they were chained after
    completed_24h: int  # to the 5 minutes, as queue_stats
    dead: int  # in the dead-letter table now
    oldest_waiting_age: timedelta | None  # how long the oldest waiting job has waited
    completed_last_minute: int
    completed_last_hour: int
    dead_last_hour: int  # jobs of this queue that died in the last hour (and are still dead)
    limits: LimitsInUse | None  # None: the queue has no limits


async def read_overview(db: Database, *, queue: str | None, now: datetime | None) -> list[QueueOverview]:
    rows = await db.fetch_planned("queue_overview", {"queue": queue, "now": now})
    limits = {
        row["name"]: limits_in_use(row)
        for row in await db.fetch_dicts("queue_limits", {"queue": queue, "now": now})
    }
    return [
        QueueOverview(
            **{**row, "paused_tasks": tuple(row["paused_tasks"] or ())},
            limits=limits.get(row["queue"]),
        )
        for row in rows
    ]
