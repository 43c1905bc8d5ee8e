"""The numbers behind ``/metrics``, read from the database when asked (a scrape).

Contract
--------
**Every number is the database's**, so every process serving ``/metrics`` gives the same
answer, and an API run as several processes behind one address is scraped as one target.

**Gauges: the state now**, read in one snapshot (one REPEATABLE READ, READ ONLY transaction),
so they agree with each other. Depth by state, dead-letter size, completed in the last 24 h
and the oldest waiting age are the rows of ``queue_stats`` themselves (the view's cheap path:
a rollup plus what finished since it was counted); the rest are small reads (blocked and
retrying jobs in the same one pass over the unfinished jobs that ``queue_stats`` makes;
workers; the scheduler's lease; schedules; jobs a limit holds back).

**Counters and histograms: running totals kept in the database** (``metric_totals``,
``metric_buckets``; schema version 12, sql/migrations/0012_metric_totals.up.sql), read in the
same snapshot as the gauges. They only ever grow: across retention, dead-letter retries and
purges, API restarts and any number of API processes. A counting step
(``count_metrics_v1``) advances them: it counts what happened between its mark and a
*watermark* (the time before which every write to the job tables has committed: a second
before now, or the start of the oldest open transaction of another session, whichever is
earlier; Conveyor stamps a row with a time no earlier than its transaction's start), adds it
to the totals and moves the mark, in one transaction, under the mark's row lock. Each
interval is counted once, after every write into it has committed.

- Every read first runs the counting step (the process that takes the lock counts; a read
  that finds a count under way does not wait, and reads the totals as they are). The
  scheduler counts every minute and before retention removes anything; retention takes from
  ``job_history`` and ``dead_jobs`` only what the mark has passed; retrying or purging a
  dead job adds its death and last start to the totals itself when no count has reached
  them. So nothing is removed uncounted.
- ``started``: attempts started (each claim of a job), wherever the job is when counted
  (running, finished, dead, or waiting to run again: an attempt that ends without its job
  ending leaves a row in ``attempt_ends`` until the next count). ``completed``,
  ``cancelled``: jobs finished so. ``dead``: jobs moved to the dead-letter table.
  ``failed``: attempts that failed and are tried again (an error with attempts left, or a
  lease that ran out; a hand-back at shutdown is not a failure). Labels: queue and task.
- Histograms: each completed job, its *wait* (from due, that is enqueued, or its delay or
  retry backoff over, to the start of its last attempt) and its *run time* (from that start
  to its outcome written); label: queue.
- The totals count from ``metric_mark.counting_since`` (the migration to version 12): that is
  each counter's ``created``. They lag by the watermark (about a second; a transaction left
  open elsewhere in the database holds it back until it ends, and nothing is lost).
- Jobs of a queue without a ``queues`` row (written straight into the tables, never served
  by a worker) are not counted.

Cost: the counting step reads what finished since the previous count, per queue through the
(queue, time) indexes of ``job_history`` and ``dead_jobs``, and the running jobs; at most
``span`` (1 min) of it per read (the scheduler catches up the rest). The totals are a row per
queue, task and event and per queue, kind and bucket. Reads of one process take turns, and a
read younger than ``reuse`` (1 s) is served again. A read has a deadline (``deadline``,
10 s): past it the connection is cut and the read fails (:class:`MetricsUnavailable`).

Times are the database's; a client with an injected clock reads the gauges at its time, but
the counting step always counts by the database's own clock.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import IsolationLevel
from psycopg.rows import dict_row

from ..errors import ConveyorError
from ..queue.client import Conveyor, SchedulerStatus
from .deadlines import Deadline, DeadlinePassed

log = logging.getLogger("conveyor.metrics")

# The counted events, as ``MetricsSnapshot.counters`` keys them.
EVENTS = ("started", "completed", "cancelled", "dead", "failed")
KINDS = ("wait", "run")


class MetricsUnavailable(ConveyorError):
    """The database could not be read for metrics (unreachable, too slow, or refusing)."""


@dataclass
class Histogram:
    """Counts per bucket (not cumulative; the last is above every bound) and their sum."""

    bounds: tuple[float, ...]
    counts: list[int]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, [0] * (len(bounds) + 1))

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, jobs at or below it), the last bound infinite."""
        running, out = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass(frozen=True)
class QueueMetrics:
    queue: str
    paused: bool
    available: int  # due, waiting to start (queue_stats.waiting)
    scheduled: int
    running: int
    blocked: int  # waiting for another job to end
    retrying: int  # waiting to run again after an attempt
    dead: int  # in the dead-letter table
    completed_24h: int
    oldest_waiting: float | None  # seconds
    workers: int  # live workers serving it
    limit_held: int | None  # due jobs its limits hold back now; None: no limits


@dataclass(frozen=True)
class MetricsSnapshot:
    queues: tuple[QueueMetrics, ...]
    counters: Mapping[tuple[str, str, str], int]  # (event, queue, task) -> total
    histograms: Mapping[tuple[str, str], Histogram]  # (kind, queue) -> totals
    counting_since: float  # Unix time the totals count from (their "created")
    counted_to: datetime  # the mark the totals reach
    workers: int
    worker_slots: int
    scheduler: SchedulerStatus
    schedule_lags: Mapping[str, float]  # schedule -> seconds past its fire time (0: not due)


class MetricsReader:
    """One process's reads (see the module's contract): the numbers are the database's, and
    the reader keeps only the last snapshot (served again within ``reuse``)."""

    def __init__(
        self,
        *,
        deadline: float = 10.0,
        settle: float = 1.0,
        span: float = 60.0,
        reuse: float = 1.0,
        worker_silence: timedelta = timedelta(seconds=30),
    ) -> None:
        self.deadline = deadline
        self.settle = settle
        self.span = span
        self.reuse = reuse
        self.worker_silence = worker_silence
        self.read_failures = 0  # reads of this process that failed (each logged)
        self._lock = asyncio.Lock()
        self._last: MetricsSnapshot | None = None
        self._last_at = -math.inf

    async def read(self, client: Conveyor) -> MetricsSnapshot:
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last_at < self.reuse:
                return self._last
            try:
                snapshot = await self._read(client)
            except (DeadlinePassed, psycopg.Error) as exc:
                self.read_failures += 1
                reason = str(exc) if isinstance(exc, DeadlinePassed) else _kind(exc)
                log.warning(
                    "metrics: reading the database failed (%s)",
                    reason,
                    extra={"event": "metrics_read_failed", "error": reason, "failures": self.read_failures},
                )
                raise MetricsUnavailable(f"the database could not be read for metrics ({reason})") from exc
            self._last, self._last_at = snapshot, time.monotonic()
            return snapshot

    async def _read(self, client: Conveyor) -> MetricsSnapshot:
        db = client.db
        queries = db.queries
        now = client.clock.now()
        timeout = str(max(1, round(self.deadline * 1000)))
        async with Deadline(self.deadline) as deadline, db.connection() as conn:
            deadline.watch(conn)
            # The counting step first, in a READ COMMITTED transaction of its own (it must see
            # everything committed before its watermark); it returns at once if another
            # process is counting.
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                count = _Read(cur, queries, now)
                await count.rows("read_limits", statement_timeout=timeout)
                await count.rows(
                    "count_metrics", settle=timedelta(seconds=self.settle), span=timedelta(seconds=self.span)
                )
            try:
                await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
                await conn.set_read_only(True)
                async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    read = _Read(cur, queries, now)
                    await read.rows("read_limits", statement_timeout=timeout)
                    stats = await read.rows("queue_stats")
                    live = await read.rows("metrics_live")
                    totals = await read.rows("metric_totals")
                    buckets = await read.rows("metric_buckets")
                    [mark] = await read.rows("metric_mark")
                    bounds = {
                        r["kind"]: tuple(float(b) for b in r["bounds"])
                        for r in await read.rows("metric_bounds")
                    }
                    tasks = await read.rows("known_tasks")
                    workers = await read.rows("live_workers", silence=self.worker_silence)
                    scheduler = SchedulerStatus(**(await read.rows("scheduler_status"))[0])
                    lags = await read.rows("schedule_lags")
                    held = await read.rows("limit_held")
            finally:
                if not conn.broken:  # the pool keeps the connection: as it was
                    try:
                        await conn.set_isolation_level(None)
                        await conn.set_read_only(None)
                    except psycopg.Error:
                        pass  # broken meanwhile: the pool discards it

        names = [s["queue"] for s in stats]
        counters = {(r["event"], r["queue"], r["task"]): int(r["total"]) for r in totals}
        histograms = _histograms(buckets, bounds)
        _seed(counters, histograms, tasks, names, bounds)

        blocked_retrying = _by_queue(live)
        serving: dict[str, int] = {}
        for w in workers:
            for queue in w["queues"]:
                serving[queue] = serving.get(queue, 0) + 1
        limit_held = {r["queue"]: int(r["held"]) for r in held}
        queues = tuple(
            QueueMetrics(
                queue=s["queue"],
                paused=bool(s["paused"]),
                available=int(s["waiting"]),
                scheduled=int(s["scheduled"]),
                running=int(s["running"]),
                blocked=blocked_retrying.get(s["queue"], (0, 0))[0],
                retrying=blocked_retrying.get(s["queue"], (0, 0))[1],
                dead=int(s["dead"]),
                completed_24h=int(s["completed_24h"]),
                oldest_waiting=None
                if s["oldest_waiting_age"] is None
                else s["oldest_waiting_age"].total_seconds(),
                workers=serving.get(s["queue"], 0),
                limit_held=limit_held.get(s["queue"]),
            )
            for s in stats
        )
        return MetricsSnapshot(
            queues=queues,
            counters=counters,
            histograms=histograms,
            counting_since=mark["counting_since"].timestamp(),
            counted_to=mark["counted_to"],
            workers=len(workers),
            worker_slots=sum(int(w["concurrency"]) for w in workers),
            scheduler=scheduler,
            schedule_lags={r["name"]: r["lag"].total_seconds() for r in lags if r["lag"] is not None},
        )


class _Read:
    """Named queries on one cursor, each with the client's clock as ``now``."""

    def __init__(self, cur: psycopg.AsyncCursor[dict[str, Any]], queries: Any, now: datetime | None) -> None:
        self._cur = cur
        self._queries = queries
        self._now = now

    async def rows(self, name: str, **params: Any) -> list[dict[str, Any]]:
        await self._cur.execute(self._queries[name], {"now": self._now, **params})
        return await self._cur.fetchall() if self._cur.description else []


def _histograms(
    buckets: Iterable[Mapping[str, Any]], bounds: Mapping[str, tuple[float, ...]]
) -> dict[tuple[str, str], Histogram]:
    """The histograms from the rows of metric_buckets: a row's bucket is found by its upper
    bound (``le``; a bound the current bounds lack counts in the next bound up)."""
    out: dict[tuple[str, str], Histogram] = {}
    for r in buckets:
        kind_bounds = bounds.get(r["kind"])
        if kind_bounds is None:
            continue
        histogram = out.setdefault((r["kind"], r["queue"]), Histogram.empty(kind_bounds))
        histogram.counts[bisect.bisect_left(kind_bounds, float(r["le"]))] += int(r["jobs"])
        histogram.total += float(r["seconds"])
    return out


def _seed(
    counters: dict[tuple[str, str, str], int],
    histograms: dict[tuple[str, str], Histogram],
    tasks: Iterable[Mapping[str, Any]],
    queues: Iterable[str],
    bounds: Mapping[str, tuple[float, ...]],
) -> None:
    """Series shown at 0 before their first event: every declared task in its queue, and
    each queue's histograms (a series that appears with its first event hides that event
    from ``rate()``)."""
    for t in tasks:
        for event in EVENTS:
            counters.setdefault((event, t["queue"], t["task"]), 0)
    for queue in queues:
        for kind, kind_bounds in bounds.items():
            histograms.setdefault((kind, queue), Histogram.empty(kind_bounds))


def _by_queue(live: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """(blocked, retrying) per queue from the rows of metrics_live."""
    return {r["queue"]: (int(r["blocked"]), int(r["retrying"])) for r in live}


def _kind(exc: psycopg.Error) -> str:
    """What went wrong without the driver's message, which may name host, port and user."""
    return type(exc).__name__ + (f", SQLSTATE {exc.sqlstate}" if exc.sqlstate else "")


_readers: weakref.WeakKeyDictionary[Conveyor, MetricsReader] = weakref.WeakKeyDictionary()


def reader_for(client: Conveyor) -> MetricsReader:
    """The reader of this client (made on first use): its totals live as long as the client."""
    reader = _readers.get(client)
    if reader is None:
        reader = _readers[client] = MetricsReader()
    return reader
