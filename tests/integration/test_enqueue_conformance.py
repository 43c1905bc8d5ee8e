"""The SQL function conveyor.enqueue and the Python client write the same jobs.

They are two implementations of one contract (psql and other languages use the function;
Python uses one statement of its own, for speed), so the same request must give the same
row through either; and so must every other writer of a job row (the Python client's
single and bulk forms, fire_schedule, retry_dead), and they agree on the args limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from conveyor import ArgumentsError, Conveyor, JobRequest, Registry

from ..helpers import DB

ROW = (
    "select queue, task, args, state, priority, max_attempts, attempt, claims, unique_key, errors, key, meta, run_at"
    " from {schema}.jobs where id = %s"
)


@pytest.fixture
def tasks(registry: Registry) -> Registry:
    @registry.task(queue="mail", priority="high", max_attempts=7)
    async def send(to: str) -> None: ...

    @registry.task
    async def plain(n: int = 0) -> None: ...

    @registry.task
    async def blob(**fields: Any) -> None: ...

    return registry


def sync_tasks_table(db: DB, registry: Registry) -> None:
    """What a worker does on start: record the tasks it knows, so SQL can use their defaults."""
    for task in registry:
        db.all(
            "insert into {schema}.tasks (name, queue, priority, max_attempts) values (%s, %s, %s, %s)",
            [task.name, task.queue, task.priority, task.max_attempts],
        )
        db.all("select {schema}.create_queue(%s)", [task.queue])


RUN_AT = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)

CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    # (task, python keyword arguments, SQL named arguments, SQL args JSON)
    ("send", {}, {}, '{"to": "a@b.c"}'),
    ("plain", {}, {}, '{"n": 1}'),
    ("send", {"queue": "default", "priority": 3}, {"queue": "default", "priority": 3}, '{"to": "x"}'),
    ("plain", {"max_attempts": 2}, {"max_attempts": 2}, "{}"),
    ("plain", {"run_at": RUN_AT}, {"run_at": RUN_AT}, '{"n": 2}'),
    ("plain", {"unique_key": "k-1"}, {"unique_key": "k-1"}, '{"n": 3}'),
    ("plain", {"key": "tenant-7"}, {"key": "tenant-7"}, '{"n": 4}'),
    ("plain", {"meta": {"source": "import"}}, {"meta": Jsonb({"source": "import"})}, '{"n": 5}'),
]


@pytest.mark.parametrize(("task", "py_options", "sql_options", "args_json"), CASES)
async def test_sql_and_python_enqueue_write_the_same_row(
    database_url: str,
    schema: str,
    tasks: Registry,
    db: DB,
    task: str,
    py_options: dict[str, Any],
    sql_options: dict[str, Any],
    args_json: str,
) -> None:
    sync_tasks_table(db, tasks)
    async with Conveyor(database_url, schema=schema, registry=tasks) as client:
        from_python = await client.enqueue(task, json.loads(args_json), **py_options)
    python_row = db.all(ROW, [from_python])
    db.all("delete from {schema}.jobs")  # frees the unique key for the SQL path

    named = "".join(f", {name} => %({name})s" for name in sql_options)
    from_sql = db.one(
        "select {schema}.enqueue(%(task)s, %(args)s::jsonb" + named + ")",
        {"task": task, "args": args_json, **sql_options},
    )
    sql_row = db.all(ROW, [from_sql])

    # run_at is "now" on both paths unless given; compare everything else exactly.
    (*python_rest, python_run_at), (*sql_rest, sql_run_at) = python_row[0], sql_row[0]
    assert python_rest == sql_rest
    if "run_at" in py_options:
        assert python_run_at == sql_run_at == RUN_AT
    else:
        assert abs(python_run_at - sql_run_at) < timedelta(minutes=1)


# == Every writer of a job row =============================================================
#
# One request through each way Conveyor writes a job gives the same row: the state rule
# (available when due now, else scheduled), the run_at rule (run_at, else now plus the
# delay: compared as run_at - enqueued_at), and the defaults (the task's, then 'default', 2,
# 5). The SQL writers (enqueue, fire_schedule, retry_dead) share insert_job_v1; the Python
# client writes with statements of its own, in five forms.

NORMALIZED = (
    "select queue, task, args, state, priority, max_attempts, attempt, claims, errors,"
    " run_at - enqueued_at from {schema}.jobs where id = %s"
)


@dataclass(frozen=True)
class Request:
    task: str
    args: dict[str, Any]
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    delay: timedelta | None = None

    @property
    def options(self) -> dict[str, Any]:
        return {"queue": self.queue, "priority": self.priority, "max_attempts": self.max_attempts}


REQUESTS = {
    "task defaults, due now": Request("send", {"to": "a@b.c"}),
    "built-in defaults, an hour later": Request("plain", {"n": 1}, delay=timedelta(hours=1)),
    "options given, due now": Request("plain", {"n": 2}, queue="mail", priority=0, max_attempts=2),
}

Writer = Callable[[Conveyor, DB, Request], Awaitable[int]]


async def sql_enqueue(client: Conveyor, db: DB, r: Request) -> int:
    return int(
        db.one(
            "select {schema}.enqueue(%(task)s, %(args)s, queue => %(queue)s, priority => %(priority)s,"
            " max_attempts => %(max_attempts)s, run_at => now() + %(delay)s::interval)",
            {"task": r.task, "args": Jsonb(r.args), "delay": r.delay, **r.options},
        )
    )


async def python_single(client: Conveyor, db: DB, r: Request) -> int:
    # Once to learn the queue, so the second takes the short insert for a known queue (due
    # now: enqueue_job_due_now; with a delay: enqueue_job_in_known_queue).
    await client.enqueue(r.task, r.args, delay=r.delay, **r.options)
    db.all("delete from {schema}.jobs")
    return await client.enqueue(r.task, r.args, delay=r.delay, **r.options)


async def python_unique(client: Conveyor, db: DB, r: Request) -> int:
    return await client.enqueue(r.task, r.args, delay=r.delay, unique_key="one", **r.options)


async def bulk_copy(client: Conveyor, db: DB, r: Request) -> int:
    (job_id,) = await client.enqueue_many([JobRequest(r.task, r.args, delay=r.delay, **r.options)])
    return job_id


async def bulk_unique(client: Conveyor, db: DB, r: Request) -> int:
    (job_id,) = await client.enqueue_many(
        [JobRequest(r.task, r.args, delay=r.delay, unique_key="one", **r.options)]
    )
    return job_id


async def fire_schedule(client: Conveyor, db: DB, r: Request) -> int:
    assert r.delay is None  # a fire is due at its moment
    db.all(
        "insert into {schema}.schedules (name, cron, task, args, queue, priority, max_attempts)"
        " values ('s', '* * * * *', %(task)s, %(args)s, %(queue)s, %(priority)s, %(max_attempts)s)",
        {"task": r.task, "args": Jsonb(r.args), **r.options},
    )
    return int(db.one("select {schema}.fire_schedule('s', now(), 'on_time')"))


WRITERS: dict[str, Writer] = {
    "conveyor.enqueue": sql_enqueue,
    "Python single, known queue": python_single,
    "Python single, unique key": python_unique,
    "bulk COPY": bulk_copy,
    "bulk, unique keys": bulk_unique,
    "conveyor.fire_schedule": fire_schedule,
}


@pytest.mark.parametrize("request_name", list(REQUESTS))
async def test_every_writer_writes_the_same_row_for_one_request(
    database_url: str, schema: str, tasks: Registry, db: DB, request_name: str
) -> None:
    r = REQUESTS[request_name]
    sync_tasks_table(db, tasks)
    rows: dict[str, tuple[Any, ...]] = {}
    async with Conveyor(database_url, schema=schema, registry=tasks) as client:
        for name, write in WRITERS.items():
            if write is fire_schedule and r.delay is not None:
                continue
            rows[name] = db.all(NORMALIZED, [await write(client, db, r)])[0]
            db.all("delete from {schema}.jobs")
            db.all("delete from {schema}.schedules")
    expected = rows.pop("conveyor.enqueue")
    assert {name: row for name, row in rows.items() if row != expected} == {}
    queue, _, _, state, priority, max_attempts, *_, due_after = expected
    declared = tasks.get(r.task)
    assert declared is not None
    assert (queue, priority, max_attempts) == (
        r.queue or declared.queue,
        r.priority if r.priority is not None else declared.priority,
        r.max_attempts or declared.max_attempts,
    )
    assert state == ("scheduled" if r.delay else "available")
    assert due_after == (r.delay or timedelta(0))


def test_without_the_task_row_the_sql_writers_fall_back_to_default_2_5(db: DB) -> None:
    """A task no worker recorded: queue 'default', priority 2, 5 attempts, through both
    the SQL writers that take defaults."""
    by_enqueue = db.one("select {schema}.enqueue('unknown_task', '{{}}')")
    db.all("insert into {schema}.schedules (name, cron, task) values ('s', '* * * * *', 'unknown_task')")
    by_fire = db.one("select {schema}.fire_schedule('s', now(), 'on_time')")
    rows = db.all(
        "select queue, priority, max_attempts, state from {schema}.jobs where id = any(%s) order by id",
        [[by_enqueue, by_fire]],
    )
    assert rows == [("default", 2, 5, "available")] * 2


def test_retry_dead_writes_a_job_due_now_with_a_fresh_attempt_budget(db: DB) -> None:
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts, claims,"
        " priority, queue, task, args, errors) values (77, now() - interval '1 day', now() - interval '2 days',"
        " now() - interval '1 hour', 3, 3, 4, 1, 'revived', 'report', %s, %s)",
        [Jsonb({"n": 1}), Jsonb([{"error": "boom"}])],
    )
    with db.connect(autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(db.schema)))
        with db.connect() as conn:
            conn.execute(db.compose("select {schema}.retry_dead(77)"))
            row = conn.execute(
                db.compose(
                    "select state, run_at = now(), attempt, max_attempts, claims, priority, queue, errors"
                    " from {schema}.jobs where id = 77"
                )
            ).fetchone()
        assert row == ("available", True, 0, 3, 4, 1, "revived", [{"error": "boom"}])
        assert [n.payload for n in listener.notifies(timeout=10, stop_after=1)] == ["revived"]


@pytest.mark.parametrize(
    ("call", "payloads"),
    [
        ("select {schema}.enqueue('plain', '{{}}')", ["default"]),
        ("select {schema}.enqueue('plain', '{{}}', run_at => now() + interval '1 hour')", []),
        ("select {schema}.fire_schedule('s', now(), 'on_time')", ["mail"]),
    ],
)
def test_the_sql_writers_wake_the_queue_of_a_job_due_now_only(
    db: DB, tasks: Registry, call: str, payloads: list[str]
) -> None:
    sync_tasks_table(db, tasks)
    db.all("insert into {schema}.schedules (name, cron, task) values ('s', '* * * * *', 'send')")
    with db.connect(autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(db.schema)))
        db.all(call)
        db.all("select pg_notify(%s, 'end')", [db.schema])
        heard = [n.payload for n in listener.notifies(timeout=10, stop_after=len(payloads) + 1)]
    assert heard == [*payloads, "end"]


# == The 1 MiB args limit, measured alike =================================================

MIB = 1024 * 1024


def compact(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def spaced_args(size: int) -> dict[str, Any]:
    """Args of exactly ``size`` bytes as compact JSON that take thousands more as jsonb's
    text (a space after every ':' and ',')."""
    members: dict[str, Any] = {f"k{n:04}": [n, "v"] for n in range(2000)}
    value = {**members, "z": "x" * (size - compact({**members, "z": ""}))}
    assert compact(value) == size
    assert len(json.dumps(value).encode()) > MIB + 5000
    return value


async def test_sql_enqueue_and_python_agree_on_the_args_limit(
    database_url: str, schema: str, tasks: Registry, db: DB
) -> None:
    at_limit, over = spaced_args(MIB), spaced_args(MIB + 1)
    async with Conveyor(database_url, schema=schema, registry=tasks) as client:
        assert await client.enqueue("blob", at_limit, queue="default")
        with pytest.raises(ArgumentsError, match=f"{MIB + 1} bytes"):
            await client.enqueue("blob", over, queue="default")
    assert db.one("select {schema}.enqueue('blob', %s)", [Jsonb(at_limit)])
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match=f"take {MIB + 1} bytes as JSON"):
        db.one("select {schema}.enqueue('blob', %s)", [Jsonb(over)])
    assert db.one("select count(*) from {schema}.jobs") == 2


def test_create_schedule_holds_args_to_the_same_limit(db: DB) -> None:
    at_limit, over = spaced_args(MIB), spaced_args(MIB + 1)
    assert db.one("select {schema}.create_schedule('at-limit', '0 3 * * *', 'report', %s)", [Jsonb(at_limit)])
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match=f"take {MIB + 1} bytes as JSON"):
        db.one("select {schema}.create_schedule('over', '0 3 * * *', 'report', %s)", [Jsonb(over)])
