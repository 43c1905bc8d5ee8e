"""Transactional enqueue: a job written on the caller's connection commits or rolls back
with the caller's own writes, and no one (least of all a worker) sees it before commit.

Paths: the SQL function, a psycopg connection (async and sync clients), a SQLAlchemy
Session, AsyncSession, Connection and AsyncConnection on the psycopg dialect.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from typing import Any

import psycopg
import pytest
import sqlalchemy
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from conveyor import (
    ConfigurationError,
    Conveyor,
    JobRequest,
    Registry,
    SyncConveyor,
    UnknownQueueError,
)

from ..helpers import DB, wait_until


@pytest.fixture
def send_task(registry: Registry) -> str:
    @registry.task
    async def send(order: int) -> int:
        return order

    return "send"


@pytest.fixture
def orders(db: DB) -> sqlalchemy.Table:
    """The application's own table, in the test's schema."""
    db.all("create table {schema}.orders (id integer primary key, note text not null)")
    return sqlalchemy.Table(
        "orders",
        sqlalchemy.MetaData(schema=db.schema),
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
        sqlalchemy.Column("note", sqlalchemy.Text, nullable=False),
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(database_url), poolclass=NullPool
    )
    yield engine
    engine.dispose()


@pytest.fixture
async def async_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        "postgresql+psycopg://",
        async_creator=lambda: psycopg.AsyncConnection.connect(database_url),
        poolclass=NullPool,
    )
    yield engine
    await engine.dispose()


@pytest.fixture
def sync_client(database_url: str, schema: str, registry: Registry, send_task: str) -> Iterator[SyncConveyor]:
    with SyncConveyor(database_url, schema=schema, registry=registry) as conveyor:
        yield conveyor


def _seen(db: DB, order: int) -> tuple[int, int]:
    """(application rows, jobs anywhere) for one order, as another connection sees them."""
    return (
        db.one("select count(*) from {schema}.orders where id = %s", [order]),
        db.one("select count(*) from {schema}.job_list where args = %s", [Jsonb({"order": order})]),
    )


def _assert_outcome(db: DB, order: int, job_id: int, commit: bool) -> None:
    if commit:
        assert _seen(db, order) == (1, 1)
        row = db.all("select task, args, state, queue from {schema}.jobs where id = %s", [job_id])
        assert row == [("send", {"order": order}, "available", "default")]
    else:
        assert _seen(db, order) == (0, 0)
        assert db.one("select count(*) from {schema}.job_list where id = %s", [job_id]) == 0


def _assert_jobs(db: DB, orders: list[int]) -> None:
    """Exactly these jobs exist, one each, and exactly these application rows."""
    assert db.all("select args ->> 'order' from {schema}.job_list order by 1") == [(str(o),) for o in orders]
    assert db.all("select id from {schema}.orders order by 1") == [(o,) for o in orders]


# -- one job per path: commit makes exactly one, rollback none ------------------------------------


def test_sql_function_in_the_callers_transaction(db: DB, orders: sqlalchemy.Table) -> None:
    for order, commit in [(1, True), (2, False)]:
        with db.connect() as conn:
            conn.execute(db.compose("insert into {schema}.orders values (%s, 'sql')"), [order])
            row = conn.execute(
                db.compose("select {schema}.enqueue('send', %s)"), [Jsonb({"order": order})]
            ).fetchone()
            assert row is not None
            assert _seen(db, order) == (0, 0)  # nothing is visible before commit
            conn.commit() if commit else conn.rollback()
        _assert_outcome(db, order, row[0], commit)
    _assert_jobs(db, [1])


async def test_async_client_on_a_psycopg_async_connection(
    database_url: str, client: Conveyor, send_task: str, db: DB, orders: sqlalchemy.Table
) -> None:
    for order, commit in [(1, True), (2, False)]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await conn.execute(db.compose("insert into {schema}.orders values (%s, 'async')"), [order])
            job_id = await client.enqueue(send_task, {"order": order}, conn=conn)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert _seen(db, order) == (0, 0)
            await (conn.commit() if commit else conn.rollback())
        _assert_outcome(db, order, job_id, commit)
    _assert_jobs(db, [1])


def test_sync_client_on_a_psycopg_connection(
    sync_client: SyncConveyor, db: DB, orders: sqlalchemy.Table
) -> None:
    for order, commit in [(1, True), (2, False)]:
        with db.connect() as conn:
            conn.execute(db.compose("insert into {schema}.orders values (%s, 'sync')"), [order])
            job_id = sync_client.enqueue("send", {"order": order}, conn=conn)
            assert _seen(db, order) == (0, 0)
            conn.commit() if commit else conn.rollback()
        _assert_outcome(db, order, job_id, commit)
    _assert_jobs(db, [1])


def test_sync_client_on_a_sqlalchemy_session(
    sync_client: SyncConveyor, engine: sqlalchemy.Engine, db: DB, orders: sqlalchemy.Table
) -> None:
    for order, commit in [(1, True), (2, False)]:
        with Session(engine) as session:
            session.execute(sqlalchemy.insert(orders).values(id=order, note="session"))
            job_id = sync_client.enqueue("send", {"order": order}, conn=session)
            assert _seen(db, order) == (0, 0)
            session.commit() if commit else session.rollback()
        _assert_outcome(db, order, job_id, commit)

    # The usual `with session.begin():` block: an exception takes the job with it.
    doomed: list[int] = []

    def checkout() -> None:
        with Session(engine) as session, session.begin():
            session.execute(sqlalchemy.insert(orders).values(id=3, note="doomed"))
            doomed.append(sync_client.enqueue("send", {"order": 3}, conn=session))
            raise RuntimeError("checkout failed")

    with pytest.raises(RuntimeError, match="checkout failed"):
        checkout()
    [job_id] = doomed
    _assert_outcome(db, 3, job_id, commit=False)
    with Session(engine) as session, session.begin():
        session.execute(sqlalchemy.insert(orders).values(id=4, note="fine"))
        job_id = sync_client.enqueue("send", {"order": 4}, conn=session)
    _assert_outcome(db, 4, job_id, commit=True)
    _assert_jobs(db, [1, 4])


def test_sync_client_on_a_sqlalchemy_connection(
    sync_client: SyncConveyor, engine: sqlalchemy.Engine, db: DB, orders: sqlalchemy.Table
) -> None:
    for order, commit in [(1, True), (2, False)]:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.insert(orders).values(id=order, note="connection"))
            job_id = sync_client.enqueue("send", {"order": order}, conn=conn)
            assert _seen(db, order) == (0, 0)
            conn.commit() if commit else conn.rollback()
        _assert_outcome(db, order, job_id, commit)
    _assert_jobs(db, [1])


async def test_async_client_on_a_sqlalchemy_async_session(
    client: Conveyor, send_task: str, async_engine: AsyncEngine, db: DB, orders: sqlalchemy.Table
) -> None:
    for order, commit in [(1, True), (2, False)]:
        async with AsyncSession(async_engine) as session:
            await session.execute(sqlalchemy.insert(orders).values(id=order, note="async session"))
            job_id = await client.enqueue(send_task, {"order": order}, conn=session)
            assert _seen(db, order) == (0, 0)
            await (session.commit() if commit else session.rollback())
        _assert_outcome(db, order, job_id, commit)
    _assert_jobs(db, [1])


async def test_async_client_on_a_sqlalchemy_async_connection(
    client: Conveyor, send_task: str, async_engine: AsyncEngine, db: DB, orders: sqlalchemy.Table
) -> None:
    for order, commit in [(1, True), (2, False)]:
        async with async_engine.connect() as conn:
            await conn.execute(sqlalchemy.insert(orders).values(id=order, note="async connection"))
            job_id = await client.enqueue(send_task, {"order": order}, conn=conn)
            assert _seen(db, order) == (0, 0)
            await (conn.commit() if commit else conn.rollback())
        _assert_outcome(db, order, job_id, commit)
    _assert_jobs(db, [1])


# -- workers see the job only after commit ---------------------------------------------------------


async def test_a_running_worker_does_not_run_a_job_before_its_transaction_commits(
    database_url: str,
    client: Conveyor,
    registry: Registry,
    async_engine: AsyncEngine,
    db: DB,
    orders: sqlalchemy.Table,
    start_worker: Any,
) -> None:
    ran: list[int] = []
    arrived = asyncio.Event()

    @registry.task
    async def ship(order: int) -> None:
        ran.append(order)
        arrived.set()

    async with start_worker() as worker:
        for order, path in enumerate(["sql-function", "psycopg", "async-session"], start=1):
            arrived.clear()
            async with (
                await psycopg.AsyncConnection.connect(database_url) as conn,
                AsyncSession(async_engine) as session,
            ):
                insert = db.compose("insert into {schema}.orders values (%s, 'w')")
                if path == "sql-function":
                    await conn.execute(insert, [order])
                    cur = await conn.execute(
                        db.compose("select {schema}.enqueue('ship', %s)"), [Jsonb({"order": order})]
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    job_id = row[0]
                    finish = conn.commit
                elif path == "psycopg":
                    await conn.execute(insert, [order])
                    job_id = await client.enqueue(ship, {"order": order}, conn=conn)
                    finish = conn.commit
                else:
                    await session.execute(sqlalchemy.insert(orders).values(id=order, note="w"))
                    job_id = await client.enqueue(ship, {"order": order}, conn=session)
                    finish = session.commit

                # Another connection does not see the job...
                assert db.one("select count(*) from {schema}.job_list where id = %s", [job_id]) == 0, path
                # ...and two full claim rounds after it was written, the worker has not run it.
                rounds = worker.claim_rounds
                worker.wake()
                await wait_until(lambda r=rounds: worker.claim_rounds >= r + 1)
                worker.wake()
                await wait_until(lambda r=rounds: worker.claim_rounds >= r + 2)
                assert ran == list(range(1, order)), path

                await finish()
            await asyncio.wait_for(arrived.wait(), 10)
            assert ran == list(range(1, order + 1)), path
            await wait_until(
                lambda j=job_id: db.one("select count(*) from {schema}.job_history where id = %s", [j]) == 1
            )
    _assert_jobs(db, [1, 2, 3])


# -- enqueue_many on the caller's connection --------------------------------------------------------

# The last two are the idioms docs/enqueueing.md shows: an explicit transaction block.
BATCH_PATHS = [
    "psycopg-async",
    "psycopg-sync",
    "sa-session",
    "sa-connection",
    "sa-async-session",
    "psycopg-async-transaction-block",
    "sa-session-begin-block",
]


class _Rollback(Exception):
    """Raised inside a transaction block to roll it back."""


class _Paths:
    """Enqueue three jobs and write one application row in one transaction on each kind of
    caller connection; report what another connection saw before the transaction ended."""

    def __init__(
        self,
        database_url: str,
        client: Conveyor,
        sync_client: SyncConveyor,
        engine: sqlalchemy.Engine,
        async_engine: AsyncEngine,
        orders: sqlalchemy.Table,
        db: DB,
    ) -> None:
        self.database_url = database_url
        self.client = client
        self.sync_client = sync_client
        self.engine = engine
        self.async_engine = async_engine
        self.orders = orders
        self.db = db

    def _visible(self, order: int) -> int:
        return self.db.one(
            "select count(*) from {schema}.job_list where (args ->> 'order')::int between %s and %s",
            [order, order + 2],
        )

    async def run(self, path: str, order: int, *, app_row_first: bool, commit: bool) -> tuple[list[int], int]:
        """Returns (ids, jobs visible to another connection before commit/rollback)."""
        batch = [JobRequest("send", {"order": order + i}) for i in range(3)]
        insert_row = sqlalchemy.insert(self.orders).values(id=order, note="batch")
        raw_insert = self.db.compose("insert into {schema}.orders values (%s, 'batch')")
        ids: list[int]
        if path == "psycopg-async":
            async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
                if app_row_first:
                    await conn.execute(raw_insert, [order])
                ids = await self.client.enqueue_many(batch, conn=conn)
                if not app_row_first:
                    await conn.execute(raw_insert, [order])
                visible = self._visible(order)
                await (conn.commit() if commit else conn.rollback())
        elif path == "psycopg-sync":
            with self.db.connect() as sconn:
                if app_row_first:
                    sconn.execute(raw_insert, [order])
                ids = self.sync_client.enqueue_many(batch, conn=sconn)
                if not app_row_first:
                    sconn.execute(raw_insert, [order])
                visible = self._visible(order)
                sconn.commit() if commit else sconn.rollback()
        elif path == "sa-session":
            with Session(self.engine) as session:
                if app_row_first:
                    session.execute(insert_row)
                ids = self.sync_client.enqueue_many(batch, conn=session)
                if not app_row_first:
                    session.execute(insert_row)
                visible = self._visible(order)
                session.commit() if commit else session.rollback()
        elif path == "sa-connection":
            with self.engine.connect() as saconn:
                if app_row_first:
                    saconn.execute(insert_row)
                ids = self.sync_client.enqueue_many(batch, conn=saconn)
                if not app_row_first:
                    saconn.execute(insert_row)
                visible = self._visible(order)
                saconn.commit() if commit else saconn.rollback()
        elif path == "psycopg-async-transaction-block":
            async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
                try:
                    async with conn.transaction():
                        if app_row_first:
                            await conn.execute(raw_insert, [order])
                        ids = await self.client.enqueue_many(batch, conn=conn)
                        if not app_row_first:
                            await conn.execute(raw_insert, [order])
                        visible = self._visible(order)
                        if not commit:
                            raise _Rollback
                except _Rollback:
                    pass
        elif path == "sa-session-begin-block":
            try:
                with Session(self.engine) as session, session.begin():
                    if app_row_first:
                        session.execute(insert_row)
                    ids = self.sync_client.enqueue_many(batch, conn=session)
                    if not app_row_first:
                        session.execute(insert_row)
                    visible = self._visible(order)
                    if not commit:
                        raise _Rollback
            except _Rollback:
                pass
        else:
            async with AsyncSession(self.async_engine) as asession:
                if app_row_first:
                    await asession.execute(insert_row)
                ids = await self.client.enqueue_many(batch, conn=asession)
                if not app_row_first:
                    await asession.execute(insert_row)
                visible = self._visible(order)
                await (asession.commit() if commit else asession.rollback())
        return ids, visible


@pytest.fixture
def paths(
    database_url: str,
    client: Conveyor,
    sync_client: SyncConveyor,
    engine: sqlalchemy.Engine,
    async_engine: AsyncEngine,
    orders: sqlalchemy.Table,
    db: DB,
) -> _Paths:
    return _Paths(database_url, client, sync_client, engine, async_engine, orders, db)


async def test_enqueue_many_after_the_callers_own_write_commits_or_rolls_back_with_it(
    paths: _Paths, db: DB
) -> None:
    committed: list[int] = []
    for n, path in enumerate(BATCH_PATHS):
        for commit in (False, True):
            order = 100 * n + (10 if commit else 0)
            ids, visible = await paths.run(path, order, app_row_first=True, commit=commit)
            assert len(ids) == 3, path
            assert visible == 0, f"{path}: jobs visible before the transaction ended"
            rows = db.all("select id, args ->> 'order' from {schema}.job_list where id = any(%s)", [ids])
            assert sorted(rows) == ([(i, str(order + k)) for k, i in enumerate(ids)] if commit else []), path
            if commit:
                committed.append(order)
    assert db.one("select count(*) from {schema}.job_list") == 3 * len(BATCH_PATHS)
    assert db.all("select id from {schema}.orders order by id") == [(o,) for o in committed]


async def test_enqueue_many_as_the_first_statement_of_the_callers_transaction_rolls_back_with_it(
    paths: _Paths, db: DB
) -> None:
    """The batch is the first thing the caller's transaction does, as in the idiom of
    docs/enqueueing.md: `with Session(engine) as s, s.begin(): conveyor.enqueue_many(...,
    conn=s); s.add(order)`. The jobs must still be invisible until, and gone after, rollback."""
    leaked: dict[str, tuple[int, int]] = {}
    for n, path in enumerate(BATCH_PATHS):
        order = 100 * n
        _, visible = await paths.run(path, order, app_row_first=False, commit=False)
        left = db.one("select count(*) from {schema}.jobs where (args ->> 'order')::int >= %s", [order])
        leaked[path] = (visible, left)
        db.all("delete from {schema}.jobs")
    # (jobs visible to others before rollback, jobs left after rollback) per path
    assert leaked == dict.fromkeys(BATCH_PATHS, (0, 0))
    assert db.one("select count(*) from {schema}.orders") == 0


async def test_refused_enqueue_many_leaves_the_callers_transaction_usable(
    database_url: str, client: Conveyor, send_task: str, db: DB, orders: sqlalchemy.Table
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(db.compose("insert into {schema}.orders values (200, 'kept')"))
        with pytest.raises(UnknownQueueError, match="'nowhere'"):
            await client.enqueue_many(
                [JobRequest(send_task, {"order": 1}), JobRequest(send_task, {"order": 2}, queue="nowhere")],
                conn=conn,
            )
        with pytest.raises(UnknownQueueError, match="'nowhere'"):
            await client.enqueue(send_task, {"order": 3}, queue="nowhere", conn=conn)
        job_id = await client.enqueue(send_task, {"order": 4}, conn=conn)
        await conn.commit()
    assert db.one("select count(*) from {schema}.orders where id = 200") == 1
    assert db.all("select id, args from {schema}.job_list") == [(job_id, {"order": 4})]


async def test_notification_is_sent_on_commit_of_the_callers_transaction(
    database_url: str, schema: str, client: Conveyor, send_task: str, db: DB
) -> None:
    db.all("select {schema}.create_queue('marker')")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(schema)))
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await client.enqueue(send_task, {"order": 1}, conn=conn)
            # A marker committed on the pool arrives first: the open transaction sent nothing.
            await client.enqueue(send_task, {"order": 2}, queue="marker")
            assert [n.payload async for n in listener.notifies(timeout=5, stop_after=1)] == ["marker"]
            await conn.commit()
        assert [n.payload async for n in listener.notifies(timeout=5, stop_after=1)] == ["default"]


# -- what cannot be enqueued on --------------------------------------------------------------------


async def test_async_client_refuses_what_it_cannot_enqueue_on(
    database_url: str, client: Conveyor, send_task: str, engine: sqlalchemy.Engine, db: DB
) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot enqueue on object: pass a psycopg AsyncConnection"):
        await client.enqueue(send_task, {"order": 1}, conn=object())
    with pytest.raises(ConfigurationError, match=r"cannot enqueue on str"):
        await client.enqueue(send_task, {"order": 1}, conn=database_url)
    with db.connect() as sync_conn:
        with pytest.raises(
            ConfigurationError, match=r"sync psycopg connection: enqueue on it with SyncConveyor"
        ):
            await client.enqueue(send_task, {"order": 1}, conn=sync_conn)
        with pytest.raises(ConfigurationError, match=r"sync psycopg connection"):
            await client.enqueue_many([JobRequest(send_task, {"order": 1})], conn=sync_conn)
    with (
        Session(engine) as session,
        pytest.raises(ConfigurationError, match=r"cannot enqueue on Session: .*AsyncSession"),
    ):
        await client.enqueue(send_task, {"order": 1}, conn=session)
    with (
        engine.connect() as saconn,
        pytest.raises(ConfigurationError, match=r"cannot enqueue on Connection: .*AsyncConnection"),
    ):
        await client.enqueue(send_task, {"order": 1}, conn=saconn)
    assert db.one("select count(*) from {schema}.job_list") == 0


async def test_sync_client_refuses_what_it_cannot_enqueue_on(
    database_url: str, sync_client: SyncConveyor, async_engine: AsyncEngine, db: DB
) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot enqueue on object: pass a psycopg Connection"):
        sync_client.enqueue("send", {"order": 1}, conn=object())
    async with await psycopg.AsyncConnection.connect(database_url) as async_conn:
        with pytest.raises(
            ConfigurationError, match=r"async psycopg connection: enqueue on it with Conveyor"
        ):
            sync_client.enqueue("send", {"order": 1}, conn=async_conn)
        with pytest.raises(ConfigurationError, match=r"async psycopg connection"):
            sync_client.enqueue_many([JobRequest("send", {"order": 1})], conn=async_conn)
    async with AsyncSession(async_engine) as session:
        with pytest.raises(ConfigurationError, match=r"cannot enqueue on AsyncSession: .*Session/Connection"):
            sync_client.enqueue("send", {"order": 1}, conn=session)
    with (
        closing(sqlite3.connect(":memory:")) as dbapi,
        pytest.raises(ConfigurationError, match=r"cannot enqueue on Connection: pass a psycopg Connection"),
    ):
        sync_client.enqueue("send", {"order": 1}, conn=dbapi)
    assert db.one("select count(*) from {schema}.job_list") == 0


def test_sqlalchemy_engine_on_another_driver_is_refused_with_the_url_to_use(
    sync_client: SyncConveyor, db: DB
) -> None:
    # SQLite ships with Python: a SQLAlchemy dialect other than psycopg we can really open.
    other = sqlalchemy.create_engine("sqlite://", poolclass=NullPool)
    try:
        message = r"uses 'pysqlite'. Use a postgresql\+psycopg:// URL"
        with Session(other) as session, pytest.raises(ConfigurationError, match=message):
            sync_client.enqueue("send", {"order": 1}, conn=session)
        with other.connect() as conn, pytest.raises(ConfigurationError, match=message):
            sync_client.enqueue_many([JobRequest("send", {"order": 1})], conn=conn)
    finally:
        other.dispose()
    assert db.one("select count(*) from {schema}.job_list") == 0
