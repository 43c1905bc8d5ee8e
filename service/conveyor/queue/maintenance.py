"""Housekeeping each worker runs beside its jobs.

- Promote: scheduled jobs (delayed, or waiting out a retry backoff) become available when
  due, and their queues' workers are woken. The loop sleeps until the earliest scheduled
  job is due, at most ``stage_interval``, so a delay fires on time.
- Rescue: jobs whose lease ran out go back to the queue (see ``leases``); those whose abort
  was asked for end as cancelled instead (docs/job-control.md).
- Upkeep: history partitions ahead of time; forget workers silent for an hour; drop rate
  windows whose starts all left their period (queue.limits); one metrics count (``counting``:
  the scheduler counts every minute, but a deployment may run none).

Every statement is safe to run from many workers at once (SKIP LOCKED, conditional
updates), so no leader is needed for correctness; running it everywhere means a delayed
job fires on time as long as any worker is up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg

from ..clock import Clock
from ..db.database import Database
from ..jobs import ClaimedJob
from .counting import count_metrics

log = logging.getLogger("conveyor.worker")


class Maintenance:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        stage_interval: float = 1.0,
        rescue_interval: float = 5.0,
        upkeep_interval: float = 3600.0,
        on_rescued: Callable[[ClaimedJob, bool], None] | None = None,
    ) -> None:
        """``on_rescued(job, dead)`` is told of each job rescued (else one line is logged)."""
        self._db = db
        self._clock = clock
        self._stage_interval = stage_interval
        self._rescue_interval = rescue_interval
        self._upkeep_interval = upkeep_interval
        self._on_rescued = on_rescued
        self._next_rescue = 0.0
        self._next_upkeep = 0.0
        self._rescue_requested = False
        self.wake = asyncio.Event()
        self.passes = 0

    def poke(self) -> None:
        """Run a full pass, rescue included, now (or right after the pass under way)."""
        self._rescue_requested = True
        self.wake.set()

    async def run(self) -> None:
        while True:
            try:
                sleep_for = await self.run_once()
            except psycopg.Error as exc:
                log.warning("maintenance failed: %s", exc)
                sleep_for = self._stage_interval
            except Exception:
                log.exception("maintenance failed")
                sleep_for = self._stage_interval
            try:
                async with asyncio.timeout(sleep_for):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()

    async def run_once(self) -> float:
        """One pass; returns how long to sleep before the next."""
        rescue_requested, self._rescue_requested = self._rescue_requested, False
        now = self._clock.now()
        while await self._db.promote_due_jobs(now=now) >= 5000:
            pass  # a large backlog fell due at once: keep going in chunks
        mono = time.monotonic()
        if rescue_requested or mono >= self._next_rescue:
            self._next_rescue = mono + self._rescue_interval
            cancelled = await self._db.cancel_aborted_expired(now=now)
            if cancelled:
                log.warning(
                    "%d aborted jobs whose worker stopped heartbeating ended as cancelled: %s",
                    len(cancelled),
                    ", ".join(str(i) for i in cancelled),
                    extra={"event": "aborted_rescued", "jobs": len(cancelled)},
                )
            retried, dead = await self._db.rescue_expired_jobs(now=now)
            if self._on_rescued is not None:
                for job in retried:
                    self._on_rescued(job, False)
                for job in dead:
                    self._on_rescued(job, True)
            elif retried or dead:
                log.warning(
                    "rescued %d jobs whose lease expired (%d back in the queue, %d to the dead-letter table)",
                    len(retried) + len(dead),
                    len(retried),
                    len(dead),
                )
        if mono >= self._next_upkeep:
            self._next_upkeep = mono + self._upkeep_interval
            await self._db.ensure_history_partitions(now=now)
            await self._db.prune_workers(silent_for=timedelta(hours=1), now=now)
            await self._db.prune_rate_windows(now=now)
            await count_metrics(self._db, budget=0.0)
        self.passes += 1
        # Measured by the database's clock: a host clock running ahead must not make it spin.
        wait = await self._db.seconds_to_next_scheduled(now=now)
        if wait is None:
            return self._stage_interval
        return min(self._stage_interval, max(wait, 0.001))
