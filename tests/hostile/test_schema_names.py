"""Schema names at the edge of what Conveyor allows: an SQL reserved word (``order``, which
every statement must quote) and the longest name (62 characters, whose control channel
"<schema>.control" is cut to "<schema>."; at 63 it was the schema's own channel, and job
wake-ups were taken for control messages and lost). Alembic migrates it, the SQL function and the client enqueue into it, a
worker is woken by its NOTIFY channel (LISTEN quotes it) and runs the job. Names that are
not allowed (a quote, a semicolon, empty, pg_...) are refused before any SQL: see
test_python_client.py and test_cli.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from conveyor import Conveyor, Registry, Worker, WorkerConfig
from conveyor.db import migrations
from conveyor.errors import ConfigurationError

from ..helpers import DB, wait_until


@pytest.fixture(params=["order", "long"])
def edge_schema(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    # "order" is one name per database: the run's database is this run's own, and xdist
    # runs a parametrized case once.
    name = "order" if request.param == "order" else ("s" + uuid.uuid4().hex * 2)[:62]
    migrations.upgrade(database_url, name)
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


async def test_a_reserved_word_or_the_longest_name_works_end_to_end(
    database_url: str, edge_schema: str
) -> None:
    db = DB(database_url, edge_schema)
    registry = Registry()
    ran: list[int] = []

    @registry.task(name="mark")
    def mark(n: int) -> None:
        ran.append(n)

    # A poll far longer than the test: only the NOTIFY on the schema's channel wakes it.
    worker = Worker(
        database_url,
        schema=edge_schema,
        registry=registry,
        config=WorkerConfig(poll_interval=60.0, grace=5.0),
    )
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.started.wait(), 20)
        await asyncio.wait_for(worker.notifier.listening.wait(), 20)
        db.one("SELECT {schema}.enqueue('mark', %s::jsonb)", ['{"n": 1}'])
        async with Conveyor(database_url, schema=edge_schema, registry=registry) as client:
            await client.enqueue("mark", {"n": 2})
        await wait_until(lambda: sorted(ran) == [1, 2], within=20)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    assert db.one("SELECT count(*) FROM {schema}.job_history WHERE state = 'completed'") == 2
    assert migrations.current(database_url, edge_schema) is not None


def test_a_63_character_name_is_refused_saying_so(database_url: str) -> None:
    with pytest.raises(ConfigurationError, match="at most 62"):
        Conveyor(database_url, schema="s" * 63)
