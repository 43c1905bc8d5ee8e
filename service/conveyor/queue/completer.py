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

A write refused for want of resources (53xxx: a full disk, memory) is retried too, the jobs
kept leased, since the server usually recovers. But it may be one outcome's own data (a result
too large for what the server has left), refused every time: so a refused batch is written
again one outcome at a time, and an outcome still refused after a few tries while others wait
is set aside until they are written. Set aside and refused again after another write went
through, it is this outcome's own refusal: given up (logged; its lease runs out and the job is
run again). Nothing set aside or retried holds up the outcomes behind it for more than those
few tries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import PoolClosed

from ..clock import Clock
from ..db.database import Database
from ..db.errors import describe, is_short_of_resources, is_timeout, is_transient
from ..db.steps import Flow
from ..jobs import Held, Outcomes, Recorded
from .bulk import Batch, enqueue_many
from .enqueue import PreparedJob
from .executor import Aborted, Bury, Completed, Outcome, Retry, error_entry
from .flows import ChildBatch, write_child_batch
from .reports import WorkerStats, job_fields

log = logging.getLogger("conveyor.worker")

# Tries at a single outcome refused for want of resources before it is set aside, when other
# outcomes wait behind it (about a third of a second of backoff).
RESOURCE_TRIES = 3

# Called once for every submitted outcome, in batches: with what the database recorded, or
# None when the outcome was given up (refused, or the pool closed).
Settled = Callable[[Sequence[Outcome], Recorded | None], None]


# Extends the leases of these claims now (LeaseKeeper.extend_these); never raises.
KeepLeased = Callable[[Sequence[Held]], Awaitable[None]]


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
        keep_leased: KeepLeased | None = None,
    ) -> None:
        """``keep_leased``: extends the leases of a batch's jobs, called between two attempts
        at writing it (see ``queue.leases``, invariant 3)."""
        self._db = db
        self._worker_id = worker_id
        self._clock = clock
        self._max_batch = max_batch
        self._on_settled = on_settled
        self._buffer: list[Outcome] = []
        # Outcomes refused for want of resources and set aside while the others are written,
        # each with the count of writes that had gone through when it was set aside.
        self._set_aside: list[tuple[Outcome, int]] = []
        self._one_at_a_time = 0  # how many of the next outcomes to write alone
        self._writes = 0  # writes that went through
        self._in_flight = 0  # outcomes taken from the buffer and not yet settled
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.recorded = 0
        self.stats = stats if stats is not None else WorkerStats()
        self._keep_leased = keep_leased
        self._in_write: Sequence[Outcome] = ()  # the batch of the statement in flight

    @property
    def writing(self) -> frozenset[Held]:
        """The claims of the statement in flight (made when asked: the heartbeat asks once a
        round, while every batch would pay for making them on each write)."""
        return frozenset(Held.of(outcome.job) for outcome in self._in_write)

    @property
    def pending(self) -> int:
        """Outcomes submitted and not yet settled, the batch being written included."""
        return len(self._buffer) + len(self._set_aside) + self._in_flight

    def submit(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._idle.clear()
        self._ready.set()

    async def run(self) -> None:
        """Write outcomes as they come, until cancelled."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._buffer or self._set_aside:
                if not self._buffer:
                    await self._retry_set_aside()
                    continue
                size = 1 if self._one_at_a_time else self._max_batch
                self._one_at_a_time = max(0, self._one_at_a_time - 1)
                batch = self._buffer[:size]
                del self._buffer[:size]
                self._in_flight = len(batch)
                try:
                    await self._write_with_retry(batch)
                finally:
                    self._in_flight = 0
            self._idle.set()

    async def _retry_set_aside(self) -> None:
        """Each outcome set aside, once more, now that those behind it had their turn."""
        waiting, self._set_aside = self._set_aside, []
        for outcome, writes_then in waiting:
            self._in_flight = 1
            try:
                recorded = await self._write_marked([outcome])
            except Exception as exc:
                if not is_short_of_resources(exc) or self._writes == writes_then:
                    # Not that refusal, or nothing went through since (the server's state):
                    # back in line, retried as usual.
                    self._buffer.append(outcome)
                    self._one_at_a_time += 1
                    continue
                self.stats.write_errors += 1
                await self._refused(outcome, exc)
            else:
                self._writes += 1
                self._settle([outcome], recorded)
            finally:
                self._in_flight = 0

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
        tries = 0
        while True:
            tries += 1
            try:
                recorded = await self._write_marked(batch)
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
                        describe(exc),
                        extra=_write_error(batch, exc),
                    )
                    await self._keep_leased_after_failure(batch)
                    half = len(batch) // 2
                    await self._write_with_retry(batch[:half])
                    await self._write_with_retry(batch[half:])
                    return
                if is_short_of_resources(exc) and len(batch) > 1:
                    # The server's state, or one outcome's data: the batch goes back in line,
                    # to be written one outcome at a time.
                    log.warning(
                        "recording %d outcomes was refused (%s); writing them one at a time",
                        len(batch),
                        describe(exc),
                        extra=_write_error(batch, exc),
                    )
                    await self._keep_leased_after_failure(batch)
                    self._buffer[:0] = batch
                    self._one_at_a_time += len(batch)
                    return
                if is_short_of_resources(exc) and tries >= RESOURCE_TRIES and self._buffer:
                    # Others wait: they go first, and tell whether the refusal is this one's own.
                    log.warning(
                        "recording the outcome of job %d was refused %d times (%s); "
                        "set aside while the outcomes behind it are written",
                        batch[0].job.id,
                        tries,
                        describe(exc),
                        extra=_write_error(batch, exc),
                    )
                    await self._keep_leased_after_failure(batch)
                    self._set_aside.append((batch[0], self._writes))
                    return
                if timed_out or is_transient(exc):
                    # The jobs stay leased meanwhile (they are not settled): a completed job
                    # is never rescued, let alone buried, because its write was slow.
                    log.warning(
                        "recording %d outcomes failed (%s); the jobs stay leased, retrying in %.1fs",
                        len(batch),
                        describe(exc),
                        delay,
                        extra={**_write_error(batch, exc), "retry_in": delay},
                    )
                    await self._keep_leased_after_failure(batch)
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
            self._writes += 1
            self._settle(batch, recorded)
            return

    async def _write_marked(self, batch: Sequence[Outcome]) -> Recorded:
        """:meth:`_write`, with ``writing`` naming its claims while it is in flight (the
        heartbeat extends them in a statement that skips the rows the write has locked)."""
        self._in_write = batch
        try:
            return await self._write(batch)
        finally:
            self._in_write = ()

    async def _keep_leased_after_failure(self, batch: Sequence[Outcome]) -> None:
        """Right after a failed write, when its rows are free again: extend the leases the
        heartbeat could not while the write was in flight (its backoff is the heartbeat's)."""
        if self._keep_leased is not None:
            await self._keep_leased([Held.of(outcome.job) for outcome in batch])

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
            describe(exc),
            extra={
                **job_fields(job),
                "event": "write_refused",
                "error": str(exc),
                "sqlstate": _sqlstate(exc),
            },
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


def _sqlstate(exc: BaseException) -> str | None:
    return exc.sqlstate if isinstance(exc, psycopg.Error) else None


def _write_error(batch: Sequence[Outcome], exc: BaseException) -> dict[str, Any]:
    """The fields of a failed write's log record: what failed, on which jobs, and why (the
    SQLSTATE for machines; the message's reason is one line for people)."""
    return {
        "event": "write_error",
        "jobs": len(batch),
        "job_ids": [outcome.job.id for outcome in batch[:20]],
        "error": str(exc),
        "sqlstate": _sqlstate(exc),
    }


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
