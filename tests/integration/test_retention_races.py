"""Retention beside itself and beside a moved clock: a day being copied to the run log is
never taken row by row too (no run-log row twice), two runs at once both finish (a day the
other dropped is skipped), and a clock moved forward neither moves the queue_stats rollup
past the database's time nor drops the day acks still write into."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor import Conveyor, FrozenClock

from ..helpers import DB, wait_until_sync
from .test_retention_batches import fill_history

AT = datetime(2020, 3, 10, 12, tzinfo=UTC)
DAY = timedelta(days=1)
OLD_DAY = "job_history_20200305"


def old_day_with_two_queues(db: DB) -> None:
    """5 March 2020 (expired at AT): 20 rows, every other one in 'short' (kept 1 hour)."""
    db.all("select {schema}.ensure_history_partitions(0, %s)", [AT - 5 * DAY])
    db.all("select {schema}.create_queue('short')")
    db.all("select {schema}.set_retention('short', completed_keep => interval '1 hour')")
    for n in range(20):
        fill_history(
            db, n + 1, 1, "short" if n % 2 else "default", AT - 5 * DAY + n * timedelta(minutes=1), DAY
        )


def test_the_row_step_leaves_a_day_being_copied_alone_so_no_run_log_row_is_there_twice(db: DB) -> None:
    old_day_with_two_queues(db)
    assert db.one("select copied from {schema}.drop_partition_v1(%s, 5)", [OLD_DAY]) == 5
    db.all("select * from {schema}.retention_batch_v1(%s, 5000)", [AT])
    assert db.one("select dropped from {schema}.drop_partition_v1(%s, 5000)", [OLD_DAY])
    runs, distinct = db.all("select count(*), count(distinct id) from {schema}.job_runs")[0]
    assert (runs, distinct) == (20, 20)


def connect(database_url: str, schema: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(database_url)
    conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(schema)))
    conn.commit()
    return conn


def waiting_on_a_lock(db: DB, pid: int) -> bool:
    return bool(db.one("select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", [pid]))


def test_a_second_drop_of_a_day_the_first_dropped_meanwhile_skips_it(
    database_url: str, schema: str, db: DB
) -> None:
    """The first run drops the day (not committed yet); the second, waiting for it, then finds
    the day gone and returns (0 copied, not dropped) instead of failing on a missing table."""
    old_day_with_two_queues(db)
    first, second = connect(database_url, schema), connect(database_url, schema)
    results: list[Any] = []
    try:
        assert first.execute("select dropped from drop_partition_v1(%s, 5000)", [OLD_DAY]).fetchone() == (
            True,
        )
        second_pid = second.info.backend_pid

        def drop_again() -> None:
            try:
                results.append(
                    second.execute("select * from drop_partition_v1(%s, 5000)", [OLD_DAY]).fetchone()
                )
                second.commit()
            except psycopg.Error as exc:
                results.append(exc)

        thread = threading.Thread(target=drop_again)
        thread.start()
        wait_until_sync(lambda: waiting_on_a_lock(db, second_pid), within=5)
        first.commit()
        thread.join(10)
    finally:
        first.close()
        second.close()
    assert results == [(0, False)]
    assert db.all("select count(*), count(distinct id) from {schema}.job_runs")[0] == (20, 20)


async def test_two_retention_runs_at_once_both_finish_and_copy_every_job_once(
    database_url: str, schema: str, db: DB
) -> None:
    """Two threads each run retention (as the scheduler or `conveyor retention apply` does)
    over three expired days: both finish without error; every job is in the run log once."""
    db.all("select {schema}.ensure_history_partitions(0, %s)", [AT - 6 * DAY])
    db.all("select {schema}.ensure_history_partitions(2, %s)", [AT - 5 * DAY])
    db.all("select {schema}.create_queue('short')")
    db.all("select {schema}.set_retention('short', completed_keep => interval '1 hour')")
    for day in range(4, 7):
        first = AT - day * DAY
        fill_history(db, day * 100_000, 30_000, "default", first, timedelta(seconds=2))
        fill_history(db, day * 100_000 + 50_000, 10_000, "short", first, timedelta(seconds=5))
    expired = len(db.all("select * from {schema}.expired_partitions(%s)", [AT]))
    errors: list[BaseException] = []
    done: list[dict[str, int]] = []

    def run() -> None:
        import asyncio

        async def once() -> None:
            async with Conveyor(database_url, schema=schema, clock=FrozenClock(AT)) as client:
                done.append(await client.apply_retention())

        try:
            asyncio.run(once())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sum(run["history partitions dropped"] for run in done) == expired  # each by one run
    assert db.all("select count(*), count(distinct id) from {schema}.job_runs")[0] == (120_000, 120_000)
    assert db.one("select count(*) from {schema}.job_history") == 0


def test_the_rollup_mark_never_passes_the_database_clock(db: DB) -> None:
    db.all("select {schema}.count_finished_v1(now() + interval '1 day', 1000)")
    assert db.one("select counted_to <= now() from {schema}.finished_counts_mark")
    fill_history(db, 1, 50, "default", datetime.now(UTC), timedelta(0))
    assert db.one("select completed_24h from {schema}.queue_stats where queue = 'default'") == 50


def test_a_clock_moved_forward_never_drops_today_or_a_later_day(db: DB) -> None:
    db.all("select {schema}.ensure_history_partitions(2, now())")
    today = db.one("select 'job_history_' || to_char(now() at time zone 'UTC', 'YYYYMMDD')")
    expired = db.all("select * from {schema}.expired_partitions(now() + interval '30 days')")
    assert [p for (p,) in expired if p[-8:] >= today[-8:]] == []
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="holds today or a later day"):
        db.one("select * from {schema}.drop_partition_v1(%s, 5000)", [today])
    assert db.one("select to_regclass(%s) is not null", [f"{db.schema}.{today}"])
