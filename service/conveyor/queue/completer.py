"""Recording outcomes in batches.

Outcomes are buffered and written by one loop: while a write is in flight the next batch
gathers, so an idle worker records a job at once and a busy one records hundreds per
statement. A write is one transaction (completions, retries, burials and the follow-up
jobs of completed ones). Writes are fenced, so an outcome for a job this worker no longer
holds changes nothing; it is logged and dropped.

Every outcome leaves the completer through ``on_settled`` (written, fenced out, or given up),
and only then does the worker stop extending its job's lease: a finished job whose write
waits (a lock on job_history, a pool timeout, this loop's retry backoff) stays leased, so no
rescue runs it again or buries it as "lease expired". A write that runs past the statement
timeout is not a refusal: a batch is split in halves, a single outcome is retried with
backoff (see docs/workers.md for a fan-out too large for any timeout). If the database is
unreachable the batch is kept and retried with backoff; the heartbeat fails too then, and if the outage
outlasts the leases the jobs are rescued and run again (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from psycopg_pool import PoolClosed

from ..clock import Clock
from ..db.database import Database
from ..db.errors import is_timeout, is_transient
from ..db.steps import Flow
from ..jobs import Outcomes, Recorded
from .bulk import Batch, enqueue_many
from .enqueue import PreparedJob
from .executor import Aborted, Bury, Completed, Outcome, Retry, error_entry
from .flows import ChildBatch, write_child_batch
from .reports import WorkerStats, job_fields

log = logging.getLogger("conveyor.worker")

# Called once for every submitted outcome, in batches: with what the database recorded, or
# None when the outcome was given up (refused, or the pool closed).
Settled = Callable[[Sequence[Outcome], Recorded | None], None]


def _ignore(batch: Sequence[Outcome], recorded: Recorded | None) -> None:
    pass


class Completer:
    def __init__(
        self,
        db: Database,
        worker_id: UUID,
        clock: Clock,
        *,
        max_batch: int = 1000,
        on_settled: Settled = _ignore,
        stats: WorkerStats | None = None,
    ) -> None:
        self._db = db
        self._worker_id = worker_id
        self._clock = clock
        self._max_batch = max_batch
        self._on_settled = on_settled
        self._buffer: list[Outcome] = []
        self._in_flight = 0  # outcomes taken from the buffer and not yet settled
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.recorded = 0
        self.stats = stats if stats is not None else WorkerStats()

    @property
    def pending(self) -> int:
        """Outcomes submitted and not yet settled, the batch being written included."""
        return len(self._buffer) + self._in_flight

    def submit(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._idle.clear()
        self._ready.set()

    async def run(self) -> None:
        """Write outcomes as they come, until cancelled."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._buffer:
                batch = self._buffer[: self._max_batch]
                del self._buffer[: self._max_batch]
                self._in_flight = len(batch)
                try:
                    await self._write_with_retry(batch)
                finally:
                    self._in_flight = 0
            if not self._buffer:
                self._idle.set()

    async def drain(self, within: float | None = None) -> bool:
        """Wait until everything submitted so far is written; False if ``within`` ran out."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _settle(self, batch: Sequence[Outcome], recorded: Recorded | None) -> None:
        try:
            self._on_settled(batch, recorded)
        except Exception:  # the loop that records outcomes must survive its listener
            log.exception("handling %d recorded outcomes failed", len(batch))

    async def _write_with_retry(self, batch: list[Outcome]) -> None:
        delay = 0.05
        while True:
            try:
                recorded = await self._write(batch)
            except PoolClosed:
                log.error("the worker's pool is closed: %d outcomes not recorded", len(batch))
                self._settle(batch, None)
                return
            except Exception as exc:
                self.stats.write_errors += 1
                timed_out = is_timeout(exc)
                if timed_out and len(batch) > 1:
                    # Too much for one statement: each half gets the whole timeout.
                    log.warning(
                        "recording %d outcomes ran out of time (%s); writing them in halves",
                        len(batch),
                        exc,
                        extra={"event": "write_error", "jobs": len(batch), "error": str(exc)},
                    )
                    half = len(batch) // 2
                    await self._write_with_retry(batch[:half])
                    await self._write_with_retry(batch[half:])
                    return
                if timed_out or is_transient(exc):
                    # The jobs stay leased meanwhile (they are not settled): a completed job
                    # is never rescued, let alone buried, because its write was slow.
                    log.warning(
                        "recording %d outcomes failed (%s); retrying in %.1fs",
                        len(batch),
                        exc,
                        delay,
                        extra={"event": "write_error", "jobs": len(batch), "error": str(exc)},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if len(batch) > 1:
                    # One refused outcome must not sink the others: write them one by one.
                    for outcome in batch:
                        await self._write_with_retry([outcome])
                    return
                await self._refused(batch[0], exc)
                return
            self._settle(batch, recorded)
            return

    async def _refused(self, outcome: Outcome, exc: Exception) -> None:
        """The database refused this outcome for good. A completion refused because of its
        follow-up jobs becomes a burial carrying the reason, so that the job is not run again
        on a lease expiry with the real error lost in a log."""
        job = outcome.job
        if isinstance(outcome, Completed) and outcome.children:
            reason = (
                f"the task completed but its follow-up jobs were refused: {exc}; "
                "fix them, then retry this job from the dead-letter queue"
            )
            entry = error_entry(job, self._worker_id, self._clock, reason)
            await self._write_with_retry([Bury(job, entry, reason)])
            return
        log.error(
            "could not record the outcome of job %d (%s); its lease is left to run out and it will be rescued",
            job.id,
            exc,
            extra={**job_fields(job), "event": "write_refused", "error": str(exc)},
        )
        self._settle([outcome], None)

    async def _write(self, batch: Sequence[Outcome]) -> Recorded:
        completed: list[tuple[int, int, str | None]] = []
        retried: list[tuple[int, int, float, str]] = []
        buried: list[tuple[int, int, str]] = []
        aborted: list[tuple[int, int]] = []
        children: dict[int, Completed] = {}
        for outcome in batch:
            job = outcome.job
            if isinstance(outcome, Completed):
                completed.append((job.id, job.claim, outcome.result_json))
                if outcome.children or outcome.batches:
                    children[job.id] = outcome
            elif isinstance(outcome, Retry):
                retried.append((job.id, job.claim, outcome.delay, outcome.error_json))
            elif isinstance(outcome, Bury):
                buried.append((job.id, job.claim, outcome.error_json))
            elif isinstance(outcome, Aborted):
                aborted.append((job.id, job.claim))

        def follow_ups(done: frozenset[int]) -> Flow[Any] | None:
            parents = sorted(done & children.keys())
            jobs = [child for job_id in parents for child in children[job_id].children]
            groups = [group for job_id in parents for group in children[job_id].batches]
            if not jobs and not groups:
                return None
            return self._follow_ups(jobs, groups)

        recorded = await self._db.record_outcomes(
            Outcomes(completed, retried, buried, aborted),
            worker_id=self._worker_id,
            now=self._clock.now(),
            children=follow_ups if children else None,
        )
        self.recorded += (
            len(recorded.completed) + len(recorded.retried) + len(recorded.buried) + len(recorded.aborted)
        )
        _log_fenced(batch, recorded)
        return recorded

    def _follow_ups(self, jobs: list[PreparedJob], groups: list[ChildBatch]) -> Flow[None]:
        """Completed jobs' follow-up jobs, then their batches (see ``queue.flows``)."""
        queries, now = self._db.queries, self._clock.now()
        if jobs:
            yield from enqueue_many(
                Batch.of(jobs), channel=queries.channel, jobs_table=queries.jobs_table, now=now
            )
        for group in groups:
            yield from write_child_batch(
                group, channel=queries.channel, jobs_table=queries.jobs_table, now=now
            )


def _log_fenced(batch: Sequence[Outcome], recorded: Recorded) -> None:
    written = recorded.completed | recorded.retried | recorded.buried | recorded.aborted
    for outcome in batch:
        if outcome.job.id not in written:
            kind = type(outcome).__name__.lower()
            log.warning(
                "job %d attempt %d: its %s was not recorded: this worker no longer holds the job "
                "(its lease expired and it was rescued, or this outcome was already written)",
                outcome.job.id,
                outcome.job.attempt,
                kind,
                extra={**job_fields(outcome.job), "event": "fenced", "outcome": kind},
            )
