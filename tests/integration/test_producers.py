"""Producers as applications have them: a SQLAlchemy-style DATABASE_URL, an asyncpg
application (the SQL function path), and tasks enqueued by name without importing them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from conveyor import ConfigurationError, Conveyor, JobRequest, Registry, SyncConveyor, UnknownTaskError
from conveyor.db import migrations

from ..helpers import DB, url_with_driver, wait_until

SCHEMES = ["postgresql+psycopg", "postgresql+psycopg2", "postgresql+asyncpg", "postgres"]


def _record_task(db: DB, name: str, queue: str, priority: int, max_attempts: int) -> None:
    """What a worker that imports the task records when it starts (sync_tasks, and its queue)."""
    db.all("select {schema}.create_queue(%s)", [queue])
    db.all(
        "insert into {schema}.tasks (name, queue, priority, max_attempts, timeout_seconds)"
        " values (%s, %s, %s, %s, 30)",
        [name, queue, priority, max_attempts],
    )


# -- SQLAlchemy-style URLs -----------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_clients_worker_and_migrations_take_sqlalchemy_style_urls(
    database_url: str, schema: str, registry: Registry, start_worker: Callable[..., Any], scheme: str, db: DB
) -> None:
    url = url_with_driver(database_url, scheme)

    @registry.task
    def double(n: int) -> int:
        return 2 * n

    migrations.upgrade(url, schema)  # already at head: reads and keeps it
    assert migrations.current(url, schema) == migrations.head()
    async with Conveyor(url, schema=schema, registry=registry) as client:
        first = await client.enqueue("double", {"n": 1})
    with SyncConveyor(url, schema=schema, registry=registry) as sync_client:
        second = sync_client.enqueue("double", {"n": 2})

    from conveyor import Worker, WorkerConfig

    worker = Worker(url, schema=schema, registry=registry, config=WorkerConfig(poll_interval=0.2, grace=5))
    running = asyncio.create_task(worker.run())
    try:
        await wait_until(
            lambda: db.one("select count(*) from {schema}.job_history where state = 'completed'") == 2,
            within=20,
        )
    finally:
        worker.stop()
        await asyncio.wait_for(running, 20)
    assert db.all("select id, result from {schema}.job_history order by id") == [(first, 2), (second, 4)]


def test_an_unknown_driver_in_the_url_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match=r"database URL scheme 'postgresql\+mysqldb' is not one"):
        Conveyor("postgresql+mysqldb://u@h/db")


# -- asyncpg: the SQL function path ----------------------------------------------------------


async def test_an_asyncpg_application_enqueues_with_sql_in_its_own_transaction(
    database_url: str, schema: str, db: DB, client: Conveyor
) -> None:
    _record_task(db, "send_receipt", "emails", 1, 4)
    engine = create_async_engine(url_with_driver(database_url, "postgresql+asyncpg"), poolclass=NullPool)
    enqueue = sqlalchemy.text("SELECT enqueue(:task, CAST(:args AS jsonb))")
    search_path = sqlalchemy.text("SELECT set_config('search_path', :schema, true)")
    try:
        # The client refuses the asyncpg session, and says what works instead.
        async with AsyncSession(engine) as session, session.begin():
            with pytest.raises(ConfigurationError, match=r"uses 'asyncpg'.*SELECT conveyor\.enqueue\("):
                await client.enqueue("send_receipt", {"order": 0}, conn=session)

        for order, commit in ((1, False), (2, True)):
            async with AsyncSession(engine) as session:
                async with session.begin():
                    await session.execute(search_path, {"schema": schema})
                    job_id = (
                        await session.execute(
                            enqueue, {"task": "send_receipt", "args": json.dumps({"order": order})}
                        )
                    ).scalar_one()
                    if not commit:
                        await session.rollback()
                if commit:
                    committed = job_id
    finally:
        await engine.dispose()
    assert db.all("select id, task, queue, priority, max_attempts, args from {schema}.jobs") == [
        (committed, "send_receipt", "emails", 1, 4, {"order": 2})
    ]


# -- tasks enqueued by name ------------------------------------------------------------------


async def test_a_task_known_by_name_only_is_enqueued_with_the_defaults_workers_recorded(
    client: Conveyor, db: DB
) -> None:
    _record_task(db, "resize_image", "media", 1, 7)
    job_id = await client.enqueue("resize_image", {"path": "a.png", "width": 100})
    assert db.one(
        "select queue, task, priority, max_attempts, args from {schema}.jobs where id = %s", [job_id]
    ) == ("media", "resize_image", 1, 7, {"path": "a.png", "width": 100})

    # Options given still win; arguments are JSON-checked (the worker checks the signature).
    low = await client.enqueue("resize_image", {}, priority="low", max_attempts=2)
    assert db.one("select priority, max_attempts from {schema}.jobs where id = %s", [low]) == (3, 2)

    with pytest.raises(UnknownTaskError, match=r"unknown task 'resize_imag'"):
        await client.enqueue("resize_imag", {})
    assert db.one("select count(*) from {schema}.jobs") == 2


async def test_enqueue_many_and_the_callers_transaction_resolve_names_too(
    client: Conveyor, registry: Registry, db: DB, database_url: str
) -> None:
    @registry.task
    def local(a: int) -> int:
        return a

    _record_task(db, "remote", "media", 0, 2)
    ids = await client.enqueue_many([JobRequest("local", {"a": 1}), JobRequest("remote", {"x": 1})])
    assert db.all("select id, task, queue, priority from {schema}.jobs order by id") == [
        (ids[0], "local", "default", 2),
        (ids[1], "remote", "media", 0),
    ]
    # Signatures known here are still checked.
    with pytest.raises(Exception, match=r"task 'local': unexpected argument 'b'"):
        await client.enqueue_many([JobRequest("local", {"b": 1}), JobRequest("remote", {})])

    fresh = Conveyor(database_url, schema=db.schema, registry=registry)  # never opened
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        job_id = await fresh.enqueue("remote", {"y": 2}, conn=conn)
        await conn.rollback()
    assert db.one("select count(*) from {schema}.jobs where id = %s", [job_id]) == 0


def test_the_sync_client_enqueues_a_task_known_by_name_only(database_url: str, schema: str, db: DB) -> None:
    _record_task(db, "resize_image", "media", 1, 7)
    with SyncConveyor(database_url, schema=schema, registry=Registry()) as sync_client:
        job_id = sync_client.enqueue("resize_image", {"path": "b.png"})
        with pytest.raises(UnknownTaskError, match=r"unknown task 'nobody'"):
            sync_client.enqueue("nobody", {})
    assert db.one("select queue, priority, max_attempts from {schema}.jobs where id = %s", [job_id]) == (
        "media",
        1,
        7,
    )


async def test_a_schedule_may_name_a_task_known_by_name_only(client: Conveyor, db: DB) -> None:
    with pytest.raises(UnknownTaskError, match=r"unknown task 'resize_image'"):
        await client.create_schedule("thumbnails", "*/5 * * * *", "resize_image", {"size": 64})
    _record_task(db, "resize_image", "media", 1, 7)  # a worker started meanwhile: asked again
    await client.create_schedule("thumbnails", "*/5 * * * *", "resize_image", {"size": 64})
    assert db.one("select task, args from {schema}.schedules where name = 'thumbnails'") == (
        "resize_image",
        {"size": 64},
    )
