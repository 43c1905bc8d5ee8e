"""conveyor.testing against real PostgreSQL: enqueue assertions inside the caller's open (and
rolled-back) transaction, on psycopg and SQLAlchemy, sync and async; drain through a real worker."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from conveyor import Conveyor, Registry, SyncConveyor
from conveyor.errors import ConfigurationError
from conveyor.testing import (
    DrainTimeout,
    assert_enqueued,
    assert_enqueued_async,
    drain,
    drain_sync,
    enqueued_jobs,
    refute_enqueued,
    refute_enqueued_async,
)

from ..helpers import DB


@pytest.fixture
def tasks(registry: Registry) -> Registry:
    @registry.task(queue="mail")
    async def send_receipt(order_id: int) -> str:
        return f"sent {order_id}"

    @registry.task(max_attempts=1)
    def explode(reason: str) -> None:
        raise RuntimeError(reason)

    @registry.task(queue="mail")
    async def fan_out(count: int, ctx: Any) -> int:
        for n in range(count):
            ctx.enqueue("send_receipt", {"order_id": n})
        return count

    return registry


def test_a_job_in_a_transaction_that_rolls_back_is_seen_then_gone(
    database_url: str, schema: str, tasks: Registry
) -> None:
    with SyncConveyor(database_url, schema=schema, registry=tasks) as conveyor:
        with psycopg.connect(database_url) as conn:
            conveyor.enqueue("send_receipt", {"order_id": 7}, conn=conn)
            conveyor.enqueue("send_receipt", {"order_id": 8}, conn=conn)

            jobs = assert_enqueued(conn, task="send_receipt", args={"order_id": 7}, schema=schema)
            assert [(j.task, j.queue, j.state, j.args) for j in jobs] == [
                ("send_receipt", "mail", "available", {"order_id": 7})
            ]
            assert_enqueued(conn, task="send_receipt", queue="mail", count=2, schema=schema)
            refute_enqueued(conn, task="send_receipt", args={"order_id": 9}, schema=schema)
            refute_enqueued(conn, task="explode", schema=schema)
            conn.rollback()

            refute_enqueued(conn, schema=schema)  # nothing outlives the test's transaction
        with psycopg.connect(database_url) as other:
            assert enqueued_jobs(other, schema=schema) == []


def test_failures_say_what_was_wanted_and_what_is_there(
    database_url: str, schema: str, tasks: Registry
) -> None:
    with (
        SyncConveyor(database_url, schema=schema, registry=tasks) as conveyor,
        psycopg.connect(database_url) as conn,
    ):
        conveyor.enqueue("send_receipt", {"order_id": 7}, conn=conn)

        with pytest.raises(
            AssertionError, match=r"expected a job of task 'send_receipt' with args \{'order_id': 8\}"
        ) as wrong:
            assert_enqueued(conn, task="send_receipt", args={"order_id": 8}, schema=schema)
        assert "send_receipt({'order_id': 7}) queue=mail state=available" in str(wrong.value)
        with pytest.raises(AssertionError, match=r"expected 2 job\(s\)"):
            assert_enqueued(conn, task="send_receipt", count=2, schema=schema)
        with pytest.raises(AssertionError, match="expected no matching job, found 1"):
            refute_enqueued(conn, task="send_receipt", schema=schema)


def test_args_match_as_json_does_true_is_not_one(database_url: str, schema: str, registry: Registry) -> None:
    @registry.task()
    def notify(flag: Any, tags: Any) -> None: ...

    with (
        SyncConveyor(database_url, schema=schema, registry=registry) as conveyor,
        psycopg.connect(database_url) as conn,
    ):
        conveyor.enqueue("notify", {"flag": 1, "tags": [0, {"on": False}]}, conn=conn)

        assert_enqueued(conn, task="notify", args={"flag": 1, "tags": [0, {"on": False}]}, schema=schema)
        refute_enqueued(conn, task="notify", args={"flag": True, "tags": [0, {"on": False}]}, schema=schema)
        refute_enqueued(conn, task="notify", args={"flag": 1, "tags": [False, {"on": 0}]}, schema=schema)


async def test_filters_of_the_wrong_type_are_refused_clearly(
    database_url: str, schema: str, tasks: Registry, db: DB
) -> None:
    with psycopg.connect(database_url) as conn:
        wrong: list[tuple[dict[str, Any], str]] = [
            ({"args": [7]}, "args must be a mapping"),
            ({"count": "2"}, "count must be a whole number"),
            ({"count": -1}, "count must be a whole number"),
            ({"queue": 5}, "queue must be a queue name"),
        ]
        for filters, message in wrong:
            with pytest.raises(ConfigurationError, match=message):
                assert_enqueued(conn, task="send_receipt", schema=schema, **filters)
    with pytest.raises(ConfigurationError, match=r"queues must be a list of queue names: \['mail'\]"):
        await drain(database_url, schema=schema, registry=tasks, queues="mail")
    assert db.all("SELECT name FROM {schema}.queues WHERE length(name) = 1") == []


def test_a_sqlalchemy_session_sees_its_own_uncommitted_jobs(
    database_url: str, schema: str, tasks: Registry
) -> None:
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(database_url), poolclass=NullPool
    )
    with SyncConveyor(database_url, schema=schema, registry=tasks) as conveyor, Session(engine) as session:
        session.begin()
        conveyor.enqueue("send_receipt", {"order_id": 1}, conn=session)
        assert_enqueued(session, task="send_receipt", args={"order_id": 1}, count=1, schema=schema)
        session.rollback()
        refute_enqueued(session, schema=schema)
    engine.dispose()


async def test_async_twins_on_an_async_session(database_url: str, schema: str, tasks: Registry) -> None:
    engine = create_async_engine(
        "postgresql+psycopg://",
        async_creator=lambda: psycopg.AsyncConnection.connect(database_url),
        poolclass=NullPool,
    )
    send_receipt = tasks.get("send_receipt")
    assert send_receipt is not None
    async with (
        Conveyor(database_url, schema=schema, registry=tasks) as conveyor,
        AsyncSession(engine) as session,
    ):
        await session.begin()
        await conveyor.enqueue(send_receipt, {"order_id": 3}, conn=session)
        await assert_enqueued_async(session, task=send_receipt, args={"order_id": 3}, schema=schema)
        await refute_enqueued_async(session, task="explode", schema=schema)
        await session.rollback()
        await refute_enqueued_async(session, schema=schema)
    await engine.dispose()


async def test_drain_runs_committed_jobs_and_what_they_enqueue(
    database_url: str, schema: str, tasks: Registry
) -> None:
    async with Conveyor(database_url, schema=schema, registry=tasks) as conveyor:
        fan = await conveyor.enqueue("fan_out", {"count": 2})
        boom = await conveyor.enqueue("explode", {"reason": "no stock"})
        later = await conveyor.enqueue("send_receipt", {"order_id": 99}, delay=3600)

    outcomes = await drain(database_url, schema=schema, registry=tasks)

    by_task: dict[str, list[Any]] = {}
    for outcome in outcomes:
        by_task.setdefault(outcome.task, []).append(outcome)
    assert [(o.id, o.state, o.result) for o in by_task["fan_out"]] == [(fan, "completed", 2)]
    assert sorted((o.state, o.result) for o in by_task["send_receipt"]) == [
        ("completed", "sent 0"),
        ("completed", "sent 1"),
    ]
    [dead] = by_task["explode"]
    assert (dead.id, dead.state) == (boom, "dead")
    assert "no stock" in str(dead.errors[-1])
    assert later not in {o.id for o in outcomes}  # scheduled for later: left alone
    async with Conveyor(database_url, schema=schema, registry=tasks) as conveyor:
        assert (await conveyor.get_job(later))["state"] == "scheduled"


def test_drain_sync_and_an_empty_queue(database_url: str, schema: str, tasks: Registry) -> None:
    assert drain_sync(database_url, schema=schema, registry=tasks) == []
    with SyncConveyor(database_url, schema=schema, registry=tasks) as conveyor:
        job = conveyor.enqueue("send_receipt", {"order_id": 5})
    [outcome] = drain_sync(database_url, schema=schema, registry=tasks, queues=["mail"])
    assert (outcome.id, outcome.state, outcome.result, outcome.args) == (
        job,
        "completed",
        "sent 5",
        {"order_id": 5},
    )


async def test_drain_gives_up_on_jobs_it_cannot_run_in_time(
    database_url: str, schema: str, tasks: Registry
) -> None:
    async with Conveyor(database_url, schema=schema, registry=tasks) as conveyor:
        await conveyor.enqueue("send_receipt", {"order_id": 1})
        await conveyor.pause_task("send_receipt")

    with pytest.raises(DrainTimeout, match=r"still due after 0.5 s: \{'mail': 1\}"):
        await drain(database_url, schema=schema, registry=tasks, timeout=0.5)
