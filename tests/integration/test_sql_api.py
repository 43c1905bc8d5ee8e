"""The SQL contract, as psql (or an application in any language) sees it: enqueue,
retry_dead, purge_dead, pause_queue/resume_queue, the queue_stats and job_list views, and
LISTEN/NOTIFY on the channel named like the schema."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from conveyor import Conveyor, NotFoundError, Registry

from ..helpers import DB, wait_until


def _refused(db: DB, query: str, params: Any = None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        db.all(query, params)
    return info.value


def _job(db: DB, job_id: int) -> tuple[Any, ...]:
    return db.one(
        "select queue, task, args, state, priority, max_attempts, attempt from {schema}.jobs where id = %s",
        [job_id],
    )


async def _listen(database_url: str, schema: str) -> psycopg.AsyncConnection[Any]:
    listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(schema)))
    return listener


async def _next(listener: psycopg.AsyncConnection[Any], schema: str) -> str:
    """The next notification's payload (waits at most 5 s)."""
    got = [n async for n in listener.notifies(timeout=5, stop_after=1)]
    assert len(got) == 1, "no notification within 5 s"
    assert got[0].channel == schema
    return got[0].payload


# -- enqueue ----------------------------------------------------------------------------------------


async def test_enqueue_fills_in_what_a_worker_synced_into_the_tasks_table(
    registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task(queue="reports", priority="low", max_attempts=2, timeout=30)
    async def report(day: str) -> None:
        pass

    async with start_worker():
        pass  # it syncs its tasks and creates their queues on start
    # Its own task, and Conveyor's built-in ones.
    assert db.all(
        "select name, queue, priority, max_attempts, timeout_seconds from {schema}.tasks order by name"
    ) == [
        ("conveyor.refresh_materialized_view", "default", 2, 5, None),
        ("report", "reports", 3, 2, 30.0),
    ]

    declared = db.one("select {schema}.enqueue('report', %s)", [Jsonb({"day": "mon"})])
    assert _job(db, declared) == ("reports", "report", {"day": "mon"}, "available", 3, 2, 0)

    overridden = db.one(
        "select {schema}.enqueue('report', %s, queue => 'default', priority => 0, max_attempts => 9)",
        [Jsonb({"day": "tue"})],
    )
    assert _job(db, overridden) == ("default", "report", {"day": "tue"}, "available", 0, 9, 0)

    # A task no worker has declared: 'default', normal priority, 5 attempts; args default to {}.
    unknown = db.one("select {schema}.enqueue('ad_hoc')")
    assert _job(db, unknown) == ("default", "ad_hoc", {}, "available", 2, 5, 0)

    # Rows written by hand count too; a declared queue that does not exist is refused.
    db.all("insert into {schema}.tasks (name, queue, priority, max_attempts) values ('direct', 'dq', 1, 4)")
    error = _refused(db, "select {schema}.enqueue('direct')")
    assert error.diag.message_primary == 'conveyor.enqueue: unknown queue "dq"'
    db.all("select {schema}.create_queue('dq')")
    direct = db.one("select {schema}.enqueue('direct')")
    assert _job(db, direct) == ("dq", "direct", {}, "available", 1, 4, 0)
    assert db.one("select count(*) from {schema}.jobs") == 4


def test_enqueue_refuses_bad_input_with_a_clear_message_and_writes_nothing(db: DB) -> None:
    priority_hint = "Use 0 (critical), 1 (high), 2 (normal) or 3 (low)."
    cases: list[tuple[str, Any, str, str, str | None]] = [
        (
            "select {schema}.enqueue('t', %s)",
            [Jsonb([1, 2])],
            "22023",
            'conveyor.enqueue: args for task "t" must be a JSON object, got array',
            None,
        ),
        (
            "select {schema}.enqueue('t', %s)",
            [Jsonb("text")],
            "22023",
            'conveyor.enqueue: args for task "t" must be a JSON object, got string',
            None,
        ),
        (
            "select {schema}.enqueue('t', 'null'::jsonb)",
            None,
            "22023",
            'conveyor.enqueue: args for task "t" must be a JSON object, got null',
            None,
        ),
        (
            "select {schema}.enqueue('t', NULL)",
            None,
            "22023",
            'conveyor.enqueue: args for task "t" must be a JSON object, got null',
            None,
        ),
        (
            "select {schema}.enqueue('t', priority => 4)",
            None,
            "22023",
            "conveyor.enqueue: priority 4 is out of range",
            priority_hint,
        ),
        (
            "select {schema}.enqueue('t', priority => -1)",
            None,
            "22023",
            "conveyor.enqueue: priority -1 is out of range",
            priority_hint,
        ),
        (
            "select {schema}.enqueue('t', queue => 'nope')",
            None,
            "22023",
            'conveyor.enqueue: unknown queue "nope"',
            "Create it with conveyor.create_queue('nope'), or start a worker that serves it.",
        ),
        (
            "select {schema}.enqueue('t', max_attempts => 0)",
            None,
            "22023",
            "conveyor.enqueue: max_attempts must be at least 1, got 0",
            None,
        ),
        ("select {schema}.enqueue('')", None, "22023", "conveyor.enqueue: task name is empty", None),
        ("select {schema}.enqueue(NULL)", None, "22023", "conveyor.enqueue: task name is empty", None),
        (
            "select {schema}.enqueue('t', %s::jsonb)",
            ['{"a": '],
            "22P02",
            "invalid input syntax for type json",
            None,
        ),
    ]
    for query, params, sqlstate, message, hint in cases:
        error = _refused(db, query, params)
        assert (error.sqlstate, error.diag.message_primary, error.diag.message_hint) == (
            sqlstate,
            message,
            hint,
        ), query

    big = _refused(db, "select {schema}.enqueue('t', jsonb_build_object('blob', repeat('x', 1100000)))")
    assert big.sqlstate == "54000"  # program_limit_exceeded
    assert big.diag.message_primary is not None
    assert big.diag.message_primary.startswith('conveyor.enqueue: args for task "t" take 11000')
    assert big.diag.message_primary.endswith("bytes as JSON, more than the 1 MiB limit")

    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.all("select name from {schema}.queues") == [("default",)]


def test_enqueue_unique_key_and_run_at(db: DB) -> None:
    first = db.one("select {schema}.enqueue('t', %s, unique_key => 'k1')", [Jsonb({"n": 1})])
    again = db.one("select {schema}.enqueue('t', %s, unique_key => 'k1', priority => 0)", [Jsonb({"n": 2})])
    assert again == first
    assert db.all("select id, args, priority from {schema}.jobs") == [(first, {"n": 1}, 2)]

    # Twice in one transaction: the second call sees the first's uncommitted row.
    with db.connect() as conn:
        a, b = conn.execute(
            db.compose(
                "select {schema}.enqueue('t', unique_key => 'k2'), {schema}.enqueue('t', unique_key => 'k2')"
            )
        ).fetchone() or (None, None)
        conn.commit()
    assert a == b
    assert db.one("select count(*) from {schema}.jobs where unique_key = 'k2'") == 1

    later = db.one("select {schema}.enqueue('t', run_at => now() + interval '1 hour')")
    past = db.one("select {schema}.enqueue('t', run_at => now() - interval '1 hour')")
    state, delta = db.one(
        "select state, run_at - enqueued_at from {schema}.jobs where id = %s",
        [later],
    )
    assert (state, delta) == ("scheduled", timedelta(hours=1))
    state, delta = db.one("select state, run_at - enqueued_at from {schema}.jobs where id = %s", [past])
    assert (state, delta) == ("available", timedelta(hours=-1))


# -- the dead-letter queue --------------------------------------------------------------------------


async def test_retry_dead_moves_the_job_back_keeping_its_errors_and_notifies(
    database_url: str, schema: str, client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    @registry.task(max_attempts=1, queue="fragile")
    async def doomed(n: int) -> None:
        raise ValueError(f"cannot do {n}")

    job_id = await client.enqueue(doomed, {"n": 7}, unique_key="doomed-7")
    async with start_worker():
        await wait_until(lambda: db.one("select count(*) from {schema}.dead_jobs") == 1)
    died = db.one("select attempt, enqueued_at, errors from {schema}.dead_jobs where id = %s", [job_id])
    attempt, enqueued_at, errors = died
    assert attempt == 1
    assert [e["error"] for e in errors] == ["ValueError: cannot do 7"]

    listener = await _listen(database_url, schema)
    try:
        with db.connect() as conn:
            row = conn.execute(db.compose("select {schema}.retry_dead(%s)"), [job_id]).fetchone()
            assert row == (job_id,)
            db.all("select {schema}.create_queue('marker')")
            db.all("select {schema}.enqueue('t', queue => 'marker')")
            assert await _next(listener, schema) == "marker"  # not before commit
            conn.commit()
        assert await _next(listener, schema) == "fragile"
    finally:
        await listener.close()

    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    revived = db.one(
        "select queue, task, args, state, attempt, max_attempts, unique_key, enqueued_at, errors,"
        " worker_id, started_at from {schema}.jobs where id = %s",
        [job_id],
    )
    assert revived == (
        "fragile",
        "doomed",
        {"n": 7},
        "available",
        0,
        1,
        "doomed-7",
        enqueued_at,
        errors,
        None,
        None,
    )

    # Missing: no_data_found, named.
    error = _refused(db, "select {schema}.retry_dead(424242)")
    assert isinstance(error, psycopg.errors.NoDataFound)
    assert error.sqlstate == "P0002"
    assert error.diag.message_primary == "conveyor.retry_dead: no dead job with id 424242"
    with pytest.raises(NotFoundError, match="no dead job with id 424242"):
        await client.retry_dead(424242)


def test_retry_dead_refuses_while_a_live_job_holds_its_unique_key(db: DB) -> None:
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts, priority,"
        " queue, task, unique_key, args, errors)"
        " values (9001, now(), now(), now(), 5, 5, 2, 'default', 't', 'once', '{{}}', '[]')"
    )
    holder = db.one("select {schema}.enqueue('t', unique_key => 'once')")
    error = _refused(db, "select {schema}.retry_dead(9001)")
    assert isinstance(error, psycopg.errors.UniqueViolation)
    assert error.diag.message_primary == (
        "conveyor.retry_dead: job 9001 cannot go back: a live job already holds its unique key"
    )
    assert db.all("select id from {schema}.dead_jobs") == [(9001,)]
    assert db.all("select id from {schema}.jobs") == [(holder,)]


def test_purge_dead_with_each_filter(db: DB) -> None:
    dead = [
        (1, "mail", "send", "3 days"),
        (2, "mail", "send", "1 hour"),
        (3, "mail", "digest", "1 hour"),
        (4, "web", "hook", "2 days"),
        (5, "web", "send", "0 seconds"),
        (6, "web", "hook", "0 seconds"),
        (7, "other", "x", "0 seconds"),
    ]
    for job_id, queue, task, age in dead:
        db.all(
            "insert into {schema}.dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts,"
            " priority, queue, task, args, errors)"
            " values (%s, now(), now(), now() - %s::interval, 1, 1, 2, %s, %s, '{{}}', '[]')",
            [job_id, age, queue, task],
        )

    def purge(arguments: str) -> tuple[int, list[int]]:
        purged = db.one("select {schema}.purge_dead(" + arguments + ")")
        left = [row[0] for row in db.all("select id from {schema}.dead_jobs order by id")]
        return purged, left

    assert purge("older_than => interval '1 day'") == (2, [2, 3, 5, 6, 7])
    assert purge("job_ids => array[2, 99]::bigint[]") == (1, [3, 5, 6, 7])
    assert purge("queue => 'web', task => 'hook'") == (1, [3, 5, 7])
    assert purge("task => 'digest'") == (1, [5, 7])
    assert purge("queue => 'web'") == (1, [7])
    assert purge("queue => 'nomatch'") == (0, [7])
    assert purge("job_ids => array[7]::bigint[], queue => 'web'") == (0, [7])
    assert purge("") == (1, [])


# -- queues -----------------------------------------------------------------------------------------


async def test_pause_and_resume_queue(database_url: str, schema: str, db: DB) -> None:
    def paused() -> list[tuple[str, bool]]:
        return db.all("select name, paused from {schema}.queues order by name")

    db.all("select {schema}.pause_queue('reports')")  # unknown so far: created paused
    assert paused() == [("default", False), ("reports", True)]
    db.all("select {schema}.pause_queue('reports')")
    db.all("select {schema}.pause_queue('default')")
    assert paused() == [("default", True), ("reports", True)]
    # A paused queue still takes jobs; it is only not served.
    job_id = db.one("select {schema}.enqueue('t', queue => 'reports')")
    assert db.one("select state from {schema}.jobs where id = %s", [job_id]) == "available"
    assert db.all("select queue, paused, waiting from {schema}.queue_stats order by queue") == [
        ("default", True, 0),
        ("reports", True, 1),
    ]

    listener = await _listen(database_url, schema)
    try:
        db.all("select {schema}.resume_queue('reports')")
        assert await _next(listener, schema) == "reports"  # workers are woken to serve it
    finally:
        await listener.close()
    db.all("select {schema}.resume_queue('ghost')")  # resuming an unknown queue creates nothing
    assert paused() == [("default", True), ("reports", False)]
    assert db.one("select updated_at > created_at from {schema}.queues where name = 'reports'") is True


# -- views -----------------------------------------------------------------------------------------


async def test_queue_stats_view_counts(client: Conveyor, db: DB) -> None:
    for queue in ("stats", "idle", "other"):
        db.all("select {schema}.create_queue(%s)", [queue])
    db.all("select {schema}.pause_queue('idle')")
    db.all("select {schema}.enqueue('t', queue => 'stats', run_at => now() - interval '1 hour')")
    db.all("select {schema}.enqueue('t', queue => 'stats')")
    db.all("select {schema}.enqueue('t', queue => 'stats', run_at => now() + interval '1 day')")
    db.all("select {schema}.enqueue('t', queue => 'other', run_at => now() + interval '1 day')")
    db.all(
        "insert into {schema}.jobs (queue, task, state, run_at, enqueued_at, attempt, max_attempts,"
        " worker_id, lease_expires_at)"
        " values ('stats', 't', 'running', now(), now(), 1, 5, gen_random_uuid(), now() + interval '30 s'),"
        " ('orphan', 't', 'available', now(), now(), 0, 5, NULL, NULL)"
    )
    for job_id, queue, state, age in [
        (101, "stats", "completed", "1 hour"),
        (102, "stats", "completed", "23 hours"),
        (103, "stats", "completed", "25 hours"),
        (104, "stats", "cancelled", "1 hour"),
        (105, "other", "completed", "0 seconds"),
    ]:
        db.all(
            "insert into {schema}.job_history (id, run_at, enqueued_at, finished_at, attempt, max_attempts,"
            " priority, state, queue, task, args, errors)"
            " values (%s, now(), now(), now() - %s::interval, 1, 5, 2, %s, %s, 't', '{{}}', '[]')",
            [job_id, age, state, queue],
        )
    for job_id, queue in [(201, "stats"), (202, "stats"), (203, "other")]:
        db.all(
            "insert into {schema}.dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts,"
            " priority, queue, task, args, errors)"
            " values (%s, now(), now(), now(), 5, 5, 2, %s, 't', '{{}}', '[]')",
            [job_id, queue],
        )

    rows = db.all(
        "select queue, paused, waiting, scheduled, running, completed_24h, dead, oldest_waiting_age"
        " from {schema}.queue_stats order by queue"
    )
    ages = {row[0]: row[7] for row in rows}
    assert [row[:7] for row in rows] == [
        ("default", False, 0, 0, 0, 0, 0),
        ("idle", True, 0, 0, 0, 0, 0),
        ("orphan", False, 1, 0, 0, 0, 0),  # a live job's queue is listed even without a queues row
        ("other", False, 0, 1, 0, 1, 1),
        ("stats", False, 2, 1, 1, 2, 2),
    ]
    assert ages["default"] is None
    assert ages["idle"] is None
    assert ages["other"] is None
    assert timedelta(hours=1) <= ages["stats"] <= timedelta(hours=1, seconds=30)
    assert ages["stats"].microseconds == 0  # whole seconds

    stats = {s.queue: s for s in await client.queue_stats()}
    assert (stats["stats"].waiting, stats["stats"].running, stats["stats"].dead) == (2, 1, 2)
    assert stats["idle"].paused is True


def test_job_list_view_has_one_row_per_job_wherever_it_is(db: DB) -> None:
    waiting = db.one("select {schema}.enqueue('w', %s)", [Jsonb({"n": 1})])
    later = db.one("select {schema}.enqueue('s', run_at => now() + interval '1 day')")
    db.all(
        "insert into {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt,"
        " max_attempts, priority, state, queue, task, args, result, errors) values"
        " (5001, now(), now(), now(), now(), 2, 5, 2, 'completed', 'default', 'h', '{{}}', '42',"
        '  \'[{{"error": "first try failed"}}]\'),'
        " (5002, now(), now(), now(), now(), 1, 5, 2, 'cancelled', 'default', 'c', '{{}}', NULL, '[]')"
    )
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts,"
        " priority, queue, task, args, errors)"
        " values (6001, now(), now(), now(), 3, 3, 1, 'default', 'd', '{{}}',"
        '  \'[{{"error": "one"}}, {{"error": "boom"}}]\')'
    )
    rows = db.all(
        "select id, task, state, attempt, finished_at is not null, progress, last_error"
        " from {schema}.job_list order by id"
    )
    assert rows == [
        (waiting, "w", "available", 0, False, None, None),
        (later, "s", "scheduled", 0, False, None, None),
        (5001, "h", "completed", 2, True, 100, "first try failed"),
        (5002, "c", "cancelled", 1, True, 100, None),
        (6001, "d", "dead", 3, True, None, "boom"),
    ]
    assert db.one("select args from {schema}.job_list where id = %s", [waiting]) == {"n": 1}


# -- LISTEN/NOTIFY ---------------------------------------------------------------------------------


async def test_notify_carries_the_queue_name_on_commit_only(database_url: str, schema: str, db: DB) -> None:
    for queue in ("alpha", "beta", "marker"):
        db.all("select {schema}.create_queue(%s)", [queue])

    def marker() -> None:
        """A committed enqueue on another connection: what arrives before it was sent before it."""
        db.all("select {schema}.enqueue('t', queue => 'marker')")

    listener = await _listen(database_url, schema)
    try:
        with db.connect() as conn:
            conn.execute(
                db.compose("select {schema}.enqueue('t', %s, queue => 'alpha')"), [Jsonb({"secret": 1})]
            )
            marker()
            assert await _next(listener, schema) == "marker"  # nothing from the open transaction
            conn.commit()
        assert await _next(listener, schema) == "alpha"  # the queue name only, never job data

        with db.connect() as conn:
            conn.execute(db.compose("select {schema}.enqueue('t', queue => 'beta')"))
            conn.rollback()
        db.all("select {schema}.enqueue('t', queue => 'beta', run_at => now() + interval '1 hour')")
        marker()
        # Neither the rolled-back job nor the scheduled one (not due yet) woke anyone.
        assert await _next(listener, schema) == "marker"

        db.all("select {schema}.enqueue('t', queue => 'beta')")
        assert await _next(listener, schema) == "beta"
    finally:
        await listener.close()
