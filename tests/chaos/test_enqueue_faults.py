"""An enqueue that the database refuses (a full disk, a serialization failure, a statement
timeout: real errors raised by the server, see tests/chaos/faults.py) loses no job: the caller
gets an error that says what happened, nothing is written, and the same enqueue succeeds once
the fault is lifted. A conflict with a concurrent transaction, which the server rolled back,
is run again by the client on its own connection."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import psycopg
import pytest

from conveyor import Conveyor, JobRequest, Registry, SyncConveyor
from conveyor.api import create_app
from conveyor.api.problems import COUNTS, UNAVAILABLE
from conveyor.db.database import Database
from conveyor.ops.keys import create_key
from conveyor.ops.roles import LOCAL_ADMIN
from conveyor.settings import Timeouts

from ..e2e.api.support import Server, bearer
from ..helpers import DB
from .faults import SQLSTATES, Fault, Faults

FAULTS: list[Fault] = ["disk_full", "serialization_failure", "statement_timeout"]

# What the error of each fault must say, for the person reading it.
SAYS = {
    "disk_full": "No space left on device",
    "serialization_failure": "could not serialize access",
    "statement_timeout": "statement timeout",
}

# A statement_timeout of the session, as a caller's URL (or ALTER ROLE) would set it.
STATEMENT_TIMEOUT_MS = 300


def with_statement_timeout(url: str) -> str:
    return psycopg.conninfo.make_conninfo(url, options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")


def live_jobs(db: DB) -> int:
    return int(db.one("select count(*) from {schema}.jobs"))


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_refused_enqueue_raises_what_the_database_said_writes_nothing_and_succeeds_once_lifted(
    fault: Fault, database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    @registry.task
    async def noop() -> None:
        pass

    url = with_statement_timeout(database_url)
    faults = Faults(db)
    db.all("create table {schema}.orders (id int primary key)")
    async with Conveyor(url, schema=schema, registry=registry) as client:
        await client.enqueue(noop)  # the queue is known: the next takes the one-statement path
        faults.set("jobs", fault)
        refused: list[psycopg.Error] = []

        for call in (lambda: client.enqueue(noop), lambda: client.enqueue_many([JobRequest(noop)])):
            with pytest.raises(psycopg.Error) as failure:
                await call()
            refused.append(failure.value)
        if fault == "serialization_failure":
            # On its own connection the client ran each of them three times: the server rolled
            # every attempt back, so nothing was written more than once (or at all).
            assert faults.hits() == 2 * 3

        # In the caller's transaction: nothing is retried there (the transaction is the
        # caller's); its own writes roll back with the job, and the transaction runs again.
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await conn.execute(db.compose("insert into {schema}.orders values (1)"))
            with pytest.raises(psycopg.Error) as failure:
                await client.enqueue(noop, conn=conn)
            refused.append(failure.value)
            await conn.rollback()

        with SyncConveyor(url, schema=schema, registry=registry) as sync_client:
            with pytest.raises(psycopg.Error) as failure:
                await asyncio.to_thread(sync_client.enqueue, noop)
            refused.append(failure.value)

            def in_caller_transaction() -> None:
                with psycopg.connect(url) as conn:
                    conn.execute(db.compose("insert into {schema}.orders values (2)"))
                    sync_client.enqueue(noop, conn=conn)

            with pytest.raises(psycopg.Error) as failure:
                await asyncio.to_thread(in_caller_transaction)
            refused.append(failure.value)

            # The SQL function, as any application calls it inside its own transaction.
            def sql_function() -> None:
                with psycopg.connect(url) as conn:
                    conn.execute(db.compose("insert into {schema}.orders values (3)"))
                    conn.execute(db.compose("select {schema}.enqueue('noop', '{{}}')"))

            with pytest.raises(psycopg.Error) as failure:
                await asyncio.to_thread(sql_function)
            refused.append(failure.value)

            for error in refused:
                assert error.sqlstate == SQLSTATES[fault], (fault, type(error), error)
                assert SAYS[fault] in str(error), error
            assert live_jobs(db) == 1  # the first one only: no refused enqueue left a row
            assert db.one("select count(*) from {schema}.orders") == 0

            # Lifted: every entry point enqueues again, the callers' transactions with their writes.
            faults.clear()
            await client.enqueue(noop)
            await client.enqueue_many([JobRequest(noop)])
            await asyncio.to_thread(sync_client.enqueue, noop)
            await asyncio.to_thread(in_caller_transaction)
            await asyncio.to_thread(sql_function)
    assert live_jobs(db) == 6
    assert db.one("select count(*) from {schema}.orders") == 2


async def test_an_enqueue_that_meets_passing_conflicts_is_run_again_and_written_once(
    database_url: str, schema: str, registry: Registry, db: DB, caplog: pytest.LogCaptureFixture
) -> None:
    @registry.task
    async def noop() -> None:
        pass

    faults = Faults(db)
    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        await client.enqueue(noop)
        with caplog.at_level(logging.WARNING, logger="conveyor.client"):
            faults.set("jobs", "serialization_failure", times=2)
            job_id = await client.enqueue(noop)
            faults.set("jobs", "serialization_failure", times=2)
            [many_id] = await client.enqueue_many([JobRequest(noop)])
            with SyncConveyor(database_url, schema=schema, registry=registry) as sync_client:
                faults.set("jobs", "serialization_failure", times=2)
                sync_id = await asyncio.to_thread(sync_client.enqueue, noop)
    assert db.all("select id from {schema}.jobs order by id")[1:] == [(job_id,), (many_id,), (sync_id,)]
    retries = [r for r in caplog.records if getattr(r, "event", None) == "enqueue_conflict"]
    assert len(retries) == 3 * 2, [r.getMessage() for r in caplog.records]
    for record in retries:
        message = record.getMessage()
        assert "\n" not in message, message
        assert "serialization failure" in message, message
        assert record.sqlstate == "40001"  # type: ignore[attr-defined]


async def _admin_token(database_url: str, schema: str) -> str:
    database = Database(database_url, schema)
    await database.open()
    try:
        _, token = await create_key(database, LOCAL_ADMIN, "chaos-admin", "admin")
        return token
    finally:
        await database.close()


@pytest.mark.parametrize("fault", FAULTS)
async def test_http_enqueue_refused_by_the_database_answers_503_saying_why_and_writes_nothing(
    fault: Fault, database_url: str, schema: str, registry: Registry, db: DB, caplog: pytest.LogCaptureFixture
) -> None:
    @registry.task
    async def chaos_http() -> None:
        pass

    faults = Faults(db)
    token = await _admin_token(database_url, schema)
    app = create_app(
        database_url=database_url,
        schema=schema,
        registry=registry,
        timeouts=Timeouts(statement=STATEMENT_TIMEOUT_MS / 1000, lock=0.3, connect=5, listen_check=5),
    )
    job: dict[str, Any] = {"task": "chaos_http", "queue": "default"}
    with Server(app) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=bearer(token), timeout=30) as http:
            first = await http.post("/api/v1/jobs", json=job)
            assert first.status_code == 201, first.text
            counted = COUNTS.count(UNAVAILABLE)
            faults.set("jobs", fault)
            with caplog.at_level(logging.WARNING, logger="conveyor.api"):
                one = await http.post("/api/v1/jobs", json=job)
                bulk = await http.post("/api/v1/jobs/bulk", json={"jobs": [job, job]})
            answers = {"one": (one.status_code, one.json()), "bulk": (bulk.status_code, bulk.json())}
            print(fault, json.dumps(answers))
            for response in (one, bulk):
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.headers.get("retry-after")
                body = response.json()
                assert body["type"] == "urn:conveyor:problem:database-unavailable"
                assert body["sqlstate"] == SQLSTATES[fault]
                assert SAYS[fault] in body["detail"], body
                assert "Traceback" not in response.text
            assert COUNTS.count(UNAVAILABLE) == counted + 2
            logged = [r for r in caplog.records if getattr(r, "event", None) == "api_unavailable"]
            assert len(logged) == 2, [r.getMessage() for r in caplog.records]
            for record in logged:
                assert "\n" not in record.getMessage()
                assert SAYS[fault] in record.getMessage()
                assert record.exc_info is None  # a known condition: no traceback in the log
            assert live_jobs(db) == 1

            if fault == "serialization_failure":
                faults.set("jobs", fault, times=2)  # passing: run again by the client, unseen
                passing = await http.post("/api/v1/jobs", json=job)
                assert passing.status_code == 201, passing.text
            faults.clear()
            again = await http.post("/api/v1/jobs/bulk", json={"jobs": [job, job]})
            assert again.status_code == 201, again.text
    assert live_jobs(db) == (4 if fault == "serialization_failure" else 3)
