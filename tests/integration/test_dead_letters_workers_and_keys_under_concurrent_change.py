"""Dead-letter retry and purge by death time, the workers listing and API key replacement,
each under a concurrent change, against a real PostgreSQL: a job retried and dead again
between a bulk operation's choice and its act, a worker row pruned while the worker lives,
replacements of one key name at the same time.

A concurrent change is forced between two statements of an operation by wrapping the
engine function that runs the first (``cleaning.dead_ids``): the wrapper lets the real
statement run, then makes the change on a connection of its own and commits it, as another
operator or a worker would, before the operation goes on."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import ANY

import pytest

from conveyor import Conveyor, Registry
from conveyor.errors import ConveyorError
from conveyor.ops import keys
from conveyor.ops.roles import LOCAL_ADMIN
from conveyor.queue import cleaning, search

from ..helpers import DB, wait_until
from .tables import bury


@pytest.fixture
def tasks(registry: Registry) -> None:
    @registry.task
    async def noop(n: int = 0) -> None:
        pass


def retry_and_die_again(db: DB, job_id: int, at: datetime) -> None:
    """Another operator retries the dead job; it runs and dies again at ``at``."""
    db.all("select {schema}.retry_dead(%s)", [job_id])
    bury(db, [job_id], at, error="ValueError: again")


async def test_purge_by_death_time_keeps_a_job_that_died_again_after_the_range(
    client: Conveyor, tasks: None, db: DB, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    old = await client.enqueue("noop", {"n": 1})
    other = await client.enqueue("noop", {"n": 2})
    bury(db, [old, other], now - timedelta(days=3))
    real = search.dead_ids

    async def dead_ids(*args: Any, **kwargs: Any) -> list[int]:
        ids = await real(*args, **kwargs)
        if old in ids:
            # Between the purge's choice and its delete: retried, and dead again just now.
            retry_and_die_again(db, old, now)
        return ids

    monkeypatch.setattr(cleaning, "dead_ids", dead_ids)
    purged = await client.purge_dead(died_before=now - timedelta(days=2))
    # The job that died just now did not die before the range's end: it must stay.
    assert db.all("select id, died_at > %s from {schema}.dead_jobs", [now - timedelta(days=1)]) == [
        (old, True)
    ]
    assert purged == 1


async def test_retry_by_death_time_leaves_a_job_that_died_again_after_the_range(
    client: Conveyor, tasks: None, db: DB, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    first = await client.enqueue("noop", {"n": 1})
    second = await client.enqueue("noop", {"n": 2})
    bury(db, [first, second], now - timedelta(days=3))
    real = search.dead_ids

    async def dead_ids(*args: Any, **kwargs: Any) -> list[int]:
        ids = await real(*args, **kwargs)
        if second in ids:
            retry_and_die_again(db, second, now)
        return ids

    monkeypatch.setattr(cleaning, "dead_ids", dead_ids)
    retried, refused = await client.retry_dead_matching(died_before=now - timedelta(days=2))
    # `second` now died after the range: retrying "what died before" must not take it.
    assert (retried, refused) == ([first], {})
    assert db.all("select id from {schema}.dead_jobs") == [(second,)]


async def test_a_worker_forgotten_after_an_hour_of_silence_shows_again_once_it_beats(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any
) -> None:
    """A worker cut off from the database for over an hour (its row pruned by the upkeep)
    comes back and works on: workers() must list it again once it heartbeats."""
    release = asyncio.Event()

    @registry.task
    async def hold() -> None:
        await release.wait()

    async with start_worker(lease=3) as worker:
        beats = 0
        real = worker.db.heartbeat_worker

        async def counted(*args: Any, **kwargs: Any) -> None:
            nonlocal beats
            await real(*args, **kwargs)
            beats += 1

        worker.db.heartbeat_worker = counted  # type: ignore[method-assign]
        # The upkeep as it runs after the worker was silent for the hour: its row goes.
        await client.db.prune_workers(
            silent_for=timedelta(hours=1), now=datetime.now(UTC) + timedelta(hours=2)
        )
        assert db.one("select count(*) from {schema}.workers") == 0
        after = beats
        job = await client.enqueue("hold", {})
        await wait_until(lambda: db.one("select count(*) from {schema}.jobs where state = 'running'") == 1)
        await wait_until(lambda: beats >= after + 2)
        # The worker is alive, beats, and holds a running job; the listing must say so.
        assert db.one("select worker_id from {schema}.jobs where id = %s", [job]) == worker.id
        listed = [(w.id, w.alive, [j.id for j in w.jobs]) for w in (await client.workers()).workers]
        release.set()
        assert listed == [(worker.id, True, [job])]


async def test_a_worker_row_written_again_is_the_row_the_worker_registered(
    registry: Registry, db: DB, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The row a heartbeat writes back holds what the worker registered (its queues,
    concurrency, host, pid and start time), and the worker says once that it did."""

    @registry.task(queue="mail")
    async def send() -> None:
        pass

    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    columns = "select id, hostname, pid, queues, concurrency, started_at from {schema}.workers"
    async with start_worker(lease=3, concurrency=3) as worker:
        registered = db.all(columns)
        assert registered == [(worker.id, socket.gethostname(), os.getpid(), ["default", "mail"], 3, ANY)]
        db.all("delete from {schema}.workers")

        def restored() -> list[logging.LogRecord]:
            return [r for r in caplog.records if getattr(r, "event", None) == "worker_row_restored"]

        # The line is logged once the row is written back (and the beats after it do not).
        await wait_until(lambda: restored() != [])
        assert db.all(columns) == registered
        seen = datetime.now(UTC)
        await wait_until(lambda: db.one("select heartbeat_at > %s from {schema}.workers", [seen]))
        assert len(restored()) == 1, restored()
        assert str(worker.id) in restored()[0].getMessage()


async def test_concurrent_create_with_replace_each_replace_the_key(client: Conveyor) -> None:
    """`create --replace` (what `conveyor dev` does on each start) run twice at once: each
    call asked to replace the key, so each makes one and exactly one stays live; none is told
    "exists already: revoke it first"."""
    outcomes: list[str] = []

    async def replace() -> None:
        try:
            await keys.create_key(client.db, LOCAL_ADMIN, "dev", "admin", replace=True)
            outcomes.append("made")
        except ConveyorError as exc:
            outcomes.append(str(exc))

    for _ in range(10):
        await asyncio.gather(replace(), replace(), replace())
    live = [key for key in await keys.list_keys(client.db, LOCAL_ADMIN) if key.name == "dev"]
    assert len(live) == 1
    assert [o for o in outcomes if o != "made"] == []
