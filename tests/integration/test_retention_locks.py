"""Retention and locks: acks must not wait behind it, callers keep their settings, and the
scheduler keeps its lease while retention waits on readers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from ..helpers import DB

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def finished(db: DB, job_id: int, finished_at: datetime, queue: str = "default") -> None:
    db.all(
        "insert into {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id,"
        " attempt, max_attempts, priority, state, queue, task, args, result, errors)"
        " values (%s, %s, %s, %s, %s, gen_random_uuid(), 1, 5, 2, 'completed', %s, 'report',"
        " '{{}}', '\"done\"', '[]')",
        [
            job_id,
            finished_at - HOUR,
            finished_at - HOUR,
            finished_at - timedelta(seconds=2),
            finished_at,
            queue,
        ],
    )


def dead(db: DB, job_id: int, died_at: datetime) -> None:
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts,"
        " priority, queue, task, args, errors) values (%s, %s, %s, %s, %s, 5, 5, 2, 'default', 'report',"
        " '{{}}', %s::jsonb)",
        [job_id, died_at, died_at, died_at, died_at, json.dumps([{"attempt": 5, "error": "boom"}])],
    )


def ack_like_insert(db: DB, job_id: int) -> float:
    """An insert into job_history for now (what complete_jobs does); returns how long it waited."""
    with db.connect(autocommit=True) as conn:
        conn.execute("set lock_timeout = '10s'")
        started = time.monotonic()
        conn.execute(
            db.compose(
                "insert into {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id,"
                " attempt, max_attempts, priority, state, queue, task, args, result, errors)"
                " values (%s, now(), now(), now(), now(), gen_random_uuid(), 1, 5, 2, 'completed', 'default',"
                " 'report', '{{}}', 'null', '[]')"
            ),
            [job_id],
        )
        return time.monotonic() - started


def history_partitions(db: DB) -> list[str]:
    return [
        r[0]
        for r in db.all(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = %s::regclass order by 1",
            [f'"{db.schema}".job_history'],
        )
    ]


async def test_retention_goes_on_past_a_busy_row_and_acks_do_not_wait_behind_it(
    database_url: str, schema: str, db: DB
) -> None:
    """An operator holds a dead job (say, `conveyor dlq retry` looking at it): retention
    skips it (it goes next time) without waiting on it, the old day is still dropped in
    short transactions of its own, and an ack made meanwhile does not wait."""
    from conveyor import Conveyor

    now = datetime.now(UTC)
    db.all("select {schema}.ensure_history_partitions(0, %s)", [now - 5 * DAY])  # two old days
    finished(db, 1, now - 5 * DAY)
    dead(db, 2, now - 30 * DAY)
    old = [p for p in history_partitions(db) if p.endswith(f"{now - 5 * DAY:%Y%m%d}")]
    assert old

    with db.connect() as operator:
        operator.execute(db.compose("select * from {schema}.dead_jobs where id = 2 for update"))
        async with Conveyor(database_url, schema=schema) as client:
            done = await client.apply_retention()  # returns with the row still held
        waited = ack_like_insert(db, 3)
        operator.rollback()

    assert waited < 0.5, f"an ack waited {waited:.1f} s behind retention"
    assert done["dead jobs moved to the run log"] == 0  # busy: next time
    assert done["history partitions dropped"] >= 1
    assert [p for p in history_partitions(db) if p in old] == []
    assert db.one("select count(*) from {schema}.dead_jobs") == 1
    async with Conveyor(database_url, schema=schema) as client:
        assert (await client.apply_retention())["dead jobs moved to the run log"] == 1


def test_apply_retention_does_not_change_the_callers_lock_timeout(db: DB) -> None:
    """It is part of the SQL contract (callable in the caller's transaction); SET LOCAL
    leaks lock_timeout = 2s into the rest of that transaction."""
    with db.connect() as conn:
        conn.execute("set lock_timeout = 0")
        conn.commit()
        conn.execute(db.compose("select * from {schema}.retention_rows()"))
        value = conn.execute("show lock_timeout").fetchone()
        conn.rollback()
    assert value == ("0",)


async def test_retention_behind_a_reader_does_not_stall_the_scheduler_past_its_lease(
    database_url: str, schema: str, db: DB
) -> None:
    """With a reader holding job_history open, every partition drop waits its lock timeout.
    Housekeeping runs in a task of its own: the scheduler keeps its rounds and its lease."""
    import asyncio

    from conveyor import Registry
    from conveyor.queue.scheduler import Scheduler, SchedulerConfig

    now = datetime.now(UTC)
    db.all("select {schema}.ensure_history_partitions(7, %s)", [now - 12 * DAY])  # 9 old days
    scheduler = Scheduler(
        database_url, schema=schema, registry=Registry(), config=SchedulerConfig(lease=3.0, tick=0.5)
    )
    with db.connect() as reader:
        reader.execute(db.compose("select count(*) from {schema}.job_history"))  # an open transaction
        running = asyncio.create_task(scheduler.run())
        await asyncio.wait_for(scheduler.started.wait(), 10)
        rounds, leading = scheduler.ticks, []
        for _ in range(8):  # 4 s: longer than the lease, while drops keep waiting on the reader
            await asyncio.sleep(0.5)
            leading.append(scheduler.elector.is_leader)
        rounds = scheduler.ticks - rounds
        scheduler.stop()
        await asyncio.wait_for(running, 20)
        reader.rollback()
    assert all(leading[1:]), leading
    assert rounds >= 5, f"only {rounds} rounds in 4 s"
