"""The sync client: enqueue from sync code (Flask, Django, scripts, sync SQLAlchemy).

It runs the same enqueue conversations as the async client (``queue.enqueue``) on sync
psycopg connections; nothing else is duplicated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from psycopg_pool import ConnectionPool

from ..clock import Clock, DatabaseClock
from ..db.connections import caller_sync_connection
from ..db.queries import for_schema
from ..db.steps import run_sync
from ..errors import ConfigurationError
from ..settings import Settings
from ..tasks import Registry, default_registry
from .bulk import Batch, enqueue_many, prepare_many
from .enqueue import JobRequest, TaskRef, enqueue_one, prepare


class SyncConveyor:
    """Like :class:`Conveyor`, for sync code: ``conn`` may be a psycopg ``Connection`` or a
    SQLAlchemy ``Session`` / ``Connection`` on the psycopg dialect."""

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
        self._pool: ConnectionPool[Any] | None = None

    def open(self) -> SyncConveyor:
        if self._pool is None:
            if self.settings.database_url is None:
                raise ConfigurationError(
                    "no database: set DATABASE_URL (or CONVEYOR_DATABASE_URL) or pass database_url"
                )
            self._pool = ConnectionPool(
                self.settings.database_url,
                min_size=1,
                max_size=self._pool_size,
                kwargs={"autocommit": True},
                open=True,
                name="conveyor-sync",
            )
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

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
        conn: Any = None,
    ) -> int:
        job = prepare(
            self.registry,
            JobRequest(task, args or {}, queue, priority, delay, run_at, unique_key, max_attempts),
        )
        flow = enqueue_one(
            job,
            channel=self.queries.channel,
            now=self.clock.now(),
            known_queues=self._known_queues,
            learn=conn is None,
        )
        if conn is not None:
            return run_sync(caller_sync_connection(conn), self.queries, flow)
        with self._connection() as own:
            return run_sync(own, self.queries, flow)

    def enqueue_many(self, jobs: Iterable[JobRequest], *, conn: Any = None) -> list[int]:
        flow = enqueue_many(
            Batch.of(prepare_many(self.registry, jobs)),
            channel=self.queries.channel,
            jobs_table=self.queries.jobs_table,
            now=self.clock.now(),
        )
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

    def _connection(self) -> Any:
        if self._pool is None:
            raise ConfigurationError("this SyncConveyor is not open: use `with SyncConveyor(...)`")
        return self._pool.connection()
