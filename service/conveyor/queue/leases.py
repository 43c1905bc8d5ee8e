"""Leases, heartbeats and fencing.

Invariants
----------
1. A running job carries ``worker_id`` and ``claims``; with the id they are its fencing
   token. ``claims`` goes up by one on every claim and never goes down: not on a hand-back
   (which gives the *attempt* back), not through the dead-letter table (``retry_dead``
   resets ``attempt`` but keeps ``claims``). So a token names exactly one execution, even
   when the same worker claims the same job again.
2. Every write to a running job (complete, retry, bury, release, extend, progress) is
   ``WHERE id = ? AND claims = ? AND worker_id = ?`` (a job has a worker_id exactly while
   it runs: the table checks it). A worker that lost its job (lease expired and the job
   was rescued, or it was handed back) matches no row: its late ack changes nothing. The worker keys its own bookkeeping by the same
   token, since it may run an old and a new execution of one job side by side.
3. A claim sets ``lease_expires_at = now + lease``. From the claim until the job's outcome
   is written (not only while it runs: a finished job whose write waits must not be
   rescued), the worker's heartbeat (every ``lease / 3``) pushes the lease back for jobs
   claimed a while ago; jobs recorded within one heartbeat are never touched, so short jobs
   cost nothing. A write of outcomes locks its jobs' rows while it runs, so an extension
   naming them would wait behind it (and fail at the lock timeout, with every other job's
   extension in the same statement): the heartbeat extends the jobs whose write is in flight
   in a statement of their own that skips locked rows (a write still waiting for a lock on
   job_history holds none), and the completer extends them itself between two attempts
   (``LeaseKeeper.extend_these``), when the rows are free. A sync task past its timeout
   keeps its lease until its thread returns.
4. ``rescue_expired_jobs`` (run by every worker's maintenance loop, safe to run
   concurrently: rows are taken with SKIP LOCKED) returns a job whose lease passed to
   ``available`` if attempts remain, else to the dead-letter table, with an error saying
   the lease expired. The expired attempt counts: a job that kills its worker every time
   ends in the dead-letter table instead of looping forever.
5. A graceful shutdown hands unfinished jobs back (``release_jobs``) with the attempt not
   counted: ``attempt`` goes down by one and ``worker_id`` is cleared (``claims`` stays).
   ``handbacks`` counts them; from the sixth on the attempt counts, and one on the last
   attempt moves the job to the dead-letter table.
   A sync task still in its thread is not handed back: its job keeps its lease until the
   lease runs out, and that attempt counts.

6. Each extension also says which held jobs have an abort asked for (``abort_requested_at``):
   an abort whose notification was lost reaches the worker within one heartbeat of a job
   claimed a while ago (see docs/job-control.md).

Failure behaviour: if the database is unreachable, heartbeats fail and leases run out;
when the database returns, some other worker may rescue and re-run those jobs while the
original still runs them. Delivery is at-least-once; tasks must be idempotent. The only
guarantee lost is "once": a lost job never is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from uuid import UUID

import psycopg

from ..clock import Clock
from ..db.database import Database, WorkerRow
from ..db.errors import describe
from ..jobs import Held

log = logging.getLogger("conveyor.worker")


class LeaseKeeper:
    """The worker's heartbeat: keeps the worker row fresh (writing it again if the upkeep forgot
    it after a long silence) and long jobs' leases alive."""

    def __init__(
        self,
        db: Database,
        worker_id: UUID,
        clock: Clock,
        *,
        lease: float,
        running: Callable[[], Sequence[tuple[Held, float]]],
        on_lost: Callable[[Held], None],
        writing: Callable[[], frozenset[Held]] = frozenset,
        on_abort: Callable[[Held], None] | None = None,
    ) -> None:
        self._db = db
        self._worker_id = worker_id
        self._clock = clock
        self._lease = timedelta(seconds=lease)
        self.interval = lease / 3
        self._running = running
        self._writing = writing
        self._on_lost = on_lost
        self._on_abort = on_abort
        self._row: WorkerRow | None = None

    def registered(self, row: WorkerRow) -> None:
        """The worker's row as it registered: heartbeats touch it, and write it again if it went."""
        self._row = row

    async def run(self) -> None:
        """Extend leases and refresh the worker row, each on its own beat: a write that waits
        (the workers row locked by someone's long transaction) must not hold the other up.
        Leases come first: losing them gets running jobs run twice; a stale worker row only
        shows the worker as silent."""
        await asyncio.gather(
            self._every_interval(self.extend, "extending leases"),
            self._every_interval(self.touch_worker, "heartbeat"),
        )

    async def _every_interval(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await _logged(step, what)

    async def beat(self) -> None:
        """One heartbeat now: leases first, then the worker row; a failure of one does not
        skip the other."""
        await _logged(self.extend, "extending leases")
        await _logged(self.touch_worker, "heartbeat")

    async def touch_worker(self) -> None:
        if self._row is None:
            return  # not registered yet: nothing to touch
        if await self._db.heartbeat_worker(self._row, now=self._clock.now()):
            log.warning(
                "worker %s: its row was gone (forgotten after a long silence); written again",
                self._worker_id,
                extra={"event": "worker_row_restored", "worker_id": str(self._worker_id)},
            )

    async def extend(self) -> None:
        cutoff = time.monotonic() - self.interval
        due = [held for held, started in self._running() if started <= cutoff]
        if not due:
            return
        writing = self._writing()
        if writing:
            # Their write may hold their rows: extended in a statement of their own that skips
            # locked rows, so that waiting behind the write fails none of the others.
            in_flight = [held for held in due if held in writing]
            due = [held for held in due if held not in writing]
            await self._db.extend_leases(
                in_flight,
                worker_id=self._worker_id,
                lease=self._lease,
                now=self._clock.now(),
                unless_locked=True,
            )
        if not due:
            return
        extended = await self._db.extend_leases(
            due, worker_id=self._worker_id, lease=self._lease, now=self._clock.now()
        )
        for held in due:
            if held.id not in extended.kept:
                self._on_lost(held)
            elif held.id in extended.aborted and self._on_abort is not None:
                self._on_abort(held)

    async def extend_these(self, held: Sequence[Held]) -> None:
        """Push back the leases of ``held`` now, whenever they were claimed: for the completer,
        right after a write of their outcomes failed, when its transaction has rolled back and
        their rows are free (while the write ran, the heartbeat skipped them if it had locked
        them). Rows still locked are skipped here too: a write dropped at its client-side
        deadline may run on the server a moment longer. A job no longer held changes nothing
        (the write is fenced anyway). Never raises: a failure is logged."""
        await _logged(
            lambda: self._db.extend_leases(
                held, worker_id=self._worker_id, lease=self._lease, now=self._clock.now(), unless_locked=True
            ),
            "extending the leases of outcomes waiting to be written",
        )


async def _logged(step: Callable[[], Awaitable[object]], what: str) -> None:
    try:
        await step()
    except psycopg.Error as exc:
        log.warning(
            "%s failed: %s",
            what,
            describe(exc),
            extra={"event": "heartbeat_error", "error": str(exc), "sqlstate": exc.sqlstate},
        )
    except Exception:
        log.exception("%s failed", what)
