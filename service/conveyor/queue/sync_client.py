"""The sync client: everything the async client does, from sync code (Flask, Django,
scripts, sync SQLAlchemy).

Enqueueing runs the same conversations as the async client (``queue.enqueue``) on sync
psycopg connections, so a job can join the caller's sync transaction. Every other
operation is the async client's own method, run on a private event loop thread by
:func:`blocking`: one implementation, the same signature and docstring.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Future
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from ..clock import Clock, DatabaseClock
from ..db.connections import caller_sync_connection, sync_pool
from ..db.queries import for_schema
from ..db.steps import Flow, run_sync
from ..errors import ConfigurationError, ConveyorError
from ..settings import Settings
from ..tasks import Registry, default_registry
from .bulk import Batch, enqueue_many, prepare_many
from .client import Conveyor, sql_error_message
from .conflicts import run_again_on_conflict_sync
from .enqueue import JobRequest, TaskRef, enqueue_one, prepare
from .flows import (
    LINK_ATTEMPTS,
    LINK_CONFLICTS,
    chain_flow,
    check_callback,
    check_id,
    check_link,
    link_conflict,
    linked,
    one,
)
from .registered import RegisteredTasks, unknown_names

P = ParamSpec("P")
R = TypeVar("R")


def blocking(
    method: Callable[Concatenate[Conveyor, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncConveyor, P], R]:
    """The async client's ``method`` as a sync method of SyncConveyor (same signature and
    docstring), run on the SyncConveyor's private event loop."""

    def call(self: SyncConveyor, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._wait(method(self._client_of_loop(), *args, **kwargs))

    functools.update_wrapper(call, method)
    return call


# How long a close waits for cancelled calls to end before it drops their connections.
CANCEL_GRACE = 2.0


class _LoopThread:
    """An event loop running on a daemon thread of its own, for one SyncConveyor."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._calls: set[asyncio.Task[Any]] = set()  # operations in flight, for cancel_calls
        self._thread = threading.Thread(target=self.loop.run_forever, name="conveyor-sync-loop", daemon=True)
        self._thread.start()

    def wait(self, coro: Coroutine[Any, Any, R]) -> R:
        future: Future[R] = asyncio.run_coroutine_threadsafe(self._tracked(coro), self.loop)
        try:
            return future.result()
        except CancelledError:
            raise ConfigurationError("this SyncConveyor was closed while the call ran") from None

    async def _tracked(self, coro: Coroutine[Any, Any, R]) -> R:
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            return await coro
        except Exception:
            if task.cancelling():
                # Cancelled by a close, and ended by the error of its dropped connection.
                raise asyncio.CancelledError from None
            raise
        finally:
            self._calls.discard(task)

    def cancel_calls(self, *, stuck: Callable[[], None] | None = None) -> None:
        """End the operations in flight (their callers get an error) rather than leave them
        waiting forever on a loop that stops under them. ``stuck``: called when cancelled
        calls have not ended within CANCEL_GRACE seconds (to drop their connections)."""

        async def cancel() -> None:
            calls = list(self._calls)
            for task in calls:
                task.cancel()
            if calls and stuck is not None:
                _, pending = await asyncio.wait(calls, timeout=CANCEL_GRACE)
                if pending:
                    stuck()
            await asyncio.gather(*calls, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncBatchHandle:
    """An open batch of a SyncConveyor (see :class:`BatchHandle`)."""

    def __init__(self, client: SyncConveyor, batch_id: int, conn: Any = None) -> None:
        self.id = batch_id
        self._client = client
        self._conn = conn

    def enqueue(self, task: TaskRef, args: Mapping[str, Any] | None = None, **options: Any) -> int:
        options.setdefault("conn", self._conn)
        return self._client.enqueue(task, args, batch=self.id, **options)

    def enqueue_many(self, jobs: Iterable[JobRequest], *, after: int | None = None) -> list[int]:
        return self._client.enqueue_many(jobs, conn=self._conn, after=after, batch=self.id)


class SyncConveyor:
    """Like :class:`Conveyor`, for sync code: ``conn`` may be a psycopg ``Connection`` or a
    SQLAlchemy ``Session`` / ``Connection`` on the psycopg dialect.

    Use it from any number of threads (a WSGI server's): enqueue takes a connection of its
    pool, the other operations are serialized onto its private event loop.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        schema: str | None = None,
        registry: Registry | None = None,
        clock: Clock | None = None,
        pool_size: int = 4,
    ) -> None:
        self.settings = Settings.from_env(database_url, schema)
        self.registry = registry if registry is not None else default_registry
        self.clock: Clock = clock or DatabaseClock()
        self.queries = for_schema(self.settings.schema)
        self._pool_size = pool_size
        self._known_queues: set[str] = set()  # queues whose rows exist: enqueue takes the short insert
        self._registered = RegisteredTasks()  # tasks known by name only, as workers recorded them
        self._pool: ConnectionPool[Any] | None = None
        self._client = Conveyor(
            self.settings.database_url,
            schema=self.settings.schema,
            registry=self.registry,
            clock=self.clock,
            pool_size=pool_size,
        )
        self._loop: _LoopThread | None = None
        self._loop_lock = threading.Lock()

    def open(self) -> SyncConveyor:
        if self._pool is None:
            if self.settings.database_url is None:
                raise ConfigurationError(
                    "no database: set DATABASE_URL (or CONVEYOR_DATABASE_URL) or pass database_url"
                )
            self._pool = sync_pool(
                self.settings.database_url, min_size=1, max_size=self._pool_size, name="conveyor-sync"
            )
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        with self._loop_lock:
            if self._loop is not None:
                try:
                    self._loop.cancel_calls(stuck=self._drop_connections_in_use)
                    self._loop.wait(self._client.close())
                finally:
                    self._loop.stop()
                    self._loop = None

    def _drop_connections_in_use(self) -> None:
        if self._client._db is not None:
            self._client._db.drop_connections_in_use()

    def _client_of_loop(self) -> Conveyor:
        return self._client

    def _wait(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run one of the async client's operations on the private loop (started, and the
        async client opened, on first use)."""
        if self._pool is None:
            coro.close()
            raise ConfigurationError("this SyncConveyor is not open: use `with SyncConveyor(...)`")
        with self._loop_lock:
            if self._loop is None:
                loop = _LoopThread()
                try:
                    loop.wait(self._client.open())
                except BaseException:
                    loop.stop()
                    coro.close()
                    raise
                self._loop = loop
            running = self._loop
        return running.wait(coro)

    def __enter__(self) -> SyncConveyor:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def enqueue(
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
        after: int | None = None,
        batch: int | SyncBatchHandle | None = None,
    ) -> int:
        """Enqueue one job; returns its id (see :meth:`Conveyor.enqueue`)."""
        batch_id = batch.id if isinstance(batch, SyncBatchHandle) else batch
        if after is not None or batch_id is not None:
            check_link(after, batch_id, [unique_key])
        registry = self.registry
        if isinstance(task, str) and registry.get(task) is None:
            registry = self._with_registered([task], conn)
        job = prepare(
            registry,
            JobRequest(task, args or {}, queue, priority, delay, run_at, unique_key, max_attempts, key, meta),
        )
        if after is not None or batch_id is not None:
            return self._run_atomic(
                lambda: linked(
                    one(enqueue_one(job, channel=self.queries.channel, now=self.clock.now())),
                    after=after,
                    batch=batch_id,
                    now=self.clock.now(),
                ),
                conn,
            )[0]

        def flow() -> Flow[int]:
            return enqueue_one(
                job,
                channel=self.queries.channel,
                now=self.clock.now(),
                known_queues=self._known_queues,
                learn=conn is None,
            )

        if conn is not None:
            return run_sync(caller_sync_connection(conn), self.queries, flow())

        def on_own_connection() -> int:
            with self._connection() as own:
                return run_sync(own, self.queries, flow())

        return run_again_on_conflict_sync(on_own_connection)

    def enqueue_many(
        self,
        jobs: Iterable[JobRequest],
        *,
        conn: Any = None,
        after: int | None = None,
        batch: int | SyncBatchHandle | None = None,
    ) -> list[int]:
        """Enqueue many jobs in one transaction; returns their ids (see :meth:`Conveyor.enqueue_many`)."""
        batch_id = batch.id if isinstance(batch, SyncBatchHandle) else batch
        registry = self.registry
        if not isinstance(jobs, list | tuple):
            jobs = list(jobs)
        check_link(after, batch_id, [job.unique_key for job in jobs])
        if names := unknown_names(registry, (job.task for job in jobs)):
            registry = self._with_registered(names, conn)
        checked = Batch.of(prepare_many(registry, jobs))
        return self._run_atomic(
            lambda: linked(
                enqueue_many(
                    checked,
                    channel=self.queries.channel,
                    jobs_table=self.queries.jobs_table,
                    now=self.clock.now(),
                ),
                after=after,
                batch=batch_id,
                now=self.clock.now(),
            ),
            conn,
        )

    def _run_atomic(self, make: Callable[[], Flow[list[int]]], conn: Any) -> list[int]:
        """Run a flow in one transaction: the caller's (conn), or one of its own; ``make``
        makes the flow anew for each attempt (see flows.LINK_ATTEMPTS)."""
        attempt = 1
        while True:
            try:
                return self._run_atomic_raw(make(), conn)
            except psycopg.errors.InvalidParameterValue as exc:
                raise ConveyorError(sql_error_message(exc)) from None
            except LINK_CONFLICTS as exc:
                error = link_conflict(exc, retrying=conn is None and attempt < LINK_ATTEMPTS)
                if error is not None:
                    raise error from exc
                attempt += 1

    def _run_atomic_raw(self, flow: Flow[list[int]], conn: Any) -> list[int]:
        raw = caller_sync_connection(conn) if conn is not None else None
        if raw is not None:
            if not raw.autocommit:
                # Inside the caller's transaction (its first statement starts it if need be):
                # psycopg's transaction() here would BEGIN and COMMIT one of its own.
                return run_sync(raw, self.queries, flow)
            with raw.transaction():
                return run_sync(raw, self.queries, flow)
        with self._connection() as own, own.transaction():
            return run_sync(own, self.queries, flow)

    def _with_registered(self, names: list[str], conn: Any) -> Registry:
        """The registry with the tasks of ``names`` that workers recorded (see ``queue.registered``)."""
        if missing := self._registered.missing(names):
            params = {"names": missing}
            if conn is not None:
                rows = (
                    caller_sync_connection(conn).execute(self.queries["registered_tasks"], params).fetchall()
                )
            else:
                with self._connection() as own:
                    rows = own.execute(self.queries["registered_tasks"], params).fetchall()
            self._registered.learn(rows)
        return self._registered.overlay(self.registry, names)

    # -- chains and batches (see Conveyor.chain and Conveyor.batch) ---------------------

    def chain(self, *jobs: JobRequest, after: int | None = None, conn: Any = None) -> list[int]:
        if not jobs:
            return []
        check_link(after, None, [])
        registry = self.registry
        if names := unknown_names(registry, (job.task for job in jobs)):
            registry = self._with_registered(names, conn)
        prepared = [prepare(registry, job) for job in jobs]
        check_link(1, None, [job.unique_key for job in prepared])
        return self._run_atomic(
            lambda: chain_flow(
                [enqueue_one(job, channel=self.queries.channel, now=self.clock.now()) for job in prepared],
                after=after,
                now=self.clock.now(),
            ),
            conn,
        )

    chain.__doc__ = Conveyor.chain.__doc__

    def create_batch(
        self,
        callback: TaskRef | None = None,
        args: Mapping[str, Any] | None = None,
        *,
        priority: int | str | None = None,
        meta: Mapping[str, Any] | None = None,
        conn: Any = None,
    ) -> int:
        registry = self.registry
        if isinstance(callback, str) and registry.get(callback) is None:
            registry = self._with_registered([callback], conn)
        params = check_callback(registry, callback, args, priority, meta)
        return int(self._execute("create_batch", params, conn)[0][0])

    def seal_batch(self, batch_id: int, *, conn: Any = None) -> int | None:
        check_id("batch_id", batch_id)
        rows = self._execute("seal_batch", {"id": batch_id, "now": self.clock.now()}, conn)
        return None if rows[0][0] is None else int(rows[0][0])

    create_batch.__doc__ = Conveyor.create_batch.__doc__
    seal_batch.__doc__ = Conveyor.seal_batch.__doc__

    @contextmanager
    def batch(
        self,
        callback: TaskRef | None = None,
        args: Mapping[str, Any] | None = None,
        *,
        priority: int | str | None = None,
        meta: Mapping[str, Any] | None = None,
        conn: Any = None,
    ) -> Iterator[SyncBatchHandle]:
        """``with conveyor.batch(callback=summary) as batch: batch.enqueue(...)`` (see
        :meth:`Conveyor.batch`)."""
        handle = SyncBatchHandle(
            self, self.create_batch(callback, args, priority=priority, meta=meta, conn=conn), conn
        )
        try:
            yield handle
        except BaseException:
            if conn is None:
                self.seal_batch(handle.id)
            raise
        self.seal_batch(handle.id, conn=conn)

    def _execute(self, name: str, params: dict[str, Any], conn: Any) -> list[tuple[Any, ...]]:
        try:
            if conn is not None:
                return caller_sync_connection(conn).execute(self.queries[name], params).fetchall()
            with self._connection() as own:
                rows: list[tuple[Any, ...]] = own.execute(self.queries[name], params).fetchall()
                return rows
        except psycopg.errors.InvalidParameterValue as exc:
            raise ConveyorError(sql_error_message(exc)) from None

    # -- everything else: the async client's operations ----------------------------------

    queue_stats = blocking(Conveyor.queue_stats)
    scheduler_status = blocking(Conveyor.scheduler_status)
    queue_exists = blocking(Conveyor.queue_exists)
    queue_names = blocking(Conveyor.queue_names)
    create_queue = blocking(Conveyor.create_queue)
    pause_queue = blocking(Conveyor.pause_queue)
    resume_queue = blocking(Conveyor.resume_queue)
    set_queue_limits = blocking(Conveyor.set_queue_limits)
    queue_limits = blocking(Conveyor.queue_limits)

    pause_task = blocking(Conveyor.pause_task)
    resume_task = blocking(Conveyor.resume_task)
    pause_all = blocking(Conveyor.pause_all)
    resume_all = blocking(Conveyor.resume_all)
    pauses = blocking(Conveyor.pauses)
    tasks = blocking(Conveyor.tasks)
    cancel = blocking(Conveyor.cancel)
    abort = blocking(Conveyor.abort)
    run_now = blocking(Conveyor.run_now)
    delete_job = blocking(Conveyor.delete_job)
    schedules = blocking(Conveyor.schedules)
    create_schedule = blocking(Conveyor.create_schedule)
    update_schedule = blocking(Conveyor.update_schedule)
    check_materialized_view = blocking(Conveyor.check_materialized_view)
    pause_schedule = blocking(Conveyor.pause_schedule)
    resume_schedule = blocking(Conveyor.resume_schedule)
    trigger_schedule = blocking(Conveyor.trigger_schedule)
    remove_schedule = blocking(Conveyor.remove_schedule)
    schedule_fires = blocking(Conveyor.schedule_fires)
    retention = blocking(Conveyor.retention)
    set_retention = blocking(Conveyor.set_retention)
    apply_retention = blocking(Conveyor.apply_retention)
    get_job = blocking(Conveyor.get_job)
    list_jobs = blocking(Conveyor.list_jobs)
    dead_jobs = blocking(Conveyor.dead_jobs)
    dead_job = blocking(Conveyor.dead_job)
    retry_dead = blocking(Conveyor.retry_dead)
    retry_dead_if = blocking(Conveyor.retry_dead_if)
    retry_dead_matching = blocking(Conveyor.retry_dead_matching)
    purge_dead = blocking(Conveyor.purge_dead)
    search_jobs = blocking(Conveyor.search_jobs)
    history = blocking(Conveyor.history)
    dead_letters = blocking(Conveyor.dead_letters)
    count_dead = blocking(Conveyor.count_dead)
    clean_history = blocking(Conveyor.clean_history)
    workers = blocking(Conveyor.workers)
    queue_overview = blocking(Conveyor.queue_overview)
    task_registry = blocking(Conveyor.task_registry)
    result = blocking(Conveyor.result)
    get_batch = blocking(Conveyor.get_batch)

    def _connection(self) -> Any:
        if self._pool is None:
            raise ConfigurationError("this SyncConveyor is not open: use `with SyncConveyor(...)`")
        return self._pool.connection()
