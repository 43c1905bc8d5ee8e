"""A job's limit key and meta (schema version 7): written the same by every writer that
takes them, derived from the task's key argument when the enqueue gives none, refused
clearly when they cannot be stored, and kept by history."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conveyor import Conveyor, InvalidOptionError, JobRequest, Registry, SyncConveyor

from ..helpers import DB

ROW = "select key, meta from {schema}.jobs where id = %s"


@pytest.fixture
def tasks(registry: Registry) -> Registry:
    @registry.task(key="tenant")
    async def sync_account(tenant: Any, page: int = 0) -> None: ...

    @registry.task
    async def plain(n: int = 0) -> None: ...

    return registry


async def test_every_python_writer_stores_key_and_meta(
    database_url: str, schema: str, tasks: Registry, db: DB
) -> None:
    meta = {"source": "import", "tags": ["a", "b"]}
    async with Conveyor(database_url, schema=schema, registry=tasks) as client:
        await client.enqueue("plain", {"n": 0})  # the queue becomes known: the short insert is tempting
        single = await client.enqueue("plain", {"n": 1}, key="k1", meta=meta)
        due_later = await client.enqueue("plain", {"n": 2}, key="k1", meta=meta, delay=60)
        bulk = await client.enqueue_many(
            [JobRequest("plain", {"n": 3}, key="k1", meta=meta), JobRequest("plain", {"n": 4})]
        )
    with SyncConveyor(database_url, schema=schema, registry=tasks) as sync_client:
        from_sync = sync_client.enqueue("plain", {"n": 5}, key="k1", meta=meta)
    from_sql = db.one("select {schema}.enqueue('plain', '{{}}', key => 'k1', meta => %s)", [Jsonb(meta)])
    for job_id in (single, due_later, bulk[0], from_sync, from_sql):
        assert db.all(ROW, [job_id]) == [("k1", meta)], job_id
    assert db.all(ROW, [bulk[1]]) == [(None, None)]


async def test_the_key_comes_from_the_tasks_key_argument_unless_given(
    database_url: str, schema: str, tasks: Registry, db: DB
) -> None:
    async with Conveyor(database_url, schema=schema, registry=tasks) as client:
        derived = await client.enqueue("sync_account", {"tenant": "acme"})
        numeric = await client.enqueue("sync_account", {"tenant": 42})
        given = await client.enqueue("sync_account", {"tenant": "acme"}, key="override")
        absent = await client.enqueue("sync_account", {"tenant": None})
        (in_bulk, plain_in_bulk) = await client.enqueue_many(
            [JobRequest("sync_account", {"tenant": "globex"}), JobRequest("plain", {})]
        )
    keys = {
        job_id: db.one("select key from {schema}.jobs where id = %s", [job_id])
        for job_id in (derived, numeric, given, absent, in_bulk, plain_in_bulk)
    }
    assert keys == {
        derived: "acme",
        numeric: "42",
        given: "override",
        absent: None,
        in_bulk: "globex",
        plain_in_bulk: None,
    }


def test_a_key_argument_the_task_does_not_take_is_refused(registry: Registry) -> None:
    with pytest.raises(InvalidOptionError, match="key 'tenant' is not one of its arguments"):

        @registry.task(key="tenant")
        async def nothing(account: str) -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key": ""}, "key must be 1 to 512 characters"),
        ({"key": "x" * 513}, "key must be 1 to 512 characters"),
        ({"meta": ["not", "an", "object"]}, "meta must be a JSON object"),
        ({"meta": {"big": "x" * 70000}}, "more than the 65536 byte limit"),
        ({"meta": {"when": object()}}, "meta is not JSON"),
    ],
)
async def test_bad_keys_and_meta_are_refused_and_nothing_is_written(
    database_url: str, schema: str, tasks: Registry, db: DB, options: dict[str, Any], message: str
) -> None:
    async with Conveyor(database_url, schema=schema, registry=tasks) as client:
        with pytest.raises(InvalidOptionError, match=message):
            await client.enqueue("plain", {}, **options)
        with pytest.raises(InvalidOptionError, match=message):
            await client.enqueue_many([JobRequest("plain", {}), JobRequest("plain", {}, **options)])
    assert db.one("select count(*) from {schema}.jobs") == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("select {schema}.enqueue('plain', key => '')", "key must be 1 to 512 characters"),
        ("select {schema}.enqueue('plain', meta => '[1]')", 'meta for task "plain" must be a JSON object'),
        (
            "select {schema}.enqueue('plain', meta => jsonb_build_object('big', repeat('x', 70000)))",
            "more than the 64 KiB limit",
        ),
    ],
)
def test_sql_enqueue_refuses_bad_keys_and_meta(db: DB, call: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message):
        db.all(call)


@pytest.mark.parametrize(
    ("statement", "rule"),
    [
        ("insert into {schema}.jobs (queue, task, key) values ('default', 't', '')", "key_length"),
        ("insert into {schema}.jobs (queue, task, meta) values ('default', 't', '1')", "meta_object"),
    ],
)
def test_the_table_refuses_a_bad_key_or_meta_written_directly(db: DB, statement: str, rule: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=rule):
        db.all(statement)
