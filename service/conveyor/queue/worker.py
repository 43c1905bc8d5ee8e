"""The worker: claim jobs, run them, record what happened.

One job's path is a pipeline: the fetch loop *claims* as many jobs as there are free
slots in one statement, the executor *runs* each one and its slot is freed, the completer
*records* outcomes in batches (*ack*). A job's lease is kept by the heartbeat from its claim
until its outcome is written, not just while it runs: a write that waits must not let a
rescue run the job again. Beside it run the lease keeper (heartbeats), the
maintenance loop (promote due jobs, rescue expired leases) and the notifier (LISTEN).

Stopping: :meth:`Worker.stop` stops claiming, lets running jobs finish for up to
``grace`` seconds, then cancels what is left and hands those jobs back to the queue
without counting the attempt (for a job's first 5 hand-backs), records every outcome and
returns. A sync task still in its
thread cannot be stopped: its job is not handed back (that would guarantee a second run
alongside it) but left to its lease, which runs out once this worker is gone; that attempt
counts. Cancelling :meth:`Worker.run` stops the worker the same way with no grace period.
Every step of stopping is bounded in time.

Aborts (docs/job-control.md): an abort reaches the worker holding the job as a notification
on "<schema>.control" ('abort <id>', checked against the job's row), or with the next
heartbeat that extends the job's lease when the notification was lost. The worker marks the execution aborted (``ctx.aborted``) and
cancels it when its task is async; the executor judges the attempt (``Aborted``: the job ends
as cancelled) and the completer records it, fenced like every outcome.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from ..clock import Clock, DatabaseClock
from ..db.connections import pool
from ..db.database import Database
from ..db.errors import is_transient
from ..errors import ConfigurationError
from ..jobs import ClaimedJob, Cursors, Held, JobFailure, Outcomes, Recorded
from ..settings import Settings
from ..tasks import DEFAULT_QUEUE, Registry, check_queue_name, default_registry
from .completer import Completer
from .cursors import ClaimCursors
from .executor import Bury, Executor, Outcome, Retry, describe
from .leases import LeaseKeeper
from .limits import LimitedQueues
from .maintenance import Maintenance
from .notifier import Notifier
from .progress import ProgressWriter
from .reports import Hook, Reporter, WorkerStats, job_fields
from .stopping import cancel_and_wait

log = logging.getLogger("conveyor.worker")

JOB_THREAD_PREFIX = "conveyor-job"

# How long a stopping worker keeps trying to write outcomes and hand jobs back, and how long
# it waits for cancelled jobs to end.
SHUTDOWN_WRITE_TIMEOUT = 10.0
CANCEL_TIMEOUT = 5.0
# The notification set_queue_limits sends: read which queues are limited again.
LIMITS_CHANGED = "#limits"
# How soon a claim that failed on a connection is tried again (on a new connection).
CLAIM_RETRY = 0.1
# An abort notification for a job this worker does not run (yet: its claim may be in flight)
# is kept this long, for the claim that returns it.
PENDING_ABORT_SECONDS = 10.0

# The errors the database records for these (sql/queries), as logs and hooks report them.
LEASE_EXPIRED = "lease expired: the worker stopped sending heartbeats (killed, crashed or hung)"
HANDED_BACK_TOO_OFTEN = (
    "interrupted: the worker shut down before the job finished, on its last attempt, after 5 hand-backs"
)


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker runs. Times are in seconds."""

    queues: Sequence[str] | None = None  # None: every queue its tasks declare, and "default"
    concurrency: int = 10
    lease: float = 30.0
    poll_interval: float = 1.0
    grace: float = 25.0
    fetch_cooldown: float = 0.002
    stage_interval: float = 1.0
    max_batch: int = 1000

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if self.lease < 1:
            raise ConfigurationError("lease must be at least 1 second")
        if not (self.grace >= 0 and self.fetch_cooldown >= 0):
            raise ConfigurationError("grace and fetch_cooldown must not be negative")
        if not (self.poll_interval > 0 and self.stage_interval > 0):
            raise ConfigurationError("poll_interval and stage_interval must be positive")
        if self.max_batch < 1:
            raise ConfigurationError("max_batch must be at least 1")
        if isinstance(self.queues, str):  # would serve one queue per character
            raise ConfigurationError(
                f"queues must be a list of queue names: [{self.queues!r}], not {self.queues!r}"
            )
        for queue in self.queues or ():
            check_queue_name(queue)


@dataclass(slots=True)
class _Running:
    job: ClaimedJob
    task: asyncio.Task[None]
    started: float


class Worker:
    def __init__(
        self,
        database_url: str | None = None,
        *,
        schema: str | None = None,
        registry: Registry | None = None,
        config: WorkerConfig | None = None,
        clock: Clock | None = None,
        on_failure: Hook | None = None,
        on_dead: Hook | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> None:
        """``on_failure(job, failure)`` is called for every failed attempt this worker records
        or rescues, ``on_dead(job, failure)`` for every job it moves to the dead-letter table
        (see queue.reports), ``on_start(job_id)`` as each claimed job starts (conveyor.testing
        collects what a drain ran with it)."""
        settings = Settings.from_env(database_url, schema)
        if settings.database_url is None:
            raise ConfigurationError("no database: set DATABASE_URL or pass database_url")
        self.config = config or WorkerConfig()
        _check_lease(self.config.lease, settings.timeouts.lock)
        self.registry = registry if registry is not None else default_registry
        if not len(self.registry) and self.config.queues is None:
            # It would serve "default" and send every job there to the dead-letter table as an
            # unknown task. Naming the queues (say, for built-in view refreshes) is a choice.
            raise ConfigurationError(
                "no tasks are registered: import your task modules (--tasks), or name the queues "
                "this worker serves (--queues)"
            )
        self.clock: Clock = clock or DatabaseClock()
        self.id: UUID = uuid4()
        self.queues = list(self.config.queues or sorted(self.registry.queues() | {DEFAULT_QUEUE}))
        # Six loops share the pool (claim, completer, maintenance, the lease keeper's two: leases
        # and the worker row, progress), plus one spare.
        self.db = Database(
            settings.database_url,
            settings.schema,
            min_size=2,
            max_size=7,
            generic_plans=True,
            timeouts=settings.timeouts,
        )
        # Tasks borrow connections (ctx.connection()) from a pool of their own: a slow one (a
        # view refresh) must never keep the heartbeat or the acks from a connection.
        self._task_pool = pool(
            settings.database_url, min_size=0, max_size=self.config.concurrency, name="conveyor-tasks"
        )
        self._threads = ThreadPoolExecutor(
            max_workers=self.config.concurrency, thread_name_prefix=JOB_THREAD_PREFIX
        )
        # Keyed by claim, not id: this worker may claim a job again (its lease lapsed, or a
        # timed-out sync task's retry came due) while an older execution of it still runs.
        self._running: dict[Held, _Running] = {}
        # Finished executions whose outcomes the completer has not settled, with when they
        # started: their leases are kept alive until then (see completer).
        self._unwritten: dict[Held, float] = {}
        # Executions whose lost lease was logged: once each, not on every heartbeat.
        self._lost: set[Held] = set()
        # Executions whose abort was asked for, until judged (the executor and ctx.aborted read
        # it); and abort notifications for jobs not (yet) running here, by id, with when.
        self._aborted: set[Held] = set()
        self._pending_aborts: dict[int, float] = {}
        self._checks: set[asyncio.Task[None]] = set()  # abort notifications being checked
        self._signal = asyncio.Event()  # something changed: re-check what to do
        self._woken = False  # a notification or wake() since the last claim
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self.started = asyncio.Event()
        self.stats = WorkerStats()
        self._reports = Reporter(self.stats, on_failure=on_failure, on_dead=on_dead)
        self._on_start = on_start
        self.completer = Completer(
            self.db,
            self.id,
            self.clock,
            max_batch=self.config.max_batch,
            on_settled=self._on_settled,
            stats=self.stats,
            keep_leased=lambda held: self._leases.extend_these(held),
        )
        self.maintenance = Maintenance(
            self.db,
            self.clock,
            stage_interval=self.config.stage_interval,
            rescue_interval=max(0.5, min(5.0, self.config.lease / 2)),
            on_rescued=self._on_rescued,
        )
        self.notifier = Notifier(
            settings.listen_url or settings.database_url,
            self.db.queries,
            self._on_notify,
            on_connect=self.wake,
            on_control=self._on_control,
            timeouts=settings.timeouts,
        )
        self._progress = ProgressWriter(self.db, self.id)
        self._executor = Executor(
            self.registry,
            self._threads,
            self.id,
            self.clock,
            self._progress.sink,
            connection=self._task_pool.connection,
            schema=self.db.schema,
            aborted=self._aborted,
        )
        self._leases = LeaseKeeper(
            self.db,
            self.id,
            self.clock,
            lease=self.config.lease,
            running=self._held_with_start,
            writing=lambda: self.completer.writing,
            on_lost=self._on_lease_lost,
            on_abort=self._abort,
        )
        self._lease = timedelta(seconds=self.config.lease)
        self._queue_set = set(self.queues)
        # A claim takes at most half the slots of a large worker: the jobs of one claim then
        # run while the next claim waits on the database, instead of the two taking turns
        # (bench/RESULTS.md, "Why the code is shaped so").
        self._claim_batch = max(50, self.config.concurrency // 2)
        self._cursors = ClaimCursors()
        self._limits = LimitedQueues(self.queues, self.config.poll_interval)
        self._limited_first = False  # which side of a shared claim goes first, in turn
        self.claimed = 0
        self.claim_rounds = 0

    # -- control -----------------------------------------------------------------------

    def wake(self) -> None:
        """Claim (from the start of the queues) and run housekeeping now, instead of waiting
        for a notification or a poll."""
        self._woken = True
        self._cursors.rescan()
        self._signal.set()
        self.maintenance.poke()

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming; finish running jobs within the grace period (none if ``force``)."""
        if force:
            self._force.set()
        self._stopping.set()
        self._signal.set()

    @property
    def running_jobs(self) -> list[int]:
        return [held.id for held in self._running]

    @property
    def idle(self) -> bool:
        """No job runs here and every outcome is recorded."""
        return not self._running and not self._unwritten and not self.completer.pending

    @property
    def busy_threads(self) -> int:
        """Sync tasks still running in threads (past a timeout, or abandoned at shutdown)."""
        return self._executor.busy_threads

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop` is called (or this is cancelled), then shut down."""
        await self.db.open()
        await self._task_pool.open()
        helpers: list[asyncio.Task[Any]] = []
        try:
            await self._register()
            helpers = [
                asyncio.create_task(self.completer.run(), name="conveyor-completer"),
                asyncio.create_task(self.notifier.run(), name="conveyor-notifier"),
                asyncio.create_task(self.maintenance.run(), name="conveyor-maintenance"),
                asyncio.create_task(self._leases.run(), name="conveyor-heartbeat"),
                asyncio.create_task(self._progress.run(), name="conveyor-progress"),
            ]
            log.info(
                "worker %s serving %s with concurrency %d",
                self.id,
                ", ".join(self.queues),
                self.config.concurrency,
            )
            self.started.set()
            try:
                await self._fetch_loop()
            except asyncio.CancelledError:
                self.stop(force=True)
                await self._wind_down()
                raise
            await self._wind_down()
        finally:
            await cancel_and_wait([*helpers, *self._checks])
            try:
                async with asyncio.timeout(SHUTDOWN_WRITE_TIMEOUT):
                    await self.db.unregister_worker(self.id)
            except Exception as exc:
                log.warning("could not unregister worker %s: %s", self.id, exc)
            finally:
                await self.db.close()
                await self._task_pool.close()
                self._threads.shutdown(wait=False, cancel_futures=True)

    async def _register(self) -> None:
        await self.db.create_queues(self.queues)
        for name, limits in self.registry.queue_limits().items():
            # The code's declaration wins at start (docs/limits.md); notifies the workers.
            await self.db.set_queue_limits(name, limits)
        await self.db.sync_tasks(
            [(t.name, t.queue, t.priority, t.max_attempts, t.timeout) for t in self.registry.with_builtins()]
        )
        row = await self.db.register_worker(
            worker_id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.config.concurrency,
            now=self.clock.now(),
        )
        self._leases.registered(row)
        try:
            await self.db.ensure_history_partitions(now=self.clock.now())
        except Exception as exc:  # the default partition takes any row meanwhile
            log.warning("history partitions not made ahead now (%s); maintenance will retry", exc)

    # -- claim -------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        config = self.config
        more_waiting = True  # at start, assume there is work
        last_claim = 0.0
        # After a short claim from the cursors: when to look again from the start (jobs may
        # sit behind the cursors), whatever wakes the loop in between.
        look_again_at: float | None = None
        while not self._stopping.is_set():
            free = config.concurrency - len(self._running)
            backlogged = self.completer.pending >= 10 * config.concurrency
            reopened = self._limits.next_due()
            reopened_now = reopened is not None and reopened <= time.monotonic()
            if free > 0 and not backlogged and (more_waiting or self._woken or reopened_now):
                cooldown = last_claim + config.fetch_cooldown - time.monotonic()
                if cooldown > 0:
                    await asyncio.sleep(cooldown)
                    free = config.concurrency - len(self._running)
                self._woken = False
                last_claim = time.monotonic()
                want = min(free, self._claim_batch)
                after = self._cursors.for_next_claim()
                jobs = await self._claim(want, after)
                if jobs is None:  # failed, and waited a poll interval: try again
                    continue
                self._cursors.claimed(jobs, full_scan=not after, started=last_claim)
                more_waiting = len(jobs) == want
                look_again_at = None
                if not more_waiting and after:
                    look_again_at = time.monotonic() + max(0.0, self._cursors.full_scan_due_in())
                started = time.monotonic()
                for job in jobs:
                    self._start(job, started)
                if more_waiting:
                    continue
            # Nothing to do until a notification, a freed slot, stop, the poll interval, or a
            # look from the start.
            wait = config.poll_interval
            if look_again_at is not None and free > 0 and not backlogged:
                wait = max(0.0, min(wait, look_again_at - time.monotonic()))
            # A limited queue's rate window reopens: claim at that instant (queue.limits).
            reopens = self._limits.next_due()
            if reopens is not None and free > 0 and not backlogged:
                wait = max(0.0, min(wait, reopens - time.monotonic()))
            # A stop or a notification that came while the claim was in flight set the signal
            # this clear would lose: the stop until the next poll, the notification's job (if
            # it committed after the claim's snapshot) likewise.
            if self._stopping.is_set():
                break
            if self._woken and free > 0 and not backlogged:
                continue
            self._signal.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._signal.wait()
            except TimeoutError:
                more_waiting = True  # poll: notifications are hints, not promises
                look_again_at = None

    async def _claim(self, free: int, after: Cursors) -> list[ClaimedJob] | None:
        jobs: list[ClaimedJob] = []
        try:
            limits = self._limits
            if limits.stale(time.monotonic()):
                limits.update(await self.db.limited_queues(self.queues), time.monotonic())
            due = limits.due(time.monotonic())
            plain = limits.plain()
            if not due:
                if plain:  # the common case: no limited queue to ask, one plain claim
                    jobs.extend(await self._claim_plain(plain, free, after))
            elif not plain:
                await self._claim_limited(due, free, after, jobs)
            else:
                # Both kinds have a say (queue.limits, 6): the side that goes first, in turn,
                # may take half the slots; the other side takes what is left.
                self._limited_first = not self._limited_first
                share = (free + 1) // 2
                if self._limited_first:
                    await self._claim_limited(due, share, after, jobs)
                    first = len(jobs)
                    if len(jobs) < free:
                        jobs.extend(await self._claim_plain(plain, free - len(jobs), after))
                else:
                    jobs.extend(await self._claim_plain(plain, share, after))
                    first = len(jobs)
                    if len(jobs) < free:
                        await self._claim_limited(due, free, after, jobs)
                if first == share < free and len(jobs) < free:
                    self._woken = True  # the first side filled its half and may have more
        except Exception as exc:
            log.warning("claim failed: %s", exc)
            if jobs:  # claimed by an earlier statement: they are ours, run them
                self._woken = True
                self.claimed += len(jobs)
                self.claim_rounds += 1
                return jobs
            # A connection that failed is replaced, so a claim that failed on one is tried
            # again soon, not a poll interval later; and at once when woken (LISTEN set up
            # again after an outage), so work resumes as soon as the database is back.
            retry_in = (
                min(CLAIM_RETRY, self.config.poll_interval)
                if is_transient(exc)
                else self.config.poll_interval
            )
            if not self._woken:
                self._signal.clear()
                await _first_of([self._stopping.wait(), self._signal.wait()], within=retry_in)
            self._woken = True  # claim again, whatever the last claim found
            return None
        self.claimed += len(jobs)
        self.claim_rounds += 1
        return jobs

    async def _claim_limited(self, due: list[str], cap: int, after: Cursors, jobs: list[ClaimedJob]) -> None:
        """Claim from the due limited queues, one statement each (queue.limits), until
        ``jobs`` holds ``cap`` jobs; appends to ``jobs`` as it goes (what an earlier statement
        claimed is ours even if a later one fails)."""
        limits = self._limits
        for queue in due:
            if len(jobs) >= cap:
                break
            limits.asking(queue)
            try:
                taken, held = await self.db.claim_limited(
                    worker_id=self.id,
                    queue=queue,
                    limit=cap - len(jobs),
                    lease=self._lease,
                    now=self.clock.now(),
                    after=after,
                )
            except Exception as exc:
                if is_transient(exc):
                    raise  # the connection: the whole claim is tried again
                # This queue's claim cannot run (say, limits the database cannot compute
                # with): it must not stop the worker's other queues (queue.limits, 5).
                self._limited_claim_failed(queue, exc)
                continue
            jobs.extend(taken)
            if held is None:
                limits.claimed(queue)
            else:
                limits.held_back(held, time.monotonic())
                self.stats.limited_claims += 1

    async def _claim_plain(self, plain: list[str], want: int, after: Cursors) -> list[ClaimedJob]:
        return await self.db.claim_jobs(
            worker_id=self.id,
            queues=plain,
            limits=[want] * len(plain),
            limit=want,
            lease=self._lease,
            now=self.clock.now(),
            after=after,
        )

    def _limited_claim_failed(self, queue: str, exc: Exception) -> None:
        self.stats.limited_claim_errors += 1
        self._limits.failed(queue, time.monotonic())
        error = (str(exc).splitlines() or [type(exc).__name__])[0]  # without PostgreSQL's context lines
        log.warning(
            "claiming limited queue %r failed (%s); its other queues are claimed as usual, this one "
            "again in %gs",
            queue,
            error,
            self.config.poll_interval,
            extra={"event": "limited_claim_failed", "queue": queue, "error": error},
        )

    def _start(self, job: ClaimedJob, now: float) -> None:
        held = Held(job.id, job.claim)
        # Unnamed: naming a task costs more than the rest of creating it; its coroutine's
        # arguments (held) say which job it runs.
        task = asyncio.create_task(self._run_job(held, job))
        self._running[held] = _Running(job, task, now)
        if self._on_start is not None:
            self._on_start(job.id)
        if self._pending_aborts and self._pending_aborts.pop(job.id, None) is not None:
            self._confirm_aborts([held])

    async def _run_job(self, held: Held, job: ClaimedJob) -> None:
        try:
            try:
                outcome = await self._executor.execute(job)
            except Exception as exc:  # a bug here must not leave the job to its lease
                log.exception(
                    "job %d attempt %d: judging its outcome failed; recorded as a failed attempt",
                    job.id,
                    job.attempt,
                    extra={**job_fields(job), "event": "executor_error", "error": describe(exc)},
                )
                outcome = self._executor.crashed(job, exc)
            # The slot frees now; the lease is kept until the outcome is written.
            self._unwritten[held] = self._running[held].started
            self.completer.submit(outcome)
        finally:
            self._running.pop(held, None)
            self._lost.discard(held)
            self._aborted.discard(held)
            self._signal.set()

    # -- stop --------------------------------------------------------------------------

    async def _wind_down(self) -> None:
        await self._shutdown()
        if not await self.completer.drain(within=SHUTDOWN_WRITE_TIMEOUT):
            log.error(
                "stopping without recording %d outcomes: they could not be written within %gs "
                "(the database is unreachable or a lock held them); those jobs will run again "
                "when their leases expire",
                self.completer.pending,
                SHUTDOWN_WRITE_TIMEOUT,
                extra={"event": "write_abandoned", "jobs": self.completer.pending},
            )

    async def _shutdown(self) -> None:
        if self._running and not self._force.is_set():
            log.info("stopping: waiting up to %gs for %d running jobs", self.config.grace, len(self._running))
            tasks = [r.task for r in self._running.values()]
            await _first_of([asyncio.wait(tasks), self._force.wait()], within=self.config.grace)
        left = dict(self._running)
        if not left:
            return
        for running in left.values():
            running.task.cancel()
        # A task that swallows its cancellation must not hold the stop up forever.
        await _first_of([asyncio.wait([r.task for r in left.values()])], within=CANCEL_TIMEOUT)
        await self.completer.drain(within=SHUTDOWN_WRITE_TIMEOUT)
        in_threads = [h for h in left if self._executor.in_thread(h)]
        if in_threads:
            log.warning(
                "jobs %s are still running in threads Python cannot stop; they stay leased and "
                "go back to the queue when their leases expire (that attempt counts)",
                ", ".join(str(h.id) for h in in_threads),
            )
        # What finished meanwhile was recorded by the drain (a hand-back of it is fenced out);
        # an outcome still unwritten is the completer's to write, not to hand back.
        held = [h for h in left if h not in in_threads and h not in self._unwritten]
        if not held:
            return
        try:
            async with asyncio.timeout(SHUTDOWN_WRITE_TIMEOUT):
                released, dead = await self.db.release_jobs(held, worker_id=self.id, now=self.clock.now())
        except Exception as exc:
            log.error(
                "could not hand %d jobs back (%s); they will be rescued when their leases expire",
                len(held),
                exc,
            )
            return
        for h in held:
            job = left[h].job
            if h.id in released:
                self._reports.handed_back(job)
            elif h.id in dead:
                self._reports.buried(job, JobFailure(HANDED_BACK_TOO_OFTEN, None, None), failed=False)
        # Not handed back: an abort was asked for (or the job is no longer ours, which the
        # fence of this write finds too). It ends as aborted rather than running again.
        unreleased = [h for h in held if h.id not in released and h.id not in dead]
        if unreleased:
            try:
                async with asyncio.timeout(SHUTDOWN_WRITE_TIMEOUT):
                    recorded = await self.db.record_outcomes(
                        Outcomes(aborted=[(h.id, h.claim) for h in unreleased]),
                        worker_id=self.id,
                        now=self.clock.now(),
                    )
            except Exception as exc:
                log.error("could not record %d aborted jobs at shutdown (%s)", len(unreleased), exc)
            else:
                for h in unreleased:
                    if h.id in recorded.aborted:
                        self._reports.aborted(left[h].job)
        if released:
            log.warning(
                "handed %d unfinished jobs back to the queue: %s",
                len(released),
                ", ".join(str(i) for i in sorted(released)),
            )

    # -- callbacks ---------------------------------------------------------------------

    def _on_notify(self, queue: str) -> None:
        if queue == LIMITS_CHANGED:
            self._limits.changed()  # every block goes: a raised or cleared limit applies now
            self._woken = True
            self._signal.set()
        elif queue in self._queue_set:
            # A job was enqueued: it may be of a key no limit holds; the database decides.
            self._limits.woken(queue)
            self._woken = True
            self._signal.set()

    def _on_control(self, payload: str) -> None:
        what, _, argument = payload.partition(" ")
        if what == "rescan":
            # A pause ended: its jobs may lie behind the cursors, which moved past them.
            self._cursors.rescan()
            self._woken = True
            self._signal.set()
        elif what == "abort" and argument.isdigit():
            job_id = int(argument)
            held = [h for h in self._running if h.id == job_id]
            if held:
                self._confirm_aborts(held)
            else:
                now = time.monotonic()
                self._pending_aborts = {
                    i: at for i, at in self._pending_aborts.items() if now - at < PENDING_ABORT_SECONDS
                }
                self._pending_aborts[job_id] = now

    def _confirm_aborts(self, held: list[Held]) -> None:
        """A notification is a hint (another schema's may share the channel: see
        docs/job-control.md): the row says whether the abort was asked for. One heartbeat of
        these jobs reads it."""
        check = asyncio.create_task(self._check_aborts(held))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _check_aborts(self, held: list[Held]) -> None:
        try:
            extended = await self.db.extend_leases(
                held, worker_id=self.id, lease=self._lease, now=self.clock.now()
            )
        except Exception as exc:  # the heartbeat reads it again
            log.warning("checking an abort failed (%s); the next heartbeat checks again", exc)
            return
        for h in held:
            if h.id in extended.aborted:
                self._abort(h)

    def _abort(self, held: Held) -> None:
        """Stop an execution whose abort was asked for: ``ctx.aborted`` turns true, and an
        async task is cancelled. Once per execution (the heartbeat repeats it)."""
        running = self._running.get(held)
        if running is None or held in self._aborted:
            return
        self._aborted.add(held)
        job = running.job
        task = self.registry.get(job.task)
        cancel = task is not None and task.is_async
        log.info(
            "job %d attempt %d: abort requested; %s",
            job.id,
            job.attempt,
            "cancelling it" if cancel else "ctx.aborted is now true (a sync task stops when it checks)",
            extra={**job_fields(job), "event": "abort_requested"},
        )
        if cancel:
            running.task.cancel()

    def _held_with_start(self) -> list[tuple[Held, float]]:
        held = [(h, r.started) for h, r in self._running.items()]
        held.extend(self._unwritten.items())
        return held

    def _on_settled(self, batch: Sequence[Outcome], recorded: Recorded | None) -> None:
        unwritten = self._unwritten
        for outcome in batch:
            unwritten.pop(Held(outcome.job.id, outcome.job.claim), None)
        if self._limits.limited and self._limits.slots_freed(o.job.queue for o in batch):
            self._woken = True  # a start this worker's job held is free: claim it now
            self._signal.set()
        if recorded is None:
            return
        self.stats.completed += len(recorded.completed)
        if not (recorded.retried or recorded.buried or recorded.aborted):
            return
        for outcome in batch:
            job = outcome.job
            if isinstance(outcome, Retry) and job.id in recorded.retried:
                self._reports.retried(job, JobFailure(outcome.error, outcome.exception, outcome.delay))
            elif isinstance(outcome, Bury) and job.id in recorded.buried:
                self._reports.buried(job, JobFailure(outcome.error, outcome.exception, None))
            elif job.id in recorded.aborted:  # Aborted, or a Retry that met its abort
                self._reports.aborted(job)

    def _on_rescued(self, job: ClaimedJob, dead: bool) -> None:
        self._reports.rescued(job, JobFailure(LEASE_EXPIRED, None, None if dead else 0.0))

    def _on_lease_lost(self, held: Held) -> None:
        running = self._running.get(held)
        if running is not None and held not in self._lost:
            self._lost.add(held)
            log.warning(
                "job %d attempt %d: lease lost while running (another worker may run it again); "
                "its outcome will not be recorded",
                held.id,
                running.job.attempt,
            )
        # A finished job's lost lease is reported by the completer, when its write finds the
        # job gone: the heartbeat may also see a row its outcome has just removed.


def _check_lease(lease: float, lock_timeout: float) -> None:
    """A heartbeat's write may wait up to the lock timeout: a lease that short is lost to any
    lock held that long, and the job runs twice."""
    if not lock_timeout:
        return
    if lease < 3 * lock_timeout:
        log.warning(
            "the lease (%gs) is less than 3 times the lock timeout (%gs): a heartbeat held up by "
            "a lock may let leases run out while their jobs run, and those jobs run again "
            "elsewhere; use a longer --lease or a shorter CONVEYOR_LOCK_TIMEOUT",
            lease,
            lock_timeout,
            extra={"event": "configuration", "lease": lease, "lock_timeout": lock_timeout},
        )


async def _first_of(waits: Sequence[Any], *, within: float | None) -> bool:
    """Wait for the first awaitable to finish; False on timeout. The others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        return bool(done)
    finally:
        for task in tasks:
            task.cancel()
