"""The spare connection of conveyor.db.database.Database: a serial caller skips the pool;
a connection that failed or is busy goes back to the pool, which mends what broke."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from conveyor.db import database as database_module
from conveyor.db.database import Database

from ..helpers import wait_until


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


async def test_a_connection_that_failed_goes_back_to_the_pool(db: Database) -> None:
    await _pid(db)
    with pytest.raises(psycopg.errors.DivisionByZero):
        async with db.connection() as conn:
            await conn.execute("SELECT 1 / 0")
    assert db._spare is None
    await _pid(db)


def _terminate(database_url: str, pids: set[int]) -> None:
    """End backends and wait until they are gone (as a server restart ends them)."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


async def test_a_spare_whose_server_side_ended_is_replaced_before_a_statement_fails(
    db: Database, database_url: str
) -> None:
    spare = await _pid(db)
    _terminate(database_url, {spare})
    assert await _pid(db) != spare  # no error: the check on the way out found it dead


async def test_pooled_connections_whose_server_side_ended_are_replaced_before_a_statement_fails(
    db: Database, database_url: str
) -> None:
    release = asyncio.Event()

    async def hold() -> int:
        async with db.connection() as conn:
            row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
            await release.wait()
            return int(row[0]) if row else 0

    holders = [asyncio.create_task(hold()) for _ in range(3)]
    await asyncio.sleep(0)
    await wait_until(lambda: db.pool.get_stats()["pool_size"] >= 3)
    release.set()
    pids = set(await asyncio.gather(*holders))
    assert len(pids) == 3
    _terminate(database_url, pids)
    # Every connection the pool holds is dead; statements at once all succeed on new ones.
    fresh = await asyncio.gather(*[_pid(db) for _ in range(3)])
    assert not pids & set(fresh)


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


async def test_a_connection_given_back_while_others_wait_for_the_pool_goes_to_them(
    database_url: str, schema: str
) -> None:
    """Kept aside as the spare, it would sit idle while they time out waiting for the pool."""
    small = Database(database_url, schema, min_size=1, max_size=1)
    await small.open()
    try:

        async def use() -> None:
            async with small.connection() as conn:
                await conn.execute("SELECT pg_sleep(0.05)")

        await asyncio.wait_for(asyncio.gather(*[use() for _ in range(3)]), 5)  # the pool waits 10 s
    finally:
        await small.close()
