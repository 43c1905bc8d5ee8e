"""Scheduler regressions found in review: fires lost to passing errors, to definitions made
just before a fire time, to syncs from other code; busy loops; bad input getting through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, FrozenClock, InvalidOptionError, Registry, UnknownTaskError
from conveyor.queue.scheduler import Scheduler, SchedulerConfig

from ..helpers import DB

START = datetime(2025, 6, 2, 9, 0, 30, tzinfo=UTC)


def at(minute: int, second: float = 0.0) -> datetime:
    return START.replace(second=0) + timedelta(minutes=minute, seconds=second)


@asynccontextmanager
async def running_scheduler(
    database_url: str, schema: str, registry: Registry, clock: Any, **config: Any
) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(
        database_url, schema=schema, registry=registry, clock=clock, config=SchedulerConfig(**config)
    )
    await scheduler.db.open()
    try:
        yield scheduler
    finally:
        await scheduler.db.close()


def fire_times(db: DB, name: str) -> list[tuple[datetime, str]]:
    return db.all(
        "select fire_time, kind from {schema}.schedule_fires where schedule = %s order by fire_time, id",
        [name],
    )


@pytest.fixture
def report_task(registry: Registry) -> Any:
    @registry.task
    def report(what: str = "") -> str:
        return what

    return report


# -- one transient database error stops a schedule for good ---------------------------------


async def test_a_transient_error_does_not_stop_a_schedule_for_good(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    """A deadlock / lock timeout / dropped connection while firing is retried next tick,
    not turned into a permanent ``error`` that only a redefinition with a new cron clears."""
    registry.schedule("minutely", "* * * * *", report_task, {"what": "x"})
    clock = FrozenClock(START)
    # The first job insert fails with a transient error (what a deadlock or a killed
    # connection looks like to the scheduler); later ones succeed.
    db.all(
        """
        create sequence {schema}.attempts;
        create function {schema}.flaky() returns trigger language plpgsql as $$
        begin
            -- A sequence, not a table: its count survives the rollback the error causes.
            if nextval('{schema}.attempts') = 1 then
                raise exception 'deadlock detected (simulated)' using errcode = 'deadlock_detected';
            end if;
            return new;
        end $$;
        create trigger flaky before insert on {schema}.jobs for each row execute function {schema}.flaky();
        """
    )
    async with running_scheduler(database_url, schema, registry, clock) as scheduler:
        await scheduler.sync_declared()
        await scheduler.tick()
        clock.set(at(1, 0.25))
        await scheduler.tick()  # deadlock: the 09:01 fire rolls back, to be retried
        assert fire_times(db, "minutely") == []
        for minute in (2, 3):
            clock.set(at(minute, 0.25))
            await scheduler.tick()
    error = db.one("select error from {schema}.schedules where name = 'minutely'")
    assert error is None, f"schedule stopped: {error}"
    # 09:01 came a minute late, and nothing was lost.
    assert fire_times(db, "minutely") == [(at(1), "late"), (at(2), "on_time"), (at(3), "on_time")]


# -- a schedule redefined (args only) or created just before a fire time loses that fire ---


async def test_replacing_only_the_args_keeps_the_fire_that_is_due(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    clock = FrozenClock(START)
    await client.create_schedule("minutely", "* * * * *", report_task, {"what": "old"})
    async with running_scheduler(database_url, schema, registry, clock) as scheduler:
        await scheduler.tick()  # next fire 09:01
        # 09:01:00.5: the 09:01 fire is due but the leader has not ticked yet (a hand-over,
        # a slow round); an operator changes the arguments only, same cron.
        await client.create_schedule("minutely", "* * * * *", report_task, {"what": "new"}, replace=True)
        clock.set(at(1, 0.5))
        await scheduler.tick()
        clock.set(at(2, 0.5))
        await scheduler.tick()
    assert fire_times(db, "minutely") == [(at(1), "on_time"), (at(2), "on_time")]


async def test_a_schedule_created_before_its_first_fire_time_fires_it(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    """Created at 09:00:30 (the scheduler last ticked at 09:00:30 too); the scheduler's next
    round is at 09:01:00.5. The 09:01 fire time came after the schedule existed."""
    clock = FrozenClock(START)
    async with (
        Conveyor(database_url, schema=schema, registry=registry, clock=clock) as pinned,
        running_scheduler(database_url, schema, registry, clock) as scheduler,
    ):
        await scheduler.tick()
        await pinned.create_schedule("minutely", "* * * * *", report_task)
        clock.set(at(1, 0.5))
        await scheduler.tick()
    assert fire_times(db, "minutely") == [(at(1), "on_time")]


# -- sync from a process with other code deletes schedules and drops the pause ----------------


async def test_a_process_with_other_task_modules_does_not_wipe_declared_schedules_or_their_pause(
    database_url: str, schema: str, client: Conveyor, db: DB
) -> None:
    app = Registry()

    @app.task
    def nightly_report() -> None: ...

    app.schedule("nightly", "0 3 * * *", nightly_report)

    other = Registry()  # e.g. a scheduler started with --tasks other_module, or older code

    @other.task
    def something_else() -> None: ...

    clock = FrozenClock(START)
    async with running_scheduler(database_url, schema, app, clock) as first:
        await first.sync_declared()
    await client.pause_schedule("nightly")  # an operator pauses it
    async with running_scheduler(database_url, schema, other, clock) as second:
        await second.sync_declared()
    assert db.all("select name, paused from {schema}.schedules") == [("nightly", True)]


# -- a schedule with no next fire time whose row is locked makes the loop spin ----------------


async def test_the_scheduler_does_not_spin_when_a_new_schedule_is_locked(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    await client.create_schedule("minutely", "* * * * *", report_task)
    # An operator's open transaction holds the row (e.g. BEGIN; SELECT conveyor.pause_schedule(...)).
    with db.connect() as holder:
        holder.execute(db.compose("select {schema}.pause_schedule('minutely')"))
        scheduler = Scheduler(database_url, schema=schema, registry=registry)
        running = asyncio.create_task(scheduler.run())
        await asyncio.wait_for(scheduler.started.wait(), 10)
        first = scheduler.ticks
        await asyncio.sleep(2.0)  # a rate is measured over a window of time
        ticks = scheduler.ticks - first
        scheduler.stop()
        await asyncio.wait_for(running, 20)
        holder.rollback()
    assert ticks <= 4, f"{ticks} scheduler rounds in 2 s (tick is 1 s): a busy loop"


# -- bad input that gets through ------------------------------------------------------------


async def test_the_client_refuses_a_schedule_for_an_unknown_task(client: Conveyor, db: DB) -> None:
    """Enqueue refuses an unknown task (UnknownTaskError); a schedule for one is accepted,
    arguments unchecked, and every fire then sends a job no worker knows."""
    with pytest.raises(UnknownTaskError, match="unknown task 'sned_email'"):
        await client.create_schedule("typo", "* * * * *", "sned_email", {"anything": [1, 2]})
    assert db.all("select name from {schema}.schedules") == []


async def test_a_declared_schedule_with_an_empty_task_name_is_refused_when_declared(
    database_url: str, schema: str, db: DB
) -> None:
    """Registry.schedule accepts task ''; the scheduler then dies at start with a raw
    CheckViolation from sync_schedules (and no declared schedule is written)."""
    app = Registry()
    with pytest.raises(InvalidOptionError, match="the task name is empty"):
        app.schedule("empty", "* * * * *", "")
    async with running_scheduler(database_url, schema, app, FrozenClock(START)) as scheduler:
        await scheduler.sync_declared()


def test_sql_create_schedule_refuses_oversized_args_like_enqueue_does(db: DB) -> None:
    big = '{"blob": "' + "x" * 2_000_000 + '"}'
    with pytest.raises(psycopg.Error):
        db.all("select {schema}.enqueue('report', %s::jsonb)", [big])  # refused: 1 MiB limit
    with pytest.raises(psycopg.Error):
        db.all("select {schema}.create_schedule('big', '* * * * *', 'report', %s::jsonb)", [big])


async def test_the_scheduler_does_not_spin_when_a_due_schedule_is_locked(
    database_url: str, schema: str, registry: Registry, client: Conveyor, db: DB, report_task: Any
) -> None:
    """The same with a schedule that is simply due: e.g. the old leader hung (network
    partition) in the middle of firing it, still holding its row until the server notices."""
    await client.create_schedule("every-second", "* * * * * *", report_task)
    db.all("update {schema}.schedules set next_fire_at = now() - interval '1 second'")
    with db.connect() as holder:
        holder.execute(db.compose("select * from {schema}.schedules for update"))
        scheduler = Scheduler(database_url, schema=schema, registry=registry)
        running = asyncio.create_task(scheduler.run())
        await asyncio.wait_for(scheduler.started.wait(), 10)
        first = scheduler.ticks
        await asyncio.sleep(2.0)  # a rate is measured over a window of time
        ticks = scheduler.ticks - first
        scheduler.stop()
        await asyncio.wait_for(running, 20)
        holder.rollback()
    assert ticks <= 4, f"{ticks} scheduler rounds in 2 s (tick is 1 s): a busy loop"
