"""The built-in task conveyor.refresh_materialized_view, run by a real worker.

A view ``sales_view`` over a table ``sales`` lives in the test's schema. To hold a refresh
in the middle (after it has locked the view, before it has read the table), the test locks
``sales`` on a connection of its own and waits until the refresh queues behind that lock;
a reader on another connection, with ``lock_timeout = '200ms'``, queries the view in a loop
meanwhile, so a refresh that blocked readers would make the reader fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor import (
    REFRESH_TASK,
    ConfigurationError,
    Conveyor,
    FrozenClock,
    Registry,
    Worker,
    WorkerConfig,
    schedule_refresh,
)
from conveyor.queue.scheduler import Scheduler, SchedulerConfig

from ..helpers import DB, wait_until


@pytest.fixture(autouse=True)
def application_task(registry: Registry) -> None:
    """A task of the application's own: a worker refuses to start with none registered."""

    @registry.task
    def note(text: str = "") -> str:
        return text


def make_view(db: DB, *, unique_index: bool = True, with_data: bool = True) -> None:
    """sales (100 rows) and sales_view over it; then 50 more sales the view does not show yet."""
    db.all(
        "create table {schema}.sales (id integer primary key, amount integer not null);"
        "insert into {schema}.sales select g, g from generate_series(1, 100) g;"
    )
    if with_data:
        db.all(
            "create materialized view {schema}.sales_view as select id, amount * 2 as doubled from {schema}.sales"
        )
    else:
        db.all(
            "create materialized view {schema}.sales_view as select id, amount * 2 as doubled from {schema}.sales"
            " with no data"
        )
    if unique_index:
        db.all("create unique index sales_view_id on {schema}.sales_view (id)")
    db.all("insert into {schema}.sales select g, g from generate_series(101, 150) g")


def view_name(schema: str) -> str:
    return f"{schema}.sales_view"


def finished_result(db: DB, job_id: int) -> Any:
    return db.one("select result from {schema}.job_history where id = %s", [job_id])


def is_finished(db: DB, job_id: int) -> bool:
    return bool(db.one("select count(*) from {schema}.job_history where id = %s", [job_id]))


class Reader:
    """Counts the view's rows in a loop on its own connection, never waiting over 200 ms for a lock."""

    def __init__(self, database_url: str, schema: str) -> None:
        self._url = database_url
        self._query = sql.SQL("select count(*) from {}.sales_view").format(sql.Identifier(schema))
        self.counts: list[int] = []
        self.errors: list[psycopg.Error] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            await conn.execute("set lock_timeout = '200ms'")
            while not self._stop.is_set():
                try:
                    cursor = await conn.execute(self._query)
                    row = await cursor.fetchone()
                    assert row is not None
                    self.counts.append(row[0])
                except psycopg.Error as exc:
                    self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()


@asynccontextmanager
async def reading(database_url: str, schema: str) -> AsyncIterator[Reader]:
    reader = Reader(database_url, schema)
    task = asyncio.create_task(reader.run())
    await wait_until(lambda: bool(reader.counts or reader.errors or task.done()))
    try:
        yield reader
    finally:
        reader.stop()
        await asyncio.wait_for(task, 10)


@asynccontextmanager
async def sales_locked(database_url: str, schema: str, db: DB) -> AsyncIterator[Any]:
    """Hold an exclusive lock on sales; the context's value waits until a refresh queues behind it."""
    async with await psycopg.AsyncConnection.connect(database_url) as blocker:
        await blocker.execute(
            sql.SQL("lock table {}.sales in access exclusive mode").format(sql.Identifier(schema))
        )

        async def refresh_waiting() -> None:
            await wait_until(
                lambda: (
                    db.one(
                        "select count(*) from pg_locks where relation = %s::regclass and not granted",
                        [f'"{schema}".sales'],
                    )
                    > 0
                )
            )

        try:
            yield refresh_waiting
        finally:
            await blocker.rollback()


def refreshed(schema: str, *, concurrently: bool, rows: int) -> dict[str, Any]:
    return {"view": view_name(schema), "concurrently": concurrently, "rows": rows}


def without_duration(result: dict[str, Any]) -> dict[str, Any]:
    duration = result.get("duration_ms")
    assert isinstance(duration, int | float), result
    assert duration >= 0, result
    return {k: v for k, v in result.items() if k != "duration_ms"}


# -- concurrently, or not -----------------------------------------------------------------


async def test_a_view_with_a_unique_index_is_refreshed_concurrently_while_readers_read(
    database_url: str, schema: str, client: Conveyor, db: DB, start_worker: Any
) -> None:
    make_view(db)
    async with reading(database_url, schema) as reader, start_worker():
        async with sales_locked(database_url, schema, db) as refresh_waiting:
            job_id = await client.enqueue(REFRESH_TASK, {"view": view_name(schema)})
            await refresh_waiting()
            # The refresh holds its lock on the view and waits for sales: readers go on.
            reads = len(reader.counts)
            await wait_until(lambda: len(reader.counts) >= reads + 20)
        await wait_until(lambda: is_finished(db, job_id))
        await wait_until(lambda: reader.counts[-1] == 150)

    assert reader.errors == []
    assert reader.counts[0] == 100
    assert set(reader.counts) == {100, 150}
    assert reader.counts == sorted(reader.counts)  # the old rows until the new ones, all at once
    result = finished_result(db, job_id)
    assert without_duration(result) == refreshed(schema, concurrently=True, rows=150)
    assert result["duration_ms"] > 0


async def test_a_view_without_a_unique_index_gets_a_plain_refresh_which_blocks_readers(
    database_url: str, schema: str, client: Conveyor, db: DB, start_worker: Any
) -> None:
    make_view(db, unique_index=False)
    async with reading(database_url, schema) as reader, start_worker():
        async with sales_locked(database_url, schema, db) as refresh_waiting:
            job_id = await client.enqueue(REFRESH_TASK, {"view": view_name(schema)})
            await refresh_waiting()
            # The same reader as above, against a plain refresh: it times out on the view.
            await wait_until(lambda: bool(reader.errors))
        await wait_until(lambda: is_finished(db, job_id))
        await wait_until(lambda: bool(reader.counts) and reader.counts[-1] == 150)

    assert all(isinstance(error, psycopg.errors.LockNotAvailable) for error in reader.errors), reader.errors
    assert without_duration(finished_result(db, job_id)) == refreshed(schema, concurrently=False, rows=150)


async def test_a_view_never_populated_gets_a_plain_refresh(
    client: Conveyor, db: DB, schema: str, start_worker: Any
) -> None:
    make_view(db, with_data=False)
    job_id = await client.enqueue(REFRESH_TASK, {"view": view_name(schema)})
    async with start_worker():
        await wait_until(lambda: is_finished(db, job_id))
    assert without_duration(finished_result(db, job_id)) == refreshed(schema, concurrently=False, rows=150)
    assert db.one("select count(*) from {schema}.sales_view") == 150


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("{schema}.sales", id="a-table"),
        pytest.param("{schema}.no_such_view", id="missing"),
        pytest.param("no such view", id="not-a-name"),
        pytest.param("a.b.c.sales_view", id="too-many-dots"),
    ],
)
async def test_a_name_that_is_not_a_materialized_view_is_discarded_after_one_attempt(
    client: Conveyor, db: DB, schema: str, start_worker: Any, name: str
) -> None:
    make_view(db)
    view = name.format(schema=schema)
    job_id = await client.enqueue(REFRESH_TASK, {"view": view})
    async with start_worker():
        # Wait for the first attempt to end, however it ends (dead, or back for a retry).
        await wait_until(
            lambda: (
                db.one(
                    "select (select count(*) from {schema}.dead_jobs where id = %s)"
                    " + (select count(*) from {schema}.jobs where id = %s and state = 'scheduled')",
                    [job_id, job_id],
                )
                > 0
            )
        )
    row = db.all("select attempt, errors from {schema}.dead_jobs where id = %s", [job_id])
    live = db.all(
        "select state, attempt, errors -> -1 ->> 'error' from {schema}.jobs where id = %s", [job_id]
    )
    assert live == [], f"retried instead of discarded: {live}"
    [(attempt, errors)] = row
    assert attempt == 1
    assert errors[-1]["error"] == f"discarded: Discard: {view!r} is not a materialized view"


# -- one refresh of a view at a time --------------------------------------------------------


async def test_a_second_refresh_of_the_same_view_while_one_runs_is_skipped(
    database_url: str, schema: str, client: Conveyor, db: DB, start_worker: Any
) -> None:
    make_view(db)
    async with start_worker(concurrency=2):
        async with sales_locked(database_url, schema, db) as refresh_waiting:
            first = await client.enqueue(REFRESH_TASK, {"view": view_name(schema)})
            await refresh_waiting()
            second = await client.enqueue(REFRESH_TASK, {"view": view_name(schema)})
            await wait_until(lambda: is_finished(db, second))
            assert not is_finished(db, first)
        await wait_until(lambda: is_finished(db, first))

        # Another session holding the refresh lock of the view (as a worker elsewhere would).
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as other:
            await other.execute(
                "select pg_advisory_lock(hashtext('conveyor refresh'), %s::regclass::oid::int)",
                [view_name(schema)],
            )
            third = await client.enqueue(REFRESH_TASK, {"view": view_name(schema)})
            await wait_until(lambda: is_finished(db, third))
            await other.execute(
                "select pg_advisory_unlock(hashtext('conveyor refresh'), %s::regclass::oid::int)",
                [view_name(schema)],
            )
        fourth = await client.enqueue(REFRESH_TASK, {"view": view_name(schema)})
        await wait_until(lambda: is_finished(db, fourth))

    skipped = {"view": view_name(schema), "skipped": "another refresh of this view is running"}
    assert finished_result(db, second) == skipped
    assert finished_result(db, third) == skipped
    assert without_duration(finished_result(db, first)) == refreshed(schema, concurrently=True, rows=150)
    assert without_duration(finished_result(db, fourth)) == refreshed(schema, concurrently=True, rows=150)


# -- on a schedule ----------------------------------------------------------------------


async def test_a_refresh_declared_on_a_schedule_is_fired_and_run(
    database_url: str, schema: str, registry: Registry, db: DB, start_worker: Any
) -> None:
    make_view(db)
    spec = schedule_refresh(view_name(schema), "* * * * * *", registry=registry)
    assert (spec.name, spec.task, spec.args) == (
        f"refresh:{view_name(schema)}",
        REFRESH_TASK,
        {"view": view_name(schema)},
    )
    start = datetime(2025, 6, 2, 9, 0, 30, tzinfo=UTC)  # in the past: a worker runs the job at once
    clock = FrozenClock(start)
    scheduler = Scheduler(
        database_url, schema=schema, registry=registry, clock=clock, config=SchedulerConfig()
    )
    await scheduler.db.open()
    try:
        await scheduler.sync_declared()
        await scheduler.tick()
        clock.advance(1)
        await scheduler.tick()
    finally:
        await scheduler.db.close()

    [(fire_time, kind, job_id)] = db.all(
        "select fire_time, kind, job_id from {schema}.schedule_fires where schedule = %s", [spec.name]
    )
    assert (fire_time, kind) == (clock.now(), "on_time")
    async with start_worker():
        await wait_until(lambda: is_finished(db, job_id))
    assert without_duration(finished_result(db, job_id)) == refreshed(schema, concurrently=True, rows=150)
    assert db.one("select count(*) from {schema}.sales_view") == 150


async def test_a_worker_with_no_tasks_of_its_own_runs_refreshes_on_the_queues_it_is_given(
    database_url: str, schema: str, client: Conveyor, db: DB
) -> None:
    """Refreshing views is built in ("a task every worker knows"): a worker for a team whose
    only jobs are scheduled refreshes needs no task module of its own, only its queues (with
    neither, it would serve "default" and bury every other job there as unknown)."""
    with pytest.raises(ConfigurationError, match="name the queues this worker serves"):
        Worker(database_url, schema=schema, registry=Registry())
    make_view(db)
    job_id = await client.enqueue(REFRESH_TASK, {"view": view_name(schema)})
    config = WorkerConfig(queues=["default"], poll_interval=0.2)
    worker = Worker(database_url, schema=schema, registry=Registry(), config=config)
    running = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: is_finished(db, job_id) or running.done())
    finally:
        worker.stop()
        await asyncio.wait_for(running, 20)
    assert without_duration(finished_result(db, job_id)) == refreshed(schema, concurrently=True, rows=150)
