"""The SQL function conveyor.enqueue and the Python client write the same jobs.

They are two implementations of one contract (psql and other languages use the function;
Python uses one statement of its own, for speed), so the same request must give the same
row through either.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import Conveyor, Registry

from ..helpers import DB

ROW = (
    "select queue, task, args, state, priority, max_attempts, attempt, claims, unique_key, errors, run_at"
    " from {schema}.jobs where id = %s"
)


@pytest.fixture
def tasks(registry: Registry) -> Registry:
    @registry.task(queue="mail", priority="high", max_attempts=7)
    async def send(to: str) -> None: ...

    @registry.task
    async def plain(n: int = 0) -> None: ...

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
