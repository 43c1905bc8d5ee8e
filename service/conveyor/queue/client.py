"""The async client: enqueue jobs and operate on queues and the dead-letter queue."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import psycopg

from .. import jsonb
from ..clock import Clock, DatabaseClock
from ..db.connections import caller_async_connection
from ..db.database import Database
from ..db.queries import Queries, for_schema
from ..db.steps import Flow, run_async
from ..errors import (
    ConfigurationError,
    ConflictError,
    ConveyorError,
    InvalidOptionError,
    NotFoundError,
    UnknownQueueError,
    UnknownTaskError,
)
from ..limits import LimitsInUse, QueueLimits, Rate, limits_in_use, limits_of
from ..settings import Settings, Timeouts
from ..tasks import Registry, check_queue_name, default_registry, named_schedule, unknown_task_message
from . import cleaning, control, search
from .bulk import Batch, enqueue_many, prepare_many, stream
from .conflicts import run_again_on_conflict
from .enqueue import JobRequest, TaskRef, enqueue_one, prepare
from .filters import ENDED_STATES, JobFilters, check_older_than
from .filters import JOB_STATES as JOB_STATES  # re-exported: the names importers used before
from .flows import (
    LINK_ATTEMPTS,
    LINK_CONFLICTS,
    chain_flow,
    check_callback,
    check_id,
    check_link,
    check_timeout,
    link_conflict,
    linked,
    one,
)
from .overview import QueueOverview, read_overview
from .pages import MAX_PAGE as MAX_PAGE
from .pages import Page, check_limit
from .registered import RegisteredTasks, unknown_names
from .results import ResultWaiters
from .retention import apply_retention
from .roster import DEFAULT_LEASE, Workers, read_workers
from .roster import SchedulerStatus as SchedulerStatus
from .roster import read_scheduler_status as read_scheduler_status
from .roster import seconds_ago as seconds_ago
from .wake_ups import WakeUps


@dataclass(frozen=True)
class QueueStats:
    queue: str
    paused: bool
    waiting: int
    scheduled: int
    running: int
    completed_24h: int
    dead: int
    oldest_waiting_age: timedelta | None
    all_paused: bool = False  # everything is paused (Conveyor.pause_all)
    paused_tasks: tuple[str, ...] = ()  # paused tasks with jobs waiting in this queue


MAX_RETRY = 100_000  # dead jobs retried by one retry_dead_matching with a limit


class Conveyor:
    """Enqueue jobs on Conveyor's own pool or inside the caller's transaction.

    ``conn`` may be a psycopg ``AsyncConnection`` or a SQLAlchemy ``AsyncSession`` /
    ``AsyncConnection`` (psycopg dialect): the job then commits or rolls back with the
    caller's transaction, and workers see it only after commit.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        schema: str | None = None,
        registry: Registry | None = None,
        clock: Clock | None = None,
        pool_size: int = 4,
        durable_enqueue: bool = True,
        timeouts: Timeouts | None = None,
    ) -> None:
        """``durable_enqueue`` False: enqueues on the client's own connections return before
        their commit reaches the disk (docs/enqueueing.md says what a crash may then lose);
        ``enqueue(durable=...)`` decides per call.

        ``timeouts``: deadlines on the client's own pool, as a worker's (statement and lock
        timeouts, a connect timeout, and a client-side deadline that drops a connection that
        stopped answering; see ``settings.Timeouts``). None (the default): statements run as
        long as they need (a bulk enqueue of a million jobs is one COPY). Waiting for a
        result is not a statement: it is woken through LISTEN, whatever the timeouts."""
        self.durable_enqueue = durable_enqueue
        self.settings = Settings.from_env(database_url, schema)
        self.registry = registry if registry is not None else default_registry
        self.clock: Clock = clock or DatabaseClock()
        self._pool_size = pool_size
        self._timeouts = timeouts
        self._known_queues: set[str] = set()  # queues whose rows exist: enqueue takes the short insert
        self._registered = RegisteredTasks()  # tasks known by name only, as workers recorded them
        self._db: Database | None = None
        self._wake_ups = WakeUps(self._wake)
        self._results: ResultWaiters | None = None

    async def open(self) -> Conveyor:
        if self._db is None:
            if self.settings.database_url is None:
                raise ConfigurationError(
                    "no database: set DATABASE_URL (or CONVEYOR_DATABASE_URL) or pass database_url"
                )
            db = Database(
                self.settings.database_url,
                self.settings.schema,
                max_size=self._pool_size,
                timeouts=self._timeouts,
            )
            await db.open()
            self._db = db
        return self

    async def close(self) -> None:
        if self._results is not None:
            await self._results.close()
            self._results = None
        if self._db is not None:
            await self._wake_ups.flush()
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Conveyor:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def db(self) -> Database:
        if self._db is None:
            raise ConfigurationError("this Conveyor client is not open: use `async with Conveyor(...)`")
        return self._db

    # -- enqueue -----------------------------------------------------------------------

    async def enqueue(
        self,
        task: TaskRef,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | str | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        key: str | None = None,
        meta: Mapping[str, Any] | None = None,
        conn: Any = None,
        durable: bool | None = None,
        after: int | None = None,
        batch: int | BatchHandle | None = None,
    ) -> int:
        """Enqueue one job; returns its id (or that of the live job holding ``unique_key``).

        ``task`` may name a task this process does not import: the defaults the workers
        recorded for it are used, and its arguments are checked by the worker that runs it.
        ``durable`` (default: the client's ``durable_enqueue``) False: return before the commit
        reaches the disk; ignored with ``conn``, whose transaction keeps its own setting.
        ``key``: the job's limit key in its queue (default: the value of the task's ``key``
        argument, if it declares one); ``meta``: your own tags, a JSON object Conveyor stores.
        ``after``: a job id; this job waits ('blocked') until that one completes, and is
        cancelled if it dies or is cancelled. ``batch``: a batch (see :meth:`batch`) this job
        joins. Neither goes with ``unique_key`` (see ``queue.flows``).
        """
        batch_id = batch.id if isinstance(batch, BatchHandle) else batch
        if after is not None or batch_id is not None:
            check_link(after, batch_id, [unique_key])
        registry = self.registry
        if isinstance(task, str) and registry.get(task) is None:
            registry = await self._with_registered([task], conn)
        job = prepare(
            registry,
            JobRequest(task, args or {}, queue, priority, delay, run_at, unique_key, max_attempts, key, meta),
        )
        queries = self._queries()
        if after is not None or batch_id is not None:
            ids = await self._run_linked(
                lambda: linked(
                    one(enqueue_one(job, channel=queries.channel, now=self.clock.now(), durable=True)),
                    after=after,
                    batch=batch_id,
                    now=self.clock.now(),
                ),
                conn,
            )
            return ids[0]
        # The commonest call, a job due now into a queue known to exist on Conveyor's own
        # connection, is one statement with no conversation around it.
        if (
            conn is None
            and job.plain
            and job.run_at is None
            and not job.delay
            and (job.queue in self._known_queues)
        ):
            async with self._wake_ups.enqueue(job.queue) as notify:
                return await run_again_on_conflict(
                    lambda: self.db.enqueue_due_job(
                        queue=job.queue,
                        task=job.task,
                        args_json=job.args_json,
                        priority=job.priority,
                        max_attempts=job.max_attempts,
                        now=self.clock.now(),
                        notify=notify,
                        durable=self.durable_enqueue if durable is None else durable,
                    )
                )

        def flow() -> Flow[int]:
            return enqueue_one(
                job,
                channel=queries.channel,
                now=self.clock.now(),
                known_queues=self._known_queues,
                learn=conn is None,
                durable=conn is not None or (self.durable_enqueue if durable is None else durable),
            )

        if conn is not None:
            return await run_async(await caller_async_connection(conn), queries, flow())
        return await run_again_on_conflict(lambda: self.db.run(flow()))

    async def enqueue_many(
        self,
        jobs: Iterable[JobRequest],
        *,
        conn: Any = None,
        after: int | None = None,
        batch: int | BatchHandle | None = None,
    ) -> list[int]:
        """Enqueue many jobs in one transaction (COPY); returns their ids in order.

        One bad request enqueues none (see ``queue.bulk``). Tasks named but not imported
        here are taken as the workers recorded them (see :meth:`enqueue`). ``after`` and
        ``batch`` apply to every job (see :meth:`enqueue`).
        """
        batch_id = batch.id if isinstance(batch, BatchHandle) else batch
        queries = self._queries()
        registry = self.registry
        if not isinstance(jobs, list | tuple):
            jobs = list(jobs)
        if names := unknown_names(registry, (job.task for job in jobs)):
            registry = await self._with_registered(names, conn)
        # On a caller's connection, checked whole first: a refusal must leave the caller's
        # transaction as it was. On our own, arguments are checked as rows are written.
        if after is not None or batch_id is not None:
            check_link(after, batch_id, [job.unique_key for job in jobs])
            checked = Batch.of(prepare_many(registry, jobs))
            return await self._run_linked(
                lambda: linked(
                    enqueue_many(
                        checked, channel=queries.channel, jobs_table=queries.jobs_table, now=self.clock.now()
                    ),
                    after=after,
                    batch=batch_id,
                    now=self.clock.now(),
                ),
                conn,
            )
        if conn is not None:
            flow = enqueue_many(
                Batch.of(prepare_many(registry, jobs)),
                channel=queries.channel,
                jobs_table=queries.jobs_table,
                now=self.clock.now(),
            )
            raw = await caller_async_connection(conn)
            if not raw.autocommit:
                # Inside the caller's transaction (its first statement starts it if need be):
                # psycopg's transaction() here would BEGIN and COMMIT one of its own.
                return await run_async(raw, queries, flow)
            async with raw.transaction():
                return await run_async(raw, queries, flow)
        return await run_again_on_conflict(
            lambda: self.db.run(
                enqueue_many(
                    stream(registry, jobs),
                    channel=queries.channel,
                    jobs_table=queries.jobs_table,
                    now=self.clock.now(),
                ),
                atomic=True,
            ),
            "enqueue_many",
        )

    async def task_registry(self, names: Iterable[str], *, conn: Any = None) -> Registry:
        """This client's registry, with those of ``names`` that it does not import taken as
        the workers recorded them (read on ``conn`` when given); a name no one knows raises
        UnknownTaskError. For checking requests one at a time (``queue.enqueue.prepare``)
        before they go to :meth:`enqueue_many`, as an import does."""
        missing = unknown_names(self.registry, names)
        if not missing:
            return self.registry
        return await self._with_registered(missing, conn)

    def _queries(self) -> Queries:
        return for_schema(self.settings.schema)

    async def _run_linked(self, make: Callable[[], Flow[list[int]]], conn: Any) -> list[int]:
        """Run a flow that writes and links jobs in one transaction (the caller's, with conn);
        ``make`` makes the flow anew for each attempt (see flows.LINK_ATTEMPTS)."""
        attempt = 1
        while True:
            try:
                if conn is None:
                    return await self.db.run(make(), atomic=True)
                raw = await caller_async_connection(conn)
                if not raw.autocommit:
                    return await run_async(raw, self._queries(), make())
                async with raw.transaction():
                    return await run_async(raw, self._queries(), make())
            except psycopg.errors.InvalidParameterValue as exc:
                raise ConveyorError(sql_error_message(exc)) from None
            except LINK_CONFLICTS as exc:
                error = link_conflict(exc, retrying=conn is None and attempt < LINK_ATTEMPTS)
                if error is not None:
                    raise error from exc
                attempt += 1

    # -- results, chains and batches (see queue.flows and queue.results) ----------------

    async def result(self, job_id: int, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - the API asks for timeout=
        """Wait for the job to end and return its result (decoded JSON).

        Raises JobFailed (with the job's last error) if it died, JobCancelled if it was
        cancelled, NotFoundError for an unknown id, TimeoutError when ``timeout`` seconds pass
        first. Woken by the job's end through LISTEN/NOTIFY, across processes."""
        check_id("job_id", job_id)
        seconds = check_timeout(timeout)
        if self._results is None:
            self._results = ResultWaiters(self.db, self.settings)
        return await self._results.wait(job_id, seconds)

    async def chain(self, *jobs: JobRequest, after: int | None = None, conn: Any = None) -> list[int]:
        """Enqueue jobs that run one after the other, each once the one before completed (the
        first after ``after`` if given); one transaction. Returns their ids in order."""
        if not jobs:
            return []
        check_link(after, None, [])
        registry = self.registry
        if names := unknown_names(registry, (job.task for job in jobs)):
            registry = await self._with_registered(names, conn)
        prepared = [prepare(registry, job) for job in jobs]
        check_link(1, None, [job.unique_key for job in prepared])
        queries = self._queries()
        return await self._run_linked(
            lambda: chain_flow(
                [enqueue_one(job, channel=queries.channel, now=self.clock.now()) for job in prepared],
                after=after,
                now=self.clock.now(),
            ),
            conn,
        )

    async def create_batch(
        self,
        callback: TaskRef | None = None,
        args: Mapping[str, Any] | None = None,
        *,
        priority: int | str | None = None,
        meta: Mapping[str, Any] | None = None,
        conn: Any = None,
    ) -> int:
        """A new, open batch; its callback runs once after it is sealed and every member ended,
        with ``args`` plus ``batch={"id", "total", "completed", "dead", "cancelled"}``."""
        registry = self.registry
        if isinstance(callback, str) and registry.get(callback) is None:
            registry = await self._with_registered([callback], conn)
        params = check_callback(registry, callback, args, priority, meta)
        return int((await self._flow_call("create_batch", params, conn))[0][0])

    async def seal_batch(self, batch_id: int, *, conn: Any = None) -> int | None:
        """No more members; returns the callback's job id if every member had ended already."""
        check_id("batch_id", batch_id)
        rows = await self._flow_call("seal_batch", {"id": batch_id, "now": self.clock.now()}, conn)
        return None if rows[0][0] is None else int(rows[0][0])

    async def get_batch(self, batch_id: int) -> dict[str, Any]:
        """A batch with its counts, sealed_at, finished_at and callback_job_id."""
        check_id("batch_id", batch_id)
        rows = await self.db.fetch_dicts("get_batch", {"id": batch_id})
        if not rows:
            raise NotFoundError(f"no batch with id {batch_id}")
        return rows[0]

    @asynccontextmanager
    async def batch(
        self,
        callback: TaskRef | None = None,
        args: Mapping[str, Any] | None = None,
        *,
        priority: int | str | None = None,
        meta: Mapping[str, Any] | None = None,
        conn: Any = None,
    ) -> AsyncIterator[BatchHandle]:
        """``async with conveyor.batch(callback=summary) as batch: await batch.enqueue(...)``:
        a batch, sealed when the block ends (the callback may then run at once, if every
        member ended already). With ``conn`` everything happens in the caller's transaction,
        and a block that raises leaves the batch unsealed (the transaction is the caller's to
        roll back); on Conveyor's own connections it is sealed anyway, so the members
        already enqueued still lead to the callback."""
        handle = BatchHandle(
            self, await self.create_batch(callback, args, priority=priority, meta=meta, conn=conn), conn
        )
        try:
            yield handle
        except BaseException:
            if conn is None:
                await self.seal_batch(handle.id)
            raise
        await self.seal_batch(handle.id, conn=conn)

    async def _flow_call(self, name: str, params: dict[str, Any], conn: Any) -> list[tuple[Any, ...]]:
        if conn is None:
            return await self._call(name, params)
        raw = await caller_async_connection(conn)
        try:
            cursor = await raw.execute(self._queries()[name], params)
            return await cursor.fetchall()
        except psycopg.errors.InvalidParameterValue as exc:
            raise ConveyorError(sql_error_message(exc)) from None

    async def _with_registered(self, names: list[str], conn: Any) -> Registry:
        """The registry with the tasks of ``names`` that workers recorded, read on the
        connection the job will be written on."""
        if missing := self._registered.missing(names):
            params = {"names": missing}
            if conn is not None:
                raw = await caller_async_connection(conn)
                cursor = await raw.execute(self._queries()["registered_tasks"], params)
                rows = await cursor.fetchall()
            else:
                rows = await self.db.fetch("registered_tasks", params)
            self._registered.learn(rows)
        return self._registered.overlay(self.registry, names)

    async def _wake(self, queues: Sequence[str]) -> None:
        await self.db.fetch("wake_queues", {"channel": self.db.queries.channel, "names": list(queues)})

    # -- queues ------------------------------------------------------------------------

    async def queue_stats(self) -> list[QueueStats]:
        return [
            QueueStats(**{**row, "paused_tasks": tuple(row["paused_tasks"] or ())})
            for row in await self.db.fetch_dicts("queue_stats")
        ]

    async def scheduler_status(self) -> SchedulerStatus:
        """Who leads the scheduler role, until when, and whether schedules would fire."""
        return await read_scheduler_status(self.db, now=self.clock.now())

    async def create_queue(self, name: str) -> None:
        await self.db.create_queues([check_queue_name(name)])

    async def pause_queue(self, name: str) -> None:
        """Workers stop claiming from the queue; running jobs finish, waiting ones wait."""
        if not await self._queue_exists(name):
            raise UnknownQueueError(f"no queue named {name!r}")
        await self.db.fetch("pause_queue", {"queue": name})

    async def resume_queue(self, name: str) -> None:
        if not await self._queue_exists(name):
            raise UnknownQueueError(f"no queue named {name!r}")
        await self.db.fetch("resume_queue", {"queue": name})

    async def set_queue_limits(
        self,
        name: str,
        *,
        rate: Rate | tuple[int, str | timedelta | float] | str | None = None,
        concurrency: int | None = None,
        key_rate: Rate | tuple[int, str | timedelta | float] | str | None = None,
        key_concurrency: int | None = None,
    ) -> QueueLimits:
        """Set a queue's limits, enforced for every worker at once (docs/limits.md): at most
        ``rate`` starts per period (``(20, "1m")`` or ``"20/1m"``) and ``concurrency`` running,
        and the same per job key (``key_rate``, ``key_concurrency``; ``key_concurrency=1``
        runs each key's jobs one at a time). Each limit left None is cleared; all None clears
        them all. Creates the queue if it does not exist; workers pick the change up at once."""
        limits = limits_of(rate, concurrency, key_rate, key_concurrency)
        await self.db.set_queue_limits(check_queue_name(name), limits)
        return limits

    async def queue_limits(self, name: str | None = None) -> list[LimitsInUse]:
        """Limited queues (or one) with their limits and their use now."""
        rows = await self.db.fetch_dicts(
            "queue_limits",
            {"queue": None if name is None else check_queue_name(name), "now": self.clock.now()},
        )
        return [limits_in_use(row) for row in rows]

    # -- pauses of tasks and of everything (queue.control) -------------------------------

    async def pause_task(self, name: str) -> None:
        """Workers stop starting jobs of this task, in every queue; running ones finish.
        Jobs of other tasks keep flowing. The task need not be registered anywhere yet."""
        await control.call(self.db, "pause_task", {"task": control.check_task_name(name)})

    async def resume_task(self, name: str) -> None:
        """Let a paused task's jobs start again; the workers of their queues are woken."""
        await control.call(self.db, "resume_task", {"task": control.check_task_name(name)})

    async def pause_all(self) -> None:
        """Workers start no job at all until :meth:`resume_all`; running ones finish."""
        await control.call(self.db, "pause_all", {})

    async def resume_all(self) -> None:
        """End :meth:`pause_all`; the workers of every queue with waiting jobs are woken.
        Paused queues and tasks stay paused."""
        await control.call(self.db, "resume_all", {})

    async def pauses(self) -> control.Pauses:
        """Whether everything is paused, and which tasks are (paused queues: queue_stats)."""
        return await control.read_pauses(self.db)

    async def tasks(self) -> list[dict[str, Any]]:
        """The tasks workers declared, and any paused task: name, queue, paused, paused_at."""
        return await self.db.fetch_dicts("list_tasks")

    async def queue_exists(self, name: str) -> bool:
        """Whether a queue of that name exists (InvalidOptionError for a name no queue can have)."""
        return await self._queue_exists(name)

    async def queue_names(self) -> list[str]:
        """Every queue's name, in order (reads the queues table alone: no counts)."""
        return [row[0] for row in await self.db.fetch("queue_names")]

    async def _queue_exists(self, name: str) -> bool:
        return bool((await self.db.fetch("queue_exists", {"queue": check_queue_name(name)}))[0][0])

    # -- schedules ---------------------------------------------------------------------

    async def schedules(self) -> list[dict[str, Any]]:
        return await self.db.fetch_dicts("list_schedules")

    async def create_schedule(
        self,
        name: str,
        cron: str,
        task: TaskRef,
        args: Mapping[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        queue: str | None = None,
        priority: int | str | None = None,
        max_attempts: int | None = None,
        catch_up: str = "once",
        replace: bool = False,
    ) -> str:
        """Create a schedule at run time (checked here, and again by the database).

        ``task`` may name a task this process does not import, as for :meth:`enqueue`."""
        params = await self._schedule_params(
            name,
            cron,
            task,
            args,
            timezone=timezone,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            catch_up=catch_up,
            replace=replace,
        )
        await self._call("create_schedule", params)
        return str(params["name"])

    async def update_schedule(self, name: str, changes: Mapping[str, Any]) -> str:
        """Change some fields of a schedule (``cron``, ``task``, ``args``, ``timezone``,
        ``queue``, ``priority``, ``max_attempts``, ``catch_up``), keeping the others: read and
        redefined in one transaction with the schedule's row locked, so that two changes of
        one schedule take turns and each keeps the other's fields. NotFoundError if none has
        the name."""
        unknown = set(changes) - set(SCHEDULE_FIELDS)
        if unknown:
            raise InvalidOptionError(f"a schedule has no field {', '.join(sorted(unknown))}")
        with self._refusals():
            async with self.db.transaction() as tx:
                rows = await tx.fetch("lock_schedule", {"name": named_schedule(name)})
                if not rows:
                    raise NotFoundError(f"no schedule named {name!r}")
                current = dict(zip(SCHEDULE_FIELDS, rows[0], strict=True))
                merged = current | dict(changes)
                params = await self._schedule_params(
                    name,
                    merged["cron"],
                    merged["task"],
                    merged["args"] or {},
                    # A time zone given is checked as given (an empty one is refused, not UTC).
                    timezone=changes["timezone"] if "timezone" in changes else merged["timezone"] or "UTC",
                    queue=merged["queue"],
                    priority=merged["priority"],
                    max_attempts=merged["max_attempts"],
                    catch_up=merged["catch_up"] or "once",
                    replace=True,
                )
                await tx.fetch("create_schedule", params)
        return name

    async def _schedule_params(
        self,
        name: str,
        cron: str,
        task: TaskRef,
        args: Mapping[str, Any] | None,
        *,
        timezone: str,
        queue: str | None,
        priority: int | str | None,
        max_attempts: int | None,
        catch_up: str,
        replace: bool,
    ) -> dict[str, Any]:
        """The create_schedule statement's parameters, checked as a declaration would be."""
        registry = self.registry
        if isinstance(task, str) and registry.get(task) is None:
            registry = await self._with_registered([task], None)
        if registry.resolve(task) is None:
            name_of = task if isinstance(task, str) else getattr(task, "__name__", repr(task))
            raise UnknownTaskError(unknown_task_message(registry, str(name_of)))
        # Checked as a declaration would be (cron, time zone, task and its arguments), on a
        # scratch registry so that nothing is declared in this process.
        scratch = Registry()
        for known in registry.with_builtins():
            scratch.add(known)
        checked = scratch.schedule(
            name,
            cron,
            task,
            args,
            timezone=timezone,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            catch_up=catch_up,
        )
        return {
            "name": checked.name,
            "cron": checked.cron,
            "task": checked.task,
            "args": jsonb.dumps(checked.args),
            "timezone": checked.timezone,
            "queue": checked.queue,
            "priority": checked.priority,
            "max_attempts": checked.max_attempts,
            "catch_up": checked.catch_up,
            "replace": replace,
            "now": self.clock.now(),
        }

    async def check_materialized_view(self, view: str) -> str:
        """The view's ``schema.name``; ConveyorError unless it is a materialized view."""
        try:
            rows = await self.db.fetch("matview_info", {"view": view})
        except (psycopg.errors.SyntaxError, psycopg.errors.InvalidName):
            rows = []
        if not rows:
            raise ConveyorError(f"{view!r} is not a materialized view")
        return f"{rows[0][1]}.{rows[0][2]}"

    async def pause_schedule(self, name: str) -> None:
        await self._call("pause_schedule", {"name": named_schedule(name)})

    async def resume_schedule(self, name: str) -> None:
        await self._call("resume_schedule", {"name": named_schedule(name)})

    async def trigger_schedule(self, name: str) -> int:
        """Enqueue the schedule's job now, leaving its cadence alone; returns the job id."""
        return int((await self._call("trigger_schedule", {"name": named_schedule(name)}))[0][0])

    async def remove_schedule(self, name: str) -> None:
        await self._call("remove_schedule", {"name": named_schedule(name)})

    async def schedule_fires(self, name: str, *, limit: int = 20) -> list[dict[str, Any]]:
        return await self.db.fetch_dicts("schedule_fires", {"name": named_schedule(name), "limit": limit})

    # -- retention ---------------------------------------------------------------------

    async def retention(self) -> list[dict[str, Any]]:
        """The defaults (queue '*') and what each queue keeps."""
        return await self.db.fetch_dicts("list_retention")

    async def set_retention(
        self,
        queue: str = "*",
        *,
        completed_keep: timedelta | None = None,
        completed_max: int | None = None,
        dead_keep: timedelta | None = None,
        runs_keep: timedelta | None = None,
    ) -> None:
        await self._call(
            "set_retention",
            {
                "queue": queue,
                "completed_keep": completed_keep,
                "completed_max": completed_max,
                "dead_keep": dead_keep,
                "runs_keep": runs_keep,
            },
        )

    async def apply_retention(self, *, budget: float = 60.0) -> dict[str, int]:
        """Apply retention now, in short steps (see ``queue.retention``)."""
        return await apply_retention(self.db, now=self.clock.now(), budget=budget)

    # -- jobs --------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> dict[str, Any]:
        """A job wherever it is: live, finished (with its result) or dead (with its errors).

        One statement reads the three tables, so a job that moves between them meanwhile
        (finished, buried, retried from the dead-letter table) is still found. Every job has
        the same keys; those that do not apply where it is are None."""
        rows = await self.db.fetch_dicts("get_job", {"id": job_id})
        if not rows:
            raise NotFoundError(f"no job with id {job_id}")
        return rows[0]

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: str | None = None,
        task: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs wherever they are, newest (highest id) first, filtered by queue, state and
        task. Pages by id: pass the last id of a page as ``before`` to get the next one."""
        if state is not None and state not in JOB_STATES:
            raise InvalidOptionError(f"unknown state {state!r}: use one of {', '.join(JOB_STATES)}")
        filters = JobFilters.of(queue=queue, task=task)
        params = {
            "queue": filters.queue,
            "state": state,
            "task": filters.task,
            "limit": check_limit(limit),
            "before": None if before is None else control.check_job_id(before),
        }
        return await self.db.fetch_dicts("list_jobs", params)

    # -- one job's control (queue.control, docs/job-control.md) ---------------------------

    async def cancel(self, job_id: int, *, reason: str | None = None, by: str | None = None) -> str:
        """Cancel a job. Waiting, scheduled or blocked: it moves to history as 'cancelled'
        (its errors say who and why) and never runs; returns 'cancelled'. Running: it is
        aborted (see :meth:`abort`); returns 'aborting' (or 'cancelled'). A job that has
        ended raises JobStateError (saying how it ended), an unknown one NotFoundError."""
        params = {
            "id": control.check_job_id(job_id),
            "reason": control.check_text("reason", reason),
            "by": control.check_text("by", by),
            "now": self.clock.now(),
        }
        return await control.call(self.db, "cancel_job", params) or ""

    async def abort(self, job_id: int, *, reason: str | None = None, by: str | None = None) -> str:
        """Abort a running job on whichever worker holds it: an async task is cancelled, a sync
        task sees ``ctx.aborted``; the job then ends as 'cancelled' with the error "aborted".
        Returns 'aborting' (the worker was told), or 'cancelled' when its worker had stopped
        heartbeating (done at once) or the job was not running (as :meth:`cancel`)."""
        params = {
            "id": control.check_job_id(job_id),
            "reason": control.check_text("reason", reason),
            "by": control.check_text("by", by),
            "now": self.clock.now(),
        }
        return await control.call(self.db, "abort_job", params) or ""

    async def run_now(self, job_id: int) -> str:
        """Make a scheduled job (or a retry waiting out its backoff) available now and wake
        its queue's workers; returns 'available'. A running or blocked job raises JobStateError."""
        params = {"id": control.check_job_id(job_id), "now": self.clock.now()}
        return await control.call(self.db, "run_job_now", params) or ""

    async def delete_job(self, job_id: int) -> str:
        """Remove a waiting or scheduled job, leaving no history; returns 'deleted'. A running
        job, or one in a chain or a batch, raises JobStateError (abort or cancel it instead)."""
        return await control.call(self.db, "delete_job", {"id": control.check_job_id(job_id)}) or ""

    # -- dead-letter queue -------------------------------------------------------------

    async def dead_jobs(
        self, *, queue: str | None = None, task: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Dead jobs, newest first (one page: :meth:`dead_letters` pages on with a cursor)."""
        filters = JobFilters.of(queue=queue, task=task)
        params = {"queue": filters.queue, "task": filters.task, "limit": check_limit(limit)}
        return await self.db.fetch_dicts("list_dead_jobs", params)

    async def dead_job(self, job_id: int) -> dict[str, Any]:
        rows = await self.db.fetch_dicts("get_dead_job", {"id": job_id})
        if not rows:
            raise NotFoundError(f"no dead job with id {job_id}")
        return rows[0]

    async def retry_dead(self, job_id: int) -> int:
        """Put a dead job back with a fresh attempt budget."""
        return int((await self._call("retry_dead_job", {"id": control.check_job_id(job_id)}))[0][0])

    async def retry_dead_if(self, job_id: int, died_at: datetime) -> int:
        """Put a dead job back as :meth:`retry_dead` does, only if it is still dead of the death
        at ``died_at`` (the one its asker saw): a second retry of the same death (a double
        click, a second tab) finds it retried, or dead again of a later death, and is refused
        with ConflictError, so the job does not run once more than was asked."""
        params = {
            "id": control.check_job_id(job_id),
            "queue": None,
            "task": None,
            "died_after": died_at,
            # The death at died_at to the microsecond; the last instant Python has has no next.
            "died_before": died_at + timedelta(microseconds=1)
            if died_at.replace(tzinfo=None) < datetime.max
            else None,
        }
        rows = await self._call("retry_dead_job_matching", params)
        if not rows:
            raise ConflictError(
                f"job {job_id} is not dead of the death shown (it was retried or purged since): nothing was done"
            )
        return int(rows[0][0])

    async def retry_dead_matching(
        self,
        *,
        queue: str | None = None,
        task: str | None = None,
        died_after: datetime | None = None,
        died_before: datetime | None = None,
        limit: int | None = None,
    ) -> tuple[list[int], dict[int, str]]:
        """Put back every dead job matching the filters (at most ``limit``, lowest id first),
        one by one: returns the ids put back and, for each that could not go back (its
        unique key is taken), why. Deaths in ``[died_after, died_before)``. Each job is checked
        against the filters again as it goes back: one retried meanwhile that died again
        outside the range stays dead."""
        filters = JobFilters.of(
            queue=queue, task=task, finished_after=died_after, finished_before=died_before, finished="died"
        )
        if limit is not None:
            limit = check_limit(limit, MAX_RETRY)

        async def retry(job_id: int) -> int | None:
            # Checked again as it is put back: it may have been retried and died again since.
            params = {
                "id": job_id,
                "queue": filters.queue,
                "task": filters.task,
                "died_after": filters.finished_after,
                "died_before": filters.finished_before,
            }
            rows = await self._call("retry_dead_job_matching", params)
            return int(rows[0][0]) if rows else None

        return await cleaning.retry_dead_matching(self.db, filters, retry, limit=limit)

    async def count_dead(
        self,
        *,
        queue: str | None = None,
        task: str | None = None,
        died_after: datetime | None = None,
        died_before: datetime | None = None,
    ) -> int:
        """How many dead jobs match every filter given (queue, task, died in
        ``[died_after, died_before)``; none: every dead job), as
        :meth:`retry_dead_matching` and :meth:`purge_dead` would choose them now."""
        filters = JobFilters.of(
            queue=queue, task=task, finished_after=died_after, finished_before=died_before, finished="died"
        )
        params = {
            "queue": filters.queue,
            "task": filters.task,
            "died_after": filters.finished_after,
            "died_before": filters.finished_before,
        }
        rows = await self.db.fetch_planned("count_dead_matching", params)
        return int(rows[0]["matching"])

    async def purge_dead(
        self,
        *,
        ids: list[int] | None = None,
        queue: str | None = None,
        task: str | None = None,
        older_than: timedelta | None = None,
        died_after: datetime | None = None,
        died_before: datetime | None = None,
    ) -> int:
        """Delete the dead jobs matching every filter given (``ids``, queue, task, died more
        than ``older_than`` ago, died in ``[died_after, died_before)``); returns how many.
        Without ``ids``, a thousand at a time (lowest id first), so no statement holds many
        rows locked for long."""
        filters = JobFilters.of(
            queue=queue, task=task, finished_after=died_after, finished_before=died_before, finished="died"
        )
        grace = None if older_than is None else check_older_than(older_than)

        async def purge(chosen: list[int]) -> int:
            # Every filter goes with the ids: each row is checked again as it is deleted.
            params = {
                "ids": chosen,
                "queue": filters.queue,
                "task": filters.task,
                "died_after": filters.finished_after,
                "died_before": filters.finished_before,
                "older_than": grace,
            }
            return int((await self._call("purge_dead_jobs", params))[0][0])

        if ids is not None:
            if filters.finish_bounded:
                raise InvalidOptionError("purge dead jobs by ids or by death time, not both")
            return await purge([control.check_job_id(job_id) for job_id in ids])
        return await cleaning.purge_dead_matching(self.db, filters, purge, older_than=grace)

    # -- finding jobs, a page at a time (queue.search, queue.pages) ----------------------

    async def search_jobs(
        self,
        *,
        queue: str | None = None,
        state: str | Sequence[str] | None = None,
        task: str | None = None,
        key: str | None = None,
        unique_key: str | None = None,
        id_prefix: str | None = None,
        enqueued_after: datetime | None = None,
        enqueued_before: datetime | None = None,
        finished_after: datetime | None = None,
        finished_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Jobs wherever they are (waiting, running, finished, dead), highest id first: a
        :class:`Page` of rows and the ``next_cursor`` to pass as ``cursor`` for the next page
        (None after the last). Filters: queue, state (one or several), task, limit ``key``,
        ``unique_key``, ``id_prefix`` (the digits a job's id starts with: "42" finds 42,
        420-429, 4200-4299 ...), enqueued in ``[enqueued_after, enqueued_before)``, finished
        (or died) in ``[finished_after, finished_before)`` (which leaves live jobs out).
        Each row: id, queue, task, state, priority, attempt, max_attempts, run_at,
        enqueued_at, started_at, finished_at (or when it died), key, unique_key, worker_id,
        progress, last_error (not args or result: see :meth:`get_job`)."""
        filters = JobFilters.of(
            queue=queue,
            task=task,
            state=state,
            key=key,
            unique_key=unique_key,
            enqueued_after=enqueued_after,
            enqueued_before=enqueued_before,
            finished_after=finished_after,
            finished_before=finished_before,
        )
        return await search.search_jobs(self.db, filters, id_search=id_prefix, limit=limit, cursor=cursor)

    async def history(
        self,
        *,
        queue: str | None = None,
        state: str | Sequence[str] | None = None,
        task: str | None = None,
        key: str | None = None,
        unique_key: str | None = None,
        enqueued_after: datetime | None = None,
        enqueued_before: datetime | None = None,
        finished_after: datetime | None = None,
        finished_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Finished jobs (states completed, cancelled, dead), most recently finished first,
        filtered as :meth:`search_jobs`; a :class:`Page` with its ``next_cursor``. Each row:
        id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at,
        started_at, finished_at (for a dead job, when it died), key, unique_key, worker_id,
        last_error."""
        filters = JobFilters.of(
            queue=queue,
            task=task,
            state=state,
            key=key,
            unique_key=unique_key,
            enqueued_after=enqueued_after,
            enqueued_before=enqueued_before,
            finished_after=finished_after,
            finished_before=finished_before,
            allowed_states=ENDED_STATES,
        )
        return await search.history(self.db, filters, limit=limit, cursor=cursor)

    async def dead_letters(
        self,
        *,
        queue: str | None = None,
        task: str | None = None,
        died_after: datetime | None = None,
        died_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """The dead-letter table, most recent death first; a :class:`Page` with its
        ``next_cursor``. Each row: id, queue, task, priority, attempt, max_attempts, run_at,
        enqueued_at, started_at, died_at, key, unique_key, last_error."""
        filters = JobFilters.of(
            queue=queue, task=task, finished_after=died_after, finished_before=died_before, finished="died"
        )
        return await search.dead_letters(self.db, filters, limit=limit, cursor=cursor)

    async def clean_history(
        self,
        older_than: timedelta | float,
        *,
        queue: str | None = None,
        state: str | None = None,
        budget: float = 60.0,
    ) -> int:
        """Move jobs that finished more than ``older_than`` (a timedelta, or seconds) ago to the
        run log, as retention does, in bounded batches; returns how many moved. ``state``:
        'completed' or 'cancelled' (None: both), or 'dead' for the dead-letter table; ``queue``:
        one queue (None: all). Stops starting batches after ``budget`` seconds: call again
        for the rest (0 when nothing is left)."""
        grace = check_older_than(older_than)
        if state is not None and state not in cleaning.CLEANABLE_STATES:
            raise InvalidOptionError(
                f"unknown state {state!r}: use one of {', '.join(cleaning.CLEANABLE_STATES)}"
            )
        if queue is not None and not await self._queue_exists(queue):
            raise UnknownQueueError(f"no queue named {queue!r}")
        return await cleaning.clean_history(
            self.db, grace, queue=queue, state=state, now=self.clock.now(), budget=budget
        )

    # -- workers and queues at a glance (queue.roster, queue.overview) -------------------

    async def workers(self, *, lease: timedelta | float | None = None) -> Workers:
        """The workers (live, and those silent for less than an hour), oldest first, each with
        its heartbeat's age, whether it is alive and the jobs it holds; and the scheduler.
        ``lease``: the workers' lease (default WorkerConfig's), which decides alive (see
        ``queue.roster``)."""
        span = DEFAULT_LEASE if lease is None else check_older_than(lease, "lease")
        if span <= timedelta(0):
            raise InvalidOptionError("lease must be positive")
        return await read_workers(self.db, now=self.clock.now(), lease=span)

    async def queue_overview(self, name: str | None = None) -> list[QueueOverview]:
        """Every queue (or one) at a glance: jobs by state, oldest waiting age, throughput,
        paused and limits (see ``queue.overview``). An unknown name raises UnknownQueueError."""
        queue = None if name is None else check_queue_name(name)
        found = await read_overview(self.db, queue=queue, now=self.clock.now())
        if queue is not None and not found:
            raise UnknownQueueError(f"no queue named {name!r}")
        return found

    async def _call(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a query that calls a Conveyor SQL function; its refusals become ConveyorErrors."""
        with self._refusals():
            return await self.db.fetch(name, params)

    @staticmethod
    @contextmanager
    def _refusals() -> Iterator[None]:
        """A Conveyor SQL function's refusals, raised as ConveyorErrors."""
        try:
            yield
        except psycopg.errors.NoDataFound as exc:
            raise NotFoundError(sql_error_message(exc)) from None
        except psycopg.errors.UniqueViolation as exc:
            raise ConflictError(sql_error_message(exc)) from None
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.ProgramLimitExceeded) as exc:
            raise InvalidOptionError(sql_error_message(exc)) from None
        except psycopg.errors.RaiseException as exc:
            raise ConveyorError(sql_error_message(exc)) from None


# A schedule's definition, in the order the lock_schedule statement returns it.
SCHEDULE_FIELDS = ("cron", "task", "args", "timezone", "queue", "priority", "max_attempts", "catch_up")


class BatchHandle:
    """An open batch: jobs enqueued through it join it (on the batch's connection, if any)."""

    def __init__(self, client: Conveyor, batch_id: int, conn: Any = None) -> None:
        self.id = batch_id
        self._client = client
        self._conn = conn

    async def enqueue(self, task: TaskRef, args: Mapping[str, Any] | None = None, **options: Any) -> int:
        """:meth:`Conveyor.enqueue` into this batch."""
        options.setdefault("conn", self._conn)
        return await self._client.enqueue(task, args, batch=self.id, **options)

    async def enqueue_many(self, jobs: Iterable[JobRequest], *, after: int | None = None) -> list[int]:
        """:meth:`Conveyor.enqueue_many` into this batch (one transaction)."""
        return await self._client.enqueue_many(jobs, conn=self._conn, after=after, batch=self.id)


def sql_error_message(exc: Exception) -> str:
    """The message of a refusal from a Conveyor SQL function, without its "conveyor.fn: " prefix."""
    diag = getattr(exc, "diag", None)
    message = str(getattr(diag, "message_primary", None) or exc)
    return _FUNCTION_PREFIX.sub("", message, count=1)


_FUNCTION_PREFIX = re.compile(r"^conveyor\.\w+: ")
