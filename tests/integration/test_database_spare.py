"""The spare connection of conveyor.db.database.Database: a serial caller skips the pool;
a connection that failed or is busy goes back to the pool, which mends what broke."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from conveyor.db import database as database_module
from conveyor.db.database import Database


@pytest.fixture
async def db(database_url: str, schema: str) -> AsyncIterator[Database]:
    database = Database(database_url, schema, min_size=1, max_size=3)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def requests(db: Database) -> int:
    return db.pool.get_stats().get("requests_num", 0)


async def _pid(db: Database) -> int:
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


async def test_one_statement_after_another_takes_the_spare_not_the_pool(db: Database) -> None:
    first = await _pid(db)
    before = requests(db)
    pids = {await _pid(db) for _ in range(50)}
    assert pids == {first}
    assert requests(db) == before


async def test_borrowers_at_once_share_the_pool(db: Database) -> None:
    await _pid(db)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> int:
        async with db.connection() as conn:
            held.set()
            await release.wait()
            row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
            return int(row[0]) if row else 0

    holder = asyncio.create_task(hold())
    await held.wait()
    other = await _pid(db)  # the spare is out: this one comes from the pool
    release.set()
    assert other != await holder


async def test_a_connection_that_failed_goes_back_to_the_pool_and_a_broken_one_is_replaced(
    db: Database, database_url: str
) -> None:
    spare = await _pid(db)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [spare])
    with pytest.raises(psycopg.OperationalError):
        await _pid(db)
    # The pool discarded the broken connection: the next statement works, on another one.
    assert await _pid(db) != spare


async def test_a_connection_left_in_a_transaction_is_not_kept(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1")
    assert db._spare is None


async def test_the_spare_goes_back_to_the_pool_after_a_while(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _pid(db)
    assert db._spare is not None
    monkeypatch.setattr(database_module, "SPARE_SECONDS", 0.0)
    await _pid(db)
    assert db._spare is None


async def test_closing_gives_the_spare_back(database_url: str, schema: str) -> None:
    database = Database(database_url, schema, min_size=1, max_size=2)
    await database.open()
    await _pid(database)
    await database.close()
    assert database._spare is None
    assert database.pool.closed
