"""The numbers behind ``/metrics``, read from the database when asked (a scrape).

Contract
--------
**Gauges: the state now**, read in one snapshot (one REPEATABLE READ, READ ONLY transaction),
so they agree with each other, and alike from every process that reads them. Depth by state,
dead-letter size, completed in the last 24 h and the oldest waiting age are the rows of
``queue_stats`` themselves (the view's cheap path: a rollup plus what finished since it was
counted); the rest are small reads (blocked and retrying jobs in the same one pass over the
unfinished jobs that ``queue_stats`` makes; workers; the scheduler's lease; schedules; jobs a
limit holds back).

**Counters and histograms: running totals of this process.** Monotonic counters cannot be
read back from the database alone: retention moves finished jobs to the run log and then
deletes them, an operator retries or purges dead jobs, and the engine records no row per
attempt. So each process keeps its own totals, and each read adds what happened between
its watermark and the previous one:

- A read first takes a *watermark*: the time before which every write to the job tables has
  committed (``metrics_watermark``: a second before now, or the start of the oldest open
  transaction of another session, whichever is earlier; Conveyor stamps a row with a time no
  earlier than its transaction's start). It then counts the rows whose time lies in
  [previous watermark, this watermark), wherever they are at that moment (``job_history``,
  the run log, ``dead_jobs``, ``jobs``: a move between them keeps the row's times), and
  adds the counts to its totals once the read has succeeded. Each interval is counted once,
  after every write into it has committed; a total never goes down.
- ``started``: jobs whose last start lies in the interval (a job started twice within one
  interval, its first attempt failing fast, counts once). ``completed``, ``cancelled``:
  jobs finished so. ``dead``: jobs moved to the dead-letter table. A row gone before the
  read that would count it (a dead job retried or purged at once, a run-log row deleted by
  a ``runs_keep`` shorter than the scrape interval) is not counted. Labels: queue and task.
- Histograms: each job completed in the interval, its *wait* (from due, that is enqueued,
  or its delay or retry backoff over, to the start of its last attempt) and its *run time*
  (from that start to its outcome written); label: queue. A job the run log already holds
  when its interval is read (retention keeping almost nothing) is in the counters but not in
  the histograms, which read ``job_history`` only.
- Totals start at zero at a process's first read, whose time is each counter's ``created``
  (a reset in Prometheus' sense: a new process, a new series start). A read more than
  ``max_gap`` (10 min) after the previous one starts again from zero (the gap is not read:
  its cost follows the jobs finished in it). So give Prometheus one process per target:
  an API run as several processes behind one address hands each scrape to any of them,
  whose totals differ, and ``rate()`` would read every switch as a reset.
- What is not counted: failed attempts that are retried (no row records them; see
  ``conveyor_queue_retrying_jobs`` for the jobs waiting to run again). Counters the same
  in every process need running totals kept in the database.

Cost: history is read per queue through the (queue, finish time) indexes, from the previous
watermark on: a read costs what finished since the previous one, never the size of the
history. Reads of one process take turns, and a read younger than ``reuse`` (1 s) is served
again. A read has a deadline (``deadline``, 10 s): past it the connection is cut and the
read fails (:class:`MetricsUnavailable`), leaving the totals as they were.

Times are the database's; a client with an injected clock reads the gauges at its time, but
the watermark is always the database's own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import IsolationLevel
from psycopg.rows import dict_row

from ..errors import ConveyorError
from ..queue.client import Conveyor, SchedulerStatus
from .deadlines import Deadline, DeadlinePassed

log = logging.getLogger("conveyor.metrics")

# Histogram bounds, in seconds.
WAIT_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
               600.0, 1800.0, 3600.0)  # fmt: skip
RUN_BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
              300.0, 600.0, 1800.0, 3600.0)  # fmt: skip
BOUNDS = {"wait": WAIT_BOUNDS, "run": RUN_BOUNDS}

# The counted events, as ``MetricsSnapshot.counters`` keys them.
EVENTS = ("started", "completed", "cancelled", "dead")


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

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.total)

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
    counting_since: float  # Unix time the totals started from (their "created")
    counted_to: datetime  # the watermark the totals reach
    workers: int
    worker_slots: int
    scheduler: SchedulerStatus
    schedule_lags: Mapping[str, float]  # schedule -> seconds past its fire time (0: not due)
    read_failures: int  # reads of this process that failed


@dataclass
class _Totals:
    since: datetime  # the watermark counted to
    created: float
    counters: dict[tuple[str, str, str], int] = field(default_factory=dict)
    histograms: dict[tuple[str, str], Histogram] = field(default_factory=dict)


class MetricsReader:
    """One process's reads (see the module's contract)."""

    def __init__(
        self,
        *,
        deadline: float = 10.0,
        settle: float = 1.0,
        max_gap: float = 600.0,
        reuse: float = 1.0,
        worker_silence: timedelta = timedelta(seconds=30),
    ) -> None:
        self.deadline = deadline
        self.settle = settle
        self.max_gap = max_gap
        self.reuse = reuse
        self.worker_silence = worker_silence
        self.read_failures = 0
        self._totals: _Totals | None = None
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
                    extra={"event": "metrics_read_failed", "error": reason},
                )
                raise MetricsUnavailable(f"the database could not be read for metrics ({reason})") from exc
            self._last, self._last_at = snapshot, time.monotonic()
            return snapshot

    async def _read(self, client: Conveyor) -> MetricsSnapshot:
        db = client.db
        queries = db.queries
        now = client.clock.now()
        async with Deadline(self.deadline) as deadline, db.connection() as conn:
            deadline.watch(conn)
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(queries["metrics_watermark"], {"settle": timedelta(seconds=self.settle)})
                row = await cur.fetchone()
                assert row is not None
                until: datetime = row["watermark"]
            totals = self._totals
            if totals is None or (until - totals.since).total_seconds() > self.max_gap:
                totals = _Totals(since=until, created=time.time())
            since = totals.since
            until = max(until, since)
            try:
                await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
                await conn.set_read_only(True)
                async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    read = _Read(cur, queries, now)
                    timeout = str(max(1, round(self.deadline * 1000)))
                    await read.rows("read_limits", statement_timeout=timeout)
                    stats = await read.rows("queue_stats")
                    names = [s["queue"] for s in stats]
                    live = await read.rows("metrics_live", since=since, until=until)
                    finished = await read.rows("metrics_finished", queues=names, since=since, until=until)
                    durations = await read.rows(
                        "metrics_durations",
                        queues=names,
                        since=since,
                        until=until,
                        wait_bounds=[-b for b in reversed(WAIT_BOUNDS)],
                        run_bounds=[-b for b in reversed(RUN_BOUNDS)],
                    )
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

        # The read succeeded: only now do the totals move.
        counters = dict(totals.counters)
        histograms = {key: h.copy() for key, h in totals.histograms.items()}
        _seed(counters, histograms, tasks, names)
        for r in live:
            _add(counters, ("started", r["queue"], r["task"]), r["started"])
        for r in finished:
            _add(counters, (r["outcome"], r["queue"], r["task"]), r["finished"])
            _add(counters, ("started", r["queue"], r["task"]), r["started"])
        for r in durations:
            for kind in ("wait", "run"):
                histogram = histograms.setdefault((kind, r["queue"]), Histogram.empty(BOUNDS[kind]))
                histogram.counts[r[f"{kind}_bucket"]] += int(r["jobs"])
                histogram.total += float(r[kind])
        self._totals = _Totals(since=until, created=totals.created, counters=counters, histograms=histograms)

        by_queue = _by_queue(live)
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
                blocked=by_queue.get(s["queue"], (0, 0))[0],
                retrying=by_queue.get(s["queue"], (0, 0))[1],
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
            counting_since=totals.created,
            counted_to=until,
            workers=len(workers),
            worker_slots=sum(int(w["concurrency"]) for w in workers),
            scheduler=scheduler,
            schedule_lags={r["name"]: r["lag"].total_seconds() for r in lags if r["lag"] is not None},
            read_failures=self.read_failures,
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


def _add(counters: dict[tuple[str, str, str], int], key: tuple[str, str, str], n: int) -> None:
    if n:
        counters[key] = counters.get(key, 0) + int(n)


def _seed(
    counters: dict[tuple[str, str, str], int],
    histograms: dict[tuple[str, str], Histogram],
    tasks: Iterable[Mapping[str, Any]],
    queues: Iterable[str],
) -> None:
    """Series shown at 0 before their first event: every declared task in its queue, and
    each queue's histograms (a series that appears with its first event hides that event
    from ``rate()``)."""
    for t in tasks:
        for event in EVENTS:
            counters.setdefault((event, t["queue"], t["task"]), 0)
    for queue in queues:
        for kind, bounds in BOUNDS.items():
            histograms.setdefault((kind, queue), Histogram.empty(bounds))


def _by_queue(live: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """(blocked, retrying) per queue from the per-task rows of metrics_live."""
    out: dict[str, tuple[int, int]] = {}
    for r in live:
        blocked, retrying = out.get(r["queue"], (0, 0))
        out[r["queue"]] = (blocked + int(r["blocked"]), retrying + int(r["retrying"]))
    return out


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
