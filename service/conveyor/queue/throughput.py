"""Throughput per minute over the last hour: jobs completed and jobs that died, in one queue or
all of them (the dashboard's charts; ``ops.queues.throughput``).

Design
------
The hour is :data:`MINUTES` whole minutes (UTC, aligned to the minute), the last of them the
one holding now (so partly over). Each minute is counted on its own (``throughput_minutes``
in sql/queries/throughput.sql): a range of the ``(queue, finished_at)`` index of
``job_history`` (rows of state ``completed``) and of the ``(queue, died_at)`` index of
``dead_jobs``, per queue. Counting a whole busy hour on every request would cost about
0.25 to 0.5 µs per job (measured: 100 to 230 ms for the 415,000 jobs of an hour at 10,000,000 a
day, all queues, by bench/throughput_cost.py), so counts are cached in the process:

- A minute is **settled** once it ends at or before the settled time the query returns:
  ``least(now - SETTLE, the start of the oldest open transaction of another session)``.
  Conveyor stamps a finish (``finished_at``, ``died_at``) no earlier than the start of the
  transaction that writes it, so no row can still arrive in a settled minute (the same
  watermark as the counting step behind /metrics). Only settled minutes are cached; the
  minute now and the one just ended are counted on every read.
- The cache is per :class:`~conveyor.db.database.Database` (a weak key: a new client starts
  empty), per queue (None: all queues), at most :data:`MINUTES` minutes each: minutes that
  leave the hour are dropped on each read. Its size is bounded by the number of queues.
- A read counts at most :data:`MOST_PER_READ` uncached minutes, newest first, so a process's
  first read (nothing cached) costs about a sixth of the hour's count, not all of it; the
  minutes not counted yet are ``None`` in :attr:`Throughput.minutes` and reported in
  :attr:`Throughput.uncounted` (the chart says so, and its fragment asks again soon).

Invariants and what is knowingly left out:

- A cached minute is what the database held once the minute settled. Rows leaving it later
  are not subtracted: retention and ``clean_history`` (moving completed jobs out; the
  jobs did finish then), a dead job retried or purged (it did die then). Rows cannot be
  added to a settled minute (above).
- The settled time reads ``pg_stat_activity`` after the statement's snapshot was taken: a
  transaction stamped more than ``SETTLE`` before and committing in that instant could be
  missed by that one read's cache. SETTLE (5 s) is far above the time a Conveyor write
  transaction stays open, so this needs a stray long transaction committing in a window of
  microseconds; the effect is an undercount of one minute in one process.
- Times are the clock's (the database's unless the client has an injected clock); the
  settled time is never later than the database's own now less SETTLE.
- Several processes each keep their own cache; they agree, since they count the same rows.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..db.database import Database

MINUTES = 60  # the chart's span
MOST_PER_READ = 10  # uncached minutes one read counts at most (newest first)
SETTLE = timedelta(seconds=5)
ONE_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Minute:
    start: datetime
    completed: int
    dead: int


@dataclass(frozen=True)
class Throughput:
    """Per minute, oldest first, the last one holding ``now``; None for a minute not counted
    yet (see the module's design)."""

    queue: str | None
    now: datetime
    minutes: tuple[Minute | None, ...]

    @property
    def completed(self) -> int:
        return sum(m.completed for m in self.minutes if m is not None)

    @property
    def dead(self) -> int:
        return sum(m.dead for m in self.minutes if m is not None)

    @property
    def peak(self) -> int:
        """The most jobs completed in one minute."""
        return max((m.completed for m in self.minutes if m is not None), default=0)

    @property
    def uncounted(self) -> int:
        return sum(1 for m in self.minutes if m is None)

    @property
    def first(self) -> datetime:
        return minute_of(self.now) - (len(self.minutes) - 1) * ONE_MINUTE


class MinuteCache:
    """Settled minutes' (completed, dead) per queue (None: all queues), of one database."""

    def __init__(self) -> None:
        self._minutes: dict[str | None, dict[datetime, tuple[int, int]]] = {}

    def known(self, queue: str | None) -> dict[datetime, tuple[int, int]]:
        return dict(self._minutes.get(queue, {}))

    def keep(self, queue: str | None, minute: datetime, counts: tuple[int, int]) -> None:
        self._minutes.setdefault(queue, {})[minute] = counts

    def forget_before(self, queue: str | None, first: datetime) -> None:
        held = self._minutes.get(queue)
        if held:
            for minute in [m for m in held if m < first]:
                del held[minute]


_caches: weakref.WeakKeyDictionary[Database, MinuteCache] = weakref.WeakKeyDictionary()


def cache_for(db: Database) -> MinuteCache:
    found = _caches.get(db)
    if found is None:
        found = _caches[db] = MinuteCache()
    return found


def minute_of(moment: datetime) -> datetime:
    """The start of the minute holding ``moment`` (aligned in UTC, as date_bin with a UTC
    origin: every time zone's offset is whole minutes)."""
    return moment.replace(second=0, microsecond=0)


async def read_throughput(
    db: Database,
    *,
    queue: str | None,
    now: datetime | None,
    cache: MinuteCache | None = None,
    most: int = MOST_PER_READ,
) -> Throughput:
    """The last hour per minute, counting only what the cache lacks (at most ``most`` minutes)."""
    held = cache if cache is not None else cache_for(db)
    known = held.known(queue)
    rows: list[dict[str, Any]] = await db.fetch_planned(
        "throughput_minutes",
        {
            "queue": queue,
            "now": now,
            "settle": SETTLE,
            "minutes": MINUTES,
            "cached": list(known),
            "most": most,
        },
    )
    clock: datetime = rows[0]["now"]
    settled: datetime = rows[0]["settled"]
    first = minute_of(clock) - (MINUTES - 1) * ONE_MINUTE
    counted: dict[datetime, tuple[int, int]] = {}
    for row in rows:
        if row["minute"] is None:
            continue
        counts = (int(row["completed"]), int(row["dead"]))
        counted[row["minute"]] = counts
        if row["minute"] + ONE_MINUTE <= settled:
            held.keep(queue, row["minute"], counts)
    held.forget_before(queue, first)
    minutes: list[Minute | None] = []
    for i in range(MINUTES):
        start = first + i * ONE_MINUTE
        found = counted.get(start) or known.get(start)
        minutes.append(None if found is None else Minute(start, *found))
    return Throughput(queue, clock, tuple(minutes))
