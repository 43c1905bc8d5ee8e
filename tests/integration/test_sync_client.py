"""SyncConveyor: the async client's read and control operations, for sync code."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from conveyor import Conveyor, NotFoundError, Registry, SyncConveyor

from ..helpers import DB, wait_until_sync

NOT_OPERATIONS = {"open", "close", "enqueue", "enqueue_many"}


def _operations() -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(Conveyor, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in NOT_OPERATIONS
    )


def test_every_operation_of_the_async_client_is_on_the_sync_client_with_its_signature() -> None:
    missing = [name for name in _operations() if not hasattr(SyncConveyor, name)]
    assert not missing, f"SyncConveyor lacks {missing}"
    for name in _operations():
        sync, original = getattr(SyncConveyor, name), getattr(Conveyor, name)
        assert inspect.signature(sync) == inspect.signature(original), name
        assert sync.__doc__ == original.__doc__, name
        assert not inspect.iscoroutinefunction(sync), name


@pytest.fixture
def sync_client(database_url: str, schema: str) -> Iterator[SyncConveyor]:
    registry = Registry()

    @registry.task
    def add(a: int, b: int = 0) -> int:
        return a + b

    with SyncConveyor(database_url, schema=schema, registry=registry) as client:
        yield client


def _insert_dead(db: DB, job_id: int) -> None:
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt,"
        " max_attempts, priority, queue, task, args, errors)"
        " values (%s, now(), now(), now(), now(), 1, 1, 2, 'default', 'add', %s::jsonb, %s::jsonb)",
        [job_id, json.dumps({"a": job_id}), json.dumps([{"attempt": 1, "error": "ValueError: no"}])],
    )


def test_the_sync_client_reads_and_controls_queues_jobs_dead_jobs_and_schedules(
    sync_client: SyncConveyor, db: DB
) -> None:
    sync_client.create_queue("reports")
    sync_client.pause_queue("reports")
    job_id = sync_client.enqueue("add", {"a": 1}, queue="reports")
    assert sync_client.get_job(job_id)["state"] == "available"
    stats = {s.queue: s for s in sync_client.queue_stats()}
    assert stats["reports"].paused
    assert stats["reports"].waiting == 1
    sync_client.resume_queue("reports")
    assert not {s.queue: s for s in sync_client.queue_stats()}["reports"].paused

    _insert_dead(db, 701)
    _insert_dead(db, 702)
    assert [row["id"] for row in sync_client.dead_jobs()] == [702, 701]
    assert sync_client.dead_job(701)["args"] == {"a": 701}
    assert sync_client.retry_dead(701) == 701
    assert sync_client.purge_dead(ids=[702]) == 1
    with pytest.raises(NotFoundError, match="no dead job with id 702"):
        sync_client.dead_job(702)

    sync_client.create_schedule("nightly", "0 3 * * *", "add", {"a": 2}, timezone="Europe/Paris")
    assert [s["name"] for s in sync_client.schedules()] == ["nightly"]
    fired = sync_client.trigger_schedule("nightly")
    assert db.one("select task, args from {schema}.jobs where id = %s", [fired]) == ("add", {"a": 2})
    sync_client.remove_schedule("nightly")
    assert sync_client.schedules() == []


def test_the_sync_client_serves_many_threads_and_stops_its_loop_on_close(
    database_url: str, schema: str
) -> None:
    client = SyncConveyor(database_url, schema=schema, registry=Registry())
    with pytest.raises(Exception, match="not open"):
        client.queue_stats()
    with client:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: [s.queue for s in client.queue_stats()], range(32)))
        assert results == [["default"]] * 32
        assert any(t.name == "conveyor-sync-loop" for t in threading.enumerate())
    assert not any(t.name == "conveyor-sync-loop" for t in threading.enumerate())


def test_the_sync_client_enqueues_on_after_its_pooled_connections_were_ended(
    database_url: str, schema: str
) -> None:
    """As after a server restart: the pool's connections died while idle; the next enqueue
    runs on a new connection instead of failing once."""
    registry = Registry()

    @registry.task
    def noop() -> None: ...

    with SyncConveyor(database_url, schema=schema, registry=registry) as client:
        first = client.enqueue(noop)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE application_name = '' AND pid <> pg_backend_pid() AND datname = current_database()"
                " AND backend_type = 'client backend'"
            )
        second = client.enqueue(noop)
    assert second > first


def test_closing_while_other_threads_are_in_calls_ends_those_calls_with_an_error(
    database_url: str, schema: str, db: DB
) -> None:
    client = SyncConveyor(database_url, schema=schema, registry=Registry()).open()
    client.queue_stats()  # the loop and the async client are up
    outcomes: list[str] = []

    def call() -> None:
        try:
            client.queue_stats()
            outcomes.append("returned")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    with db.connect() as blocker:
        blocker.execute(db.compose("LOCK TABLE {schema}.jobs IN ACCESS EXCLUSIVE MODE"))
        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        wait_until_sync(
            lambda: (
                db.one(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                    " and datname = current_database()"
                )
                >= 1
            )
        )
        client.close()
        for thread in threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in threads), "a call was left hanging by close()"
        blocker.rollback()
    assert len(outcomes) == 4
    assert set(outcomes) <= {"returned", "ConfigurationError"}


def test_closing_drops_the_connection_of_a_call_its_cancel_did_not_end(
    database_url: str, schema: str, db: DB
) -> None:
    """A cancel request that reaches the server before the statement starts is ignored there:
    the call's statement goes on (here: a call that starts its statement again after the
    cancel, as such a call would find it). close() drops its connection instead of waiting
    for it forever."""
    client = SyncConveyor(database_url, schema=schema, registry=Registry()).open()
    client.queue_stats()
    started = threading.Event()
    outcomes: list[str] = []

    async def stubborn() -> None:
        async with client._client.db.connection() as conn:
            started.set()
            while True:
                try:
                    await conn.execute("select pg_sleep(60)")
                    return
                except (asyncio.CancelledError, psycopg.errors.QueryCanceled):
                    continue  # the cancel did not end it: the statement goes on

    def call() -> None:
        assert client._loop is not None
        try:
            client._loop.wait(stubborn())
            outcomes.append("returned")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    thread = threading.Thread(target=call)
    thread.start()
    assert started.wait(10)
    began = time.monotonic()
    client.close()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - began < 10
    assert outcomes
    assert outcomes[0] != "returned"
