"""Retention in bounded steps: every statement takes at most its batch of rows through an
index, a run stops when its budget is spent and the next one resumes, the live path never
waits on it; and queue_stats reads a rollup plus the rows finished since, not whole tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, FrozenClock, Registry
from conveyor.queue.retention import apply_retention

from ..helpers import DB, wait_until

AT = datetime(2020, 3, 10, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
NOTHING = {
    "history partitions dropped": 0,
    "finished jobs moved to the run log": 0,
    "dead jobs moved to the run log": 0,
    "run log partitions dropped": 0,
    "run log rows deleted": 0,
    "fire log rows deleted": 0,
}


@pytest.fixture
async def pinned(database_url: str, schema: str, registry: Registry) -> Any:
    async with Conveyor(database_url, schema=schema, registry=registry, clock=FrozenClock(AT)) as client:
        yield client


def fill_history(
    db: DB, first_id: int, count: int, queue: str, first: datetime, step: timedelta, state: str = "completed"
) -> None:
    """``count`` finished jobs, ids from ``first_id``, finished ``step`` apart from ``first``."""
    db.all(
        "insert into {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id,"
        " attempt, max_attempts, priority, state, queue, task, args, result, errors)"
        " select %(id)s + n, %(first)s, %(first)s, %(first)s, %(first)s + n * %(step)s::interval, null, 1, 5, 2,"
        " %(state)s, %(queue)s, 'report', '{{\"n\": 1}}', null, '[]' from generate_series(0, %(count)s - 1) n",
        {"id": first_id, "first": first, "step": step, "count": count, "queue": queue, "state": state},
    )


def fill_dead(db: DB, first_id: int, count: int, queue: str, died_at: datetime) -> None:
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts,"
        " priority, queue, task, args, errors) select %(id)s + n, %(at)s, %(at)s, %(at)s, %(at)s + n * interval '1 s',"
        " 5, 5, 2, %(queue)s, 'report', '{{}}', '[{{\"error\": \"boom\"}}]' from generate_series(0, %(count)s - 1) n",
        {"id": first_id, "count": count, "queue": queue, "at": died_at},
    )


IDS = {
    "job_history": "select id from {schema}.job_history order by id",
    "dead_jobs": "select id from {schema}.dead_jobs order by id",
    "job_runs": "select id from {schema}.job_runs order by id",
}


def ids(db: DB, table: str) -> list[int]:
    return [row[0] for row in db.all(IDS[table])]


async def test_a_run_past_its_budget_does_one_batch_of_each_step_and_the_next_run_resumes(
    pinned: Conveyor, db: DB
) -> None:
    """Batches of 10, no time budget: each run takes one batch of each step and stops; an
    expired day is copied to the run log 10 rows a run and dropped once copied; every job
    reaches the run log exactly once."""
    db.all("select {schema}.ensure_history_partitions(0, %s)", [AT - 5 * DAY])  # 4 and 5 March
    db.all("select {schema}.ensure_history_partitions(1, %s)", [AT])
    db.all("insert into {schema}.queues (name) values ('fast')")
    await pinned.set_retention("fast", completed_keep=HOUR)
    fill_history(db, 1, 25, "default", AT - 5 * DAY, timedelta(seconds=1))  # an expired day
    fill_history(db, 101, 25, "fast", AT - 3 * HOUR, timedelta(seconds=1))  # past fast's hour
    fill_dead(db, 201, 25, "default", AT - 30 * DAY)

    runs = [await apply_retention(pinned.db, now=AT, budget=0, batch=10) for _ in range(5)]

    assert runs == [
        # The empty 4 March is dropped; its drop spends the budget, so 5 March waits.
        {**NOTHING, "history partitions dropped": 1, "finished jobs moved to the run log": 10,
         "dead jobs moved to the run log": 10},
        {**NOTHING, "finished jobs moved to the run log": 10, "dead jobs moved to the run log": 10},
        {**NOTHING, "finished jobs moved to the run log": 5, "dead jobs moved to the run log": 5},
        {**NOTHING, "history partitions dropped": 1},  # its last 5 rows copied, then dropped
        NOTHING,
    ]  # fmt: skip
    assert ids(db, "job_history") == []
    assert ids(db, "dead_jobs") == []
    assert ids(db, "job_runs") == [*range(1, 26), *range(101, 126), *range(201, 226)]
    assert db.all("select * from {schema}.partition_copies") == []


async def test_an_expired_day_part_copied_keeps_its_mark_and_is_copied_once(pinned: Conveyor, db: DB) -> None:
    db.all("select {schema}.ensure_history_partitions(0, %s)", [AT - 5 * DAY])
    fill_history(db, 1, 7, "default", AT - 5 * DAY, timedelta(minutes=1))
    day = f"job_history_{AT - 5 * DAY:%Y%m%d}"
    step = "select copied, dropped from {schema}.drop_partition_v1(%s, 3)"
    assert db.one(step, [day]) == (3, False)
    assert db.one("select copied_to from {schema}.partition_copies where partition = %s", [day]) == 3
    assert db.one(step, [day]) == (3, False)
    assert db.one(step, [day]) == (1, True)
    assert ids(db, "job_runs") == list(range(1, 8))
    assert db.one("select to_regclass(%s)", [f'"{db.schema}".{day}']) is None
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a daily partition"):
        db.all(step, ["jobs"])


def history_table_reads(conn: psycopg.Connection[Any], schema: str) -> dict[str, tuple[int, int, int]]:
    """This transaction's (sequential scans, rows read by them, rows fetched by index) per
    relation of the schema that holds finished work."""
    return {
        name: (seq, seq_read, idx_fetched)
        for name, seq, seq_read, idx_fetched in conn.execute(
            "select relname, seq_scan, seq_tup_read, idx_tup_fetch from pg_stat_xact_user_tables"
            " where schemaname = %s and (relname like 'job_history%%' or relname like 'job_runs%%'"
            " or relname = 'dead_jobs')",
            [schema],
        ).fetchall()
    }


def big(db: DB) -> set[str]:
    """The relations of finished work holding more than a thousand rows."""
    return {
        name
        for (name,) in db.all(
            "select relname from pg_stat_user_tables where schemaname = %s and n_live_tup > 1000", [db.schema]
        )
    }


async def test_each_retention_statement_reads_through_an_index_not_the_whole_history(
    pinned: Conveyor, db: DB
) -> None:
    """20,000 finished jobs in one day, a queue keeping an hour, a queue capped at 4,700, and
    10,000 dead jobs: one batch of each step scans none of the large tables."""
    db.all("select {schema}.ensure_history_partitions(1, %s)", [AT])
    for queue in ("fast", "capped"):
        db.all("insert into {schema}.queues (name) values (%s)", [queue])
    await pinned.set_retention("fast", completed_keep=HOUR)
    await pinned.set_retention("capped", completed_max=4700)
    start = AT - 11 * HOUR
    fill_history(db, 1, 10_000, "default", start, timedelta(seconds=2))
    fill_history(db, 20_001, 5_000, "fast", start, timedelta(seconds=4))
    fill_history(db, 40_001, 5_000, "capped", start, timedelta(seconds=4))
    fill_dead(db, 60_001, 10_000, "default", AT - 6 * DAY)
    db.all("analyze {schema}.job_history")
    db.all("analyze {schema}.dead_jobs")
    db.all("analyze {schema}.job_runs")
    large = big(db)
    assert f"job_history_{AT:%Y%m%d}" in large
    assert "dead_jobs" in large

    with db.connect() as conn:
        steps = dict(
            conn.execute(
                db.compose("select step, affected from {schema}.retention_batch_v1(%s, 500)"), [AT]
            ).fetchall()
        )
        counted = conn.execute(db.compose("select {schema}.count_finished_v1(%s, 12)"), [AT]).fetchone()
        reads = history_table_reads(conn, db.schema)
        conn.rollback()
    # One batch for the step: capped's 300 beyond its 4,700 newest (first by name), then fast's.
    assert steps["finished jobs moved to the run log"] == 500
    assert db.one("select count(*) from {schema}.job_history where queue = 'fast'") == 5000  # rolled back
    assert counted == (12,)
    scanned = {name: reads[name] for name in large if reads.get(name, (0, 0, 0))[0] > 0}
    assert scanned == {}, f"sequential scans of large tables: {scanned}"
    fetched = sum(reads[name][2] for name in large if name in reads)
    # Rows the batch moved and those it read to find its end, the cap's 4,700 newest, and one
    # hour counted per queue.
    assert fetched < 2 * 500 + 4700 + 3 * 1800 + 200, reads


async def test_no_retention_step_locks_the_live_table_and_jobs_run_while_one_is_open(
    pinned: Conveyor, client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    db.all("select {schema}.ensure_history_partitions(0, %s)", [AT - 5 * DAY])
    # Ids far above those enqueue gives.
    fill_history(db, 10_001, 50, "default", AT - 5 * DAY, timedelta(seconds=1))
    fill_history(db, 10_101, 50, "default", AT - 2 * DAY, timedelta(seconds=1))  # default partition
    fill_dead(db, 10_201, 50, "default", AT - 30 * DAY)

    @registry.task
    async def noop() -> None:
        pass

    with db.connect() as retention:
        retention.execute(db.compose("select * from {schema}.retention_batch_v1(%s, 10)"), [AT])
        retention.execute(db.compose("select {schema}.count_finished_v1(%s, 12)"), [AT])
        retention.execute(
            db.compose("select * from {schema}.drop_partition_v1(%s, 10)"),
            [f"job_history_{AT - 5 * DAY:%Y%m%d}"],
        )
        held = retention.execute(
            "select c.relname, l.mode from pg_locks l join pg_class c on c.oid = l.relation"
            " where l.pid = pg_backend_pid() and c.relnamespace = %s::regnamespace",
            [f'"{db.schema}"'],
        ).fetchall()
        assert [name for name, _ in held if name.startswith("jobs")] == []
        assert {mode for _, mode in held} <= {"AccessShareLock", "RowShareLock", "RowExclusiveLock"}

        # The live path, with the retention transaction open: enqueue, claim, ack.
        job_id = await client.enqueue(noop)
        async with start_worker(concurrency=2):
            await wait_until(
                lambda: db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1,
                within=20,
            )
        retention.rollback()


async def test_queue_stats_counts_the_rollup_and_what_finished_since(client: Conveyor, db: DB) -> None:
    """Before any count, the last 24 hours in one pass (as before); after a count, the
    rollup's buckets plus the rows finished since its mark. Rows written later into a
    bucket already counted are not seen; rows leaving job_history stay counted. With no
    count for over an hour, one pass again."""
    db.all("insert into {schema}.queues (name) values ('stats')")
    now = db.one("select now()")
    for job_id, age, state in [
        (1, 30 * 60, "completed"),
        (2, 2 * 3600, "completed"),
        (3, 23 * 3600, "completed"),
        (4, 25 * 3600, "completed"),  # older than 24 h
        (5, 3600, "cancelled"),
    ]:
        fill_history(db, job_id, 1, "stats", now - timedelta(seconds=age), timedelta(0), state)

    def completed() -> int:
        return int(db.one("select completed_24h from {schema}.queue_stats where queue = 'stats'"))

    assert completed() == 3
    assert db.one("select {schema}.count_finished_v1(now(), 1000)") > 0
    assert completed() == 3  # now from the rollup
    fill_history(db, 6, 1, "stats", now, timedelta(0))  # after the mark: read row by row
    assert completed() == 4
    fill_history(db, 7, 1, "stats", now - 2 * HOUR, timedelta(0))  # late, into a counted bucket
    assert completed() == 4
    db.all("delete from {schema}.job_history where id in (1, 2)")  # gone to the run log
    assert completed() == 4
    stats = {s.queue: s for s in await client.queue_stats()}
    assert stats["stats"].completed_24h == 4
    # Nothing counted for over an hour (no scheduler): one pass over what job_history holds.
    db.all("update {schema}.finished_counts_mark set counted_to = counted_to - interval '2 hours'")
    assert completed() == 3  # 3, 6 and 7


async def test_queue_stats_reads_only_the_rows_finished_since_the_last_count(db: DB) -> None:
    """20,000 jobs finished over the last 20 hours: once counted, one read of the view
    fetches the few rows since the mark, and scans none of the history."""
    db.all("select {schema}.ensure_history_partitions(1, now())")
    db.all("insert into {schema}.queues (name) values ('stats')")
    now = db.one("select now()")
    fill_history(db, 1, 20_000, "stats", now - 20 * HOUR, timedelta(seconds=3.6))  # up to now
    db.all("analyze {schema}.job_history")
    large = big(db)
    db.all("select {schema}.count_finished_v1(now(), 1000)")
    with db.connect() as conn:
        (completed,) = conn.execute(
            db.compose("select completed_24h from {schema}.queue_stats where queue = 'stats'")
        ).fetchone() or (None,)
        reads = history_table_reads(conn, db.schema)
        conn.rollback()
    assert completed == 20_000
    assert {name: reads[name] for name in large if reads.get(name, (0, 0, 0))[0] > 0} == {}
    # The rows since the mark: at most the last 6 minutes (one 5-minute bucket and the
    # minute a bucket waits before it is counted), a job every 3.6 s.
    assert sum(reads[name][2] for name in large if name in reads) <= 6 * 60 / 3.6 + 2


def test_apply_retention_from_psql_goes_in_the_same_bounded_steps(db: DB) -> None:
    """CALL apply_retention() commits after every batch, so it runs outside a transaction
    block; it does what the scheduler's run does."""
    db.all("select {schema}.ensure_history_partitions(0, %s)", [AT - 5 * DAY])
    fill_history(db, 1, 12_000, "default", AT - 5 * DAY, timedelta(seconds=1))  # three batches' worth
    fill_history(db, 20_001, 5, "default", AT - 2 * DAY, timedelta(seconds=1))  # the default partition
    fill_dead(db, 30_001, 5, "default", AT - 30 * DAY)
    with db.connect(autocommit=True) as conn:
        conn.execute(db.compose("call {schema}.apply_retention(%s)"), [AT])
    assert db.one("select count(*) from {schema}.job_history") == 0
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    assert db.one("select count(*), count(distinct id) from {schema}.job_runs") == (12_010, 12_010)
    assert db.one("select to_regclass(%s)", [f'"{db.schema}".job_history_{AT - 5 * DAY:%Y%m%d}']) is None
    with db.connect() as conn, pytest.raises(psycopg.errors.InvalidTransactionTermination):
        conn.execute(db.compose("call {schema}.apply_retention(%s)"), [AT])  # inside a transaction block
